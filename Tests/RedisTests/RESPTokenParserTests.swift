import NIOCore
import XCTest

@testable import Redis

final class RESPTokenParserTests: XCTestCase {
    // MARK: - Helpers

    /// Every value in `bytes`, parsed in one piece; the bytes left over must be none.
    private func parseAll(_ bytes: String, limits: RESPTokenParser.Limits = .init()) throws -> [RESPToken] {
        var parser = RESPTokenParser(limits: limits)
        var buffer = ByteBuffer(string: bytes)
        var tokens: [RESPToken] = []
        while let token = try parser.next(from: &buffer) {
            tokens.append(token)
        }
        XCTAssertEqual(buffer.readableBytes, 0, "bytes left over")
        return tokens
    }

    /// Exactly one value.
    private func parse(_ bytes: String, limits: RESPTokenParser.Limits = .init()) throws -> RESPToken {
        let tokens = try self.parseAll(bytes, limits: limits)
        XCTAssertEqual(tokens.count, 1)
        guard let token = tokens.first else { throw RESPParsingError.invalidLength }
        return token
    }

    /// The error parsing `bytes` (plus `trailer`, which makes an incomplete value decidable).
    private func error(_ bytes: String, limits: RESPTokenParser.Limits = .init()) -> RESPParsingError? {
        var parser = RESPTokenParser(limits: limits)
        var buffer = ByteBuffer(string: bytes)
        do {
            while try parser.next(from: &buffer) != nil {}
            return nil
        } catch {
            return error
        }
    }

    /// Feeds `bytes` in the given chunks into one accumulating buffer, as a decoder would.
    private func parseInChunks(_ bytes: [UInt8], cuts: [Int], limits: RESPTokenParser.Limits = .init()) throws -> [RESPToken] {
        var parser = RESPTokenParser(limits: limits)
        var buffer = ByteBuffer()
        var tokens: [RESPToken] = []
        var start = 0
        for end in cuts + [bytes.count] {
            buffer.writeBytes(bytes[start..<end])
            start = end
            while let token = try parser.next(from: &buffer) {
                tokens.append(token)
            }
        }
        return tokens
    }

    private func strings(_ array: RESPToken.Array?) -> [String?] {
        (array.map { Array($0) } ?? []).map(\.string)
    }

    // MARK: - Types

    func testSimpleTypes() throws {
        XCTAssertEqual(try parse("+OK\r\n").value, .simpleString(ByteBuffer(string: "OK")))
        XCTAssertEqual(try parse("+OK\r\n").string, "OK")
        XCTAssertEqual(try parse("+\r\n").string, "")
        XCTAssertEqual(try parse("-ERR bad\r\n").errorMessage, "ERR bad")
        XCTAssertEqual(try parse("-ERR bad\r\n").value, .simpleError(ByteBuffer(string: "ERR bad")))
        XCTAssertEqual(try parse(":42\r\n").value, .number(42))
        XCTAssertEqual(try parse(":-42\r\n").int, -42)
        XCTAssertEqual(try parse(":+7\r\n").int, 7)
        XCTAssertEqual(try parse(":9223372036854775807\r\n").int, .max)
        XCTAssertEqual(try parse(":-9223372036854775808\r\n").int, .min)
        XCTAssertEqual(try parse(",1.5\r\n").value, .double(1.5))
        XCTAssertEqual(try parse(",-2.5e3\r\n").value, .double(-2500))
        XCTAssertEqual(try parse(",10\r\n").value, .double(10))
        XCTAssertEqual(try parse(",inf\r\n").value, .double(.infinity))
        XCTAssertEqual(try parse(",-inf\r\n").value, .double(-.infinity))
        guard case .double(let nan) = try parse(",nan\r\n").value else { return XCTFail("not a double") }
        XCTAssertTrue(nan.isNaN)
        XCTAssertEqual(try parse("#t\r\n").value, .boolean(true))
        XCTAssertEqual(try parse("#f\r\n").value, .boolean(false))
        XCTAssertEqual(try parse("_\r\n").value, .null)
        XCTAssertEqual(try parse("(-3492890328409238509324850943850943825024385\r\n").value,
                       .bigNumber(ByteBuffer(string: "-3492890328409238509324850943850943825024385")))
    }

    func testBlobs() throws {
        XCTAssertEqual(try parse("$5\r\nhello\r\n").value, .bulkString(ByteBuffer(string: "hello")))
        XCTAssertEqual(try parse("$0\r\n\r\n").string, "")
        // Payloads are binary: CR, LF and NUL inside are fine.
        XCTAssertEqual(try parse("$4\r\na\r\n\0\r\n").bytes, ByteBuffer(bytes: [0x61, 0x0D, 0x0A, 0x00]))
        XCTAssertEqual(try parse("$3\r\n-12\r\n").int, -12)
        XCTAssertNil(try parse("$3\r\n1x2\r\n").int)
        XCTAssertNil(try parse("$20\r\n99999999999999999999\r\n").int)
        XCTAssertEqual(try parse("!21\r\nSYNTAX invalid syntax\r\n").errorMessage, "SYNTAX invalid syntax")
        let verbatim = try parse("=15\r\ntxt:Some string\r\n")
        XCTAssertEqual(verbatim.value, .verbatimString(ByteBuffer(string: "txt:Some string")))
        XCTAssertEqual(verbatim.string, "Some string")
        XCTAssertEqual(try parse("=4\r\nmkd:\r\n").string, "")
    }

    func testRESP2Nulls() throws {
        XCTAssertTrue(try parse("$-1\r\n").isNull)
        XCTAssertTrue(try parse("*-1\r\n").isNull)
        XCTAssertTrue(try parse("_\r\n").isNull)
        XCTAssertFalse(try parse("$0\r\n\r\n").isNull)
        XCTAssertFalse(try parse("*0\r\n").isNull)
        XCTAssertNil(try parse("$-1\r\n").string)
    }

    func testAggregates() throws {
        let array = try parse("*3\r\n:1\r\n$3\r\nfoo\r\n*2\r\n+a\r\n_\r\n")
        guard case .array(let elements) = array.value else { return XCTFail("not an array") }
        XCTAssertEqual(elements.count, 3)
        let items = Array(elements)
        XCTAssertEqual(items.count, 3)
        XCTAssertEqual(items[0].int, 1)
        XCTAssertEqual(items[1].string, "foo")
        XCTAssertEqual(items[2].array?.count, 2)
        XCTAssertEqual(Array(items[2].array!)[0].string, "a")
        XCTAssertTrue(Array(items[2].array!)[1].isNull)
        // Elements are slices of the token's bytes, not copies.
        XCTAssertEqual(items[1].base, ByteBuffer(string: "$3\r\nfoo\r\n"))

        XCTAssertEqual(try parse("*0\r\n").array?.count, 0)
        XCTAssertTrue(try parse("*0\r\n").array!.isEmpty)
        XCTAssertEqual(Array(try parse("*0\r\n").array!), [])

        let set = try parse("~2\r\n+a\r\n+b\r\n")
        guard case .set(let members) = set.value else { return XCTFail("not a set") }
        XCTAssertEqual(self.strings(members), ["a", "b"])
        XCTAssertEqual(self.strings(set.array), ["a", "b"])

        let push = try parse(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n")
        XCTAssertTrue(push.isPush)
        guard case .push(let parts) = push.value else { return XCTFail("not a push") }
        XCTAssertEqual(self.strings(parts), ["message", "ch", "hi"])
    }

    func testMaps() throws {
        let map = try parse("%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n%1\r\n+x\r\n#t\r\n")
        guard case .map(let entries) = map.value else { return XCTFail("not a map") }
        XCTAssertEqual(entries.count, 2)
        let pairs = Array(entries)
        XCTAssertEqual(pairs.count, 2)
        XCTAssertEqual(pairs[0].key.string, "first")
        XCTAssertEqual(pairs[0].value.int, 1)
        XCTAssertEqual(pairs[1].key.string, "second")
        XCTAssertEqual(pairs[1].value.map?["x"]?.value, .boolean(true))
        XCTAssertEqual(entries["first"]?.int, 1)
        XCTAssertNil(entries["third"])
        XCTAssertEqual(Array(try parse("%0\r\n").map!).count, 0)
    }

    func testNestedDeeply() throws {
        let depth = 32
        let text = String(repeating: "*1\r\n", count: depth) + ":5\r\n"
        var token = try parse(text)
        for _ in 0..<depth {
            token = try XCTUnwrap(token.array?.first)
        }
        XCTAssertEqual(token.int, 5)
    }

    func testAttributes() throws {
        // A top-level attribute is dropped; the value after it is returned.
        let tokens = try parseAll("|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n+next\r\n")
        XCTAssertEqual(tokens.count, 2)
        XCTAssertEqual(tokens[0].array.map { Array($0).map(\.int) }, [2039123, 9543892])
        XCTAssertEqual(tokens[0].base, ByteBuffer(string: "*2\r\n:2039123\r\n:9543892\r\n"))
        XCTAssertEqual(tokens[1].string, "next")
        // Inside aggregates they are skipped, and take no element's slot.
        let nested = try parse("*2\r\n|1\r\n+ttl\r\n:3600\r\n+a\r\n%1\r\n|0\r\n$1\r\nk\r\n|1\r\n+x\r\n+y\r\n_\r\n")
        let elements = Array(nested.array!)
        XCTAssertEqual(elements.count, 2)
        XCTAssertEqual(elements[0].string, "a")
        let entries = Array(elements[1].map!)
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0].key.string, "k")
        XCTAssertTrue(entries[0].value.isNull)
        // Indexing skips them too.
        let array = nested.array!
        XCTAssertEqual(array[array.startIndex].string, "a")
        // An attribute alone is not a value yet.
        var parser = RESPTokenParser()
        var buffer = ByteBuffer(string: "|1\r\n+a\r\n+b\r\n")
        XCTAssertNil(try parser.next(from: &buffer))
        buffer.writeString("+c\r\n")
        XCTAssertEqual(try parser.next(from: &buffer)?.string, "c")
        XCTAssertEqual(buffer.readableBytes, 0)
    }

    func testSeveralValuesAndPartialOnes() throws {
        var parser = RESPTokenParser()
        var buffer = ByteBuffer(string: "+OK\r\n:1\r\n$5\r\nhel")
        XCTAssertEqual(try parser.next(from: &buffer)?.string, "OK")
        XCTAssertEqual(try parser.next(from: &buffer)?.int, 1)
        let before = buffer.readerIndex
        XCTAssertNil(try parser.next(from: &buffer))
        XCTAssertEqual(buffer.readerIndex, before, "an incomplete value must not be consumed")
        XCTAssertNil(try parser.next(from: &buffer))
        buffer.writeString("lo\r")
        XCTAssertNil(try parser.next(from: &buffer))
        buffer.discardReadBytes()  // moving the bytes is fine: progress is relative
        buffer.writeString("\n")
        XCTAssertEqual(try parser.next(from: &buffer)?.string, "hello")
        XCTAssertNil(try parser.next(from: &buffer))
    }

    func testValidatingInit() throws {
        XCTAssertEqual(try RESPToken(validating: ByteBuffer(string: ":1\r\n"))?.int, 1)
        XCTAssertNil(try RESPToken(validating: ByteBuffer(string: ":1\r")))
        XCTAssertThrowsError(try RESPToken(validating: ByteBuffer(string: "?1\r\n")))
    }

    // MARK: - Splits

    func testEverySplitGivesTheSameTokens() throws {
        let text = "|1\r\n+a\r\n:1\r\n" + "%2\r\n$3\r\nkey\r\n*3\r\n:1\r\n,2.5\r\n=7\r\ntxt:abc\r\n+k2\r\n~1\r\n#t\r\n"
            + ">2\r\n+invalidate\r\n*1\r\n$3\r\nfoo\r\n" + "$-1\r\n*-1\r\n_\r\n(123\r\n!3\r\nERR\r\n-ERR x\r\n"
            + "*2\r\n|1\r\n+ttl\r\n:5\r\n$0\r\n\r\n*0\r\n"
        let bytes = Array(text.utf8)
        let whole = try self.parseInChunks(bytes, cuts: [])
        XCTAssertEqual(whole.count, 9)
        for cut in 1..<bytes.count {
            XCTAssertEqual(try self.parseInChunks(bytes, cuts: [cut]), whole, "split at \(cut)")
        }
        for first in stride(from: 1, to: bytes.count, by: 3) {
            for second in stride(from: first + 1, to: bytes.count, by: 5) {
                XCTAssertEqual(try self.parseInChunks(bytes, cuts: [first, second]), whole, "split at \(first), \(second)")
            }
        }
        XCTAssertEqual(try self.parseInChunks(bytes, cuts: Array(1..<bytes.count)), whole, "one byte at a time")
    }

    func testErrorsAreTheSameInEverySplit() {
        for text in ["*2\r\n:1\r\n:x\r\n", "$3\r\nabcd\r\n", "+a\nb\r\n", "*1\r\n*1\r\n*1\r\n:1\r\n", ":1\r\n+" + String(repeating: "a", count: 40)] {
            let bytes = Array(text.utf8)
            let limits = RESPTokenParser.Limits(maxDepth: 2, maxLineLength: 16)
            var expected: RESPParsingError?
            do { _ = try self.parseInChunks(bytes, cuts: [], limits: limits) } catch { expected = error as? RESPParsingError }
            XCTAssertNotNil(expected, text)
            for cut in 1..<bytes.count {
                XCTAssertThrowsError(try self.parseInChunks(bytes, cuts: [cut], limits: limits), "\(text) split at \(cut)") {
                    XCTAssertEqual($0 as? RESPParsingError, expected)
                }
            }
        }
    }

    func testLargeReplyInOneByteChunksIsFast() throws {
        // 20,000 elements and a 256 KiB bulk string, one byte per call: linear, not quadratic.
        var text = "*20000\r\n"
        for i in 0..<20000 { text += "$\(String(i).utf8.count)\r\n\(i)\r\n" }
        text += "$262144\r\n" + String(repeating: "x", count: 262144) + "\r\n"
        let bytes = Array(text.utf8)
        let start = ContinuousClock.now
        var parser = RESPTokenParser()
        var buffer = ByteBuffer()
        var tokens: [RESPToken] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            if let token = try parser.next(from: &buffer) {
                tokens.append(token)
                buffer.discardReadBytes()
            }
        }
        let elapsed = ContinuousClock.now - start
        XCTAssertEqual(tokens.count, 2)
        XCTAssertEqual(tokens[0].array?.count, 20000)
        XCTAssertEqual(Array(tokens[0].array!).last?.string, "19999")
        XCTAssertEqual(tokens[1].bytes?.readableBytes, 262144)
        XCTAssertLessThan(elapsed, .seconds(20), "\(bytes.count) bytes one at a time took \(elapsed)")
    }

    // MARK: - Limits

    func testDepthLimit() {
        let limits = RESPTokenParser.Limits(maxDepth: 3)
        XCTAssertNoThrow(try parse("*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits))
        XCTAssertEqual(error("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", limits: limits), .tooDeep)
        XCTAssertEqual(error("*1\r\n%1\r\n~1\r\n>0\r\n", limits: limits), .tooDeep)
        XCTAssertEqual(error(String(repeating: "*1\r\n", count: 100_000)), .tooDeep)
    }

    func testBulkLengthLimit() {
        let limits = RESPTokenParser.Limits(maxBulkLength: 4)
        XCTAssertNoThrow(try parse("$4\r\nabcd\r\n", limits: limits))
        XCTAssertEqual(error("$5\r\n", limits: limits), .bulkTooLong)
        XCTAssertEqual(error("!5\r\n", limits: limits), .bulkTooLong)
        XCTAssertEqual(error("=5\r\n", limits: limits), .bulkTooLong)
        XCTAssertEqual(error("$999999999999\r\n"), .bulkTooLong)
        XCTAssertEqual(error("$99999999999999999999999999999999\r\n"), .bulkTooLong)
    }

    func testAggregateCountLimit() {
        let limits = RESPTokenParser.Limits(maxAggregateCount: 2)
        XCTAssertNoThrow(try parse("*2\r\n:1\r\n:2\r\n", limits: limits))
        XCTAssertNoThrow(try parse("%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n", limits: limits))
        for type in ["*", "~", ">", "%", "|"] {
            XCTAssertEqual(error("\(type)3\r\n", limits: limits), .tooManyElements, type)
        }
        XCTAssertEqual(error("*99999999999999999999999\r\n"), .tooManyElements)
    }

    func testLineLengthLimit() {
        let limits = RESPTokenParser.Limits(maxLineLength: 4)
        XCTAssertNoThrow(try parse("+abcd\r\n", limits: limits))
        XCTAssertEqual(error("+abcde\r\n", limits: limits), .lineTooLong)
        // Decided without waiting for a CR that may never come.
        XCTAssertEqual(error("+abcde", limits: limits), .lineTooLong)
        XCTAssertNil(error("+abcd", limits: limits))
        XCTAssertEqual(error(":123456\r\n", limits: limits), .lineTooLong)
        XCTAssertEqual(error("$000001\r\n", limits: limits), .lineTooLong)
        XCTAssertEqual(error("+" + String(repeating: "a", count: 70_000)), .lineTooLong)
    }

    // MARK: - Malformed input

    func testMalformedInputThrows() {
        let cases: [(String, RESPParsingError)] = [
            ("?\r\n", .invalidType(UInt8(ascii: "?"))),
            ("\r\n", .invalidType(0x0D)),
            ("OK\r\n", .invalidType(UInt8(ascii: "O"))),
            ("+OK\n", .missingCRLF),
            ("+OK\rX", .missingCRLF),
            ("+O\nK\r\n", .missingCRLF),
            (":1\r\r\n", .missingCRLF),
            ("$2\r\nabc\r\n", .missingCRLF),
            ("$5\r\nab\r\n+OK\r\n", .missingCRLF),
            ("$1\r\nab", .missingCRLF),
            ("$-2\r\n", .invalidLength),
            ("$-0\r\n", .invalidLength),
            ("$+5\r\nhello\r\n", .invalidLength),
            ("$ 5\r\n", .invalidLength),
            ("$\r\n", .invalidLength),
            ("$5x\r\n", .invalidLength),
            ("!-1\r\n", .invalidLength),
            ("=-1\r\n", .invalidLength),
            ("*-2\r\n", .invalidLength),
            ("~-1\r\n", .invalidLength),
            ("%-1\r\n", .invalidLength),
            ("*1x\r\n", .invalidLength),
            ("$?\r\n", .streamedValueNotSupported),
            ("*?\r\n", .streamedValueNotSupported),
            ("%?\r\n", .streamedValueNotSupported),
            (":\r\n", .invalidNumber),
            (":-\r\n", .invalidNumber),
            (":12a\r\n", .invalidNumber),
            (": 1\r\n", .invalidNumber),
            (":9223372036854775808\r\n", .invalidNumber),
            (":-9223372036854775809\r\n", .invalidNumber),
            (",\r\n", .invalidDouble),
            (",1.\r\n", .invalidDouble),
            (",.5\r\n", .invalidDouble),
            (",1e\r\n", .invalidDouble),
            (",0x10\r\n", .invalidDouble),
            (",infinity\r\n", .invalidDouble),
            (",Inf\r\n", .invalidDouble),
            (",1.5 \r\n", .invalidDouble),
            ("#\r\n", .invalidBoolean),
            ("#true\r\n", .invalidBoolean),
            ("#T\r\n", .invalidBoolean),
            ("_x\r\n", .invalidNull),
            ("(\r\n", .invalidBigNumber),
            ("(12.5\r\n", .invalidBigNumber),
            ("(-\r\n", .invalidBigNumber),
            ("=3\r\ntxt\r\n", .invalidVerbatimString),
            ("=5\r\ntxt;a\r\n", .invalidVerbatimString),
            ("*2\r\n:1\r\n?\r\n", .invalidType(UInt8(ascii: "?"))),
            ("%1\r\n+k\r\n#x\r\n", .invalidBoolean),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(error(input), expected, input.debugDescription)
        }
    }

    func testIncompleteInputIsNotAnError() {
        for input in ["", "+", "+OK", "+OK\r", ":12", "$5\r\nab", "$5\r\nab\r\n", "*2\r\n:1\r\n", "%1\r\n+k\r\n", "|1\r\n+a\r\n+b\r\n", "=4\r\n"] {
            XCTAssertNil(error(input), input.debugDescription)
        }
    }

    func testArbitraryBytesNeverTrap() {
        // Mutations of valid replies and random bytes, with tiny limits too; any outcome but a
        // trap is fine, and every token returned decodes.
        var generator = SystemRandomNumberGenerator()
        let seeds = [
            "*3\r\n:1\r\n$3\r\nfoo\r\n%1\r\n+a\r\n,1.5\r\n", "|1\r\n+a\r\n:1\r\n>2\r\n+m\r\n=5\r\ntxt:x\r\n",
            "~2\r\n#t\r\n_\r\n(12\r\n!1\r\nE\r\n$-1\r\n*-1\r\n",
        ]
        let alphabet = Array("*%~>|$!=+-:,#_(\r\n0123456789-?tfinax.e".utf8)
        for round in 0..<3000 {
            var bytes = Array(seeds[round % seeds.count].utf8)
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let position = Int.random(in: 0..<bytes.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: bytes[position] = alphabet.randomElement(using: &generator)!
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet.randomElement(using: &generator)!, at: position)
                }
                if bytes.isEmpty { bytes = [0x2B] }
            }
            let limits = round % 2 == 0 ? RESPTokenParser.Limits() : RESPTokenParser.Limits(maxDepth: 1, maxBulkLength: 2, maxAggregateCount: 1, maxLineLength: 2)
            var parser = RESPTokenParser(limits: limits)
            var buffer = ByteBuffer(bytes: bytes)
            while let token = try? parser.next(from: &buffer) {
                _ = token.description
                _ = token.int
                if let array = token.array { _ = Array(array) }
                if let map = token.map { _ = Array(map) }
            }
        }
    }
}
