import NIOCore
import XCTest

@testable import Redis

final class RESPCommandTests: XCTestCase {
    private func encoded(_ command: RESPCommand) -> String {
        var buffer = ByteBuffer()
        command.write(into: &buffer)
        XCTAssertEqual(buffer.readableBytes, command.encodedLength, "encodedLength")
        return String(buffer: buffer)
    }

    func testExactBytes() {
        XCTAssertEqual(encoded(RESPCommand("PING")), "*1\r\n$4\r\nPING\r\n")
        XCTAssertEqual(encoded(RESPCommand("GET", "key")), "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
        XCTAssertEqual(encoded(RESPCommand("SET", "k", "", "PX", 5000)),
                       "*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$2\r\nPX\r\n$4\r\n5000\r\n")
        XCTAssertEqual(encoded(RESPCommand("INCRBY", "n", .int(-12))), "*3\r\n$6\r\nINCRBY\r\n$1\r\nn\r\n$3\r\n-12\r\n")
        XCTAssertEqual(encoded(RESPCommand("X", .int(0), .int(.min), .uint(.max))),
                       "*4\r\n$1\r\nX\r\n$1\r\n0\r\n$20\r\n-9223372036854775808\r\n$20\r\n18446744073709551615\r\n")
        XCTAssertEqual(encoded(RESPCommand("X", RESPArgument(1.5), RESPArgument(-Double.infinity))),
                       "*3\r\n$1\r\nX\r\n$3\r\n1.5\r\n$4\r\n-inf\r\n")
        XCTAssertEqual(encoded(RESPCommand("SET", "ключ", "é")), "*3\r\n$3\r\nSET\r\n$8\r\nключ\r\n$2\r\né\r\n")
        XCTAssertEqual(encoded(RESPCommand(arguments: ["GET", "a"])), "*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
        XCTAssertEqual(encoded(RESPCommand("DEL", arguments: ["a", "b"])), "*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n")
        XCTAssertEqual(encoded(RESPCommand("X", RESPArgument(7), RESPArgument(UInt64(8)), RESPArgument("s"[...]))),
                       "*4\r\n$1\r\nX\r\n$1\r\n7\r\n$1\r\n8\r\n$1\r\ns\r\n")
    }

    func testByteBufferArgumentsAreWrittenAsTheyAre() {
        var value = ByteBuffer(bytes: [0x00, 0x0D, 0x0A, 0xFF])
        value.moveReaderIndex(forwardBy: 1)  // only the readable bytes count
        var buffer = ByteBuffer(string: "prefix")
        RESPCommand("SET", "k", .bytes(value)).write(into: &buffer)
        XCTAssertEqual(Array(buffer.readableBytesView),
                       Array("prefix*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n".utf8) + [0x0D, 0x0A, 0xFF] + Array("\r\n".utf8))
    }

    func testLongArgumentLists() {
        let arguments = (0..<1000).map { RESPArgument.int(Int64($0)) }
        let text = encoded(RESPCommand("RPUSH", arguments: arguments))
        XCTAssertTrue(text.hasPrefix("*1001\r\n$5\r\nRPUSH\r\n$1\r\n0\r\n"))
        XCTAssertTrue(text.hasSuffix("$3\r\n999\r\n"))
    }

    func testEncodedCommandsParseBack() throws {
        var buffer = ByteBuffer()
        RESPCommand("XADD", "s", "*", "data", .bytes(ByteBuffer(string: "a\r\nb"))).write(into: &buffer)
        var parser = RESPTokenParser()
        let token = try XCTUnwrap(try parser.next(from: &buffer))
        XCTAssertEqual(token.array.map { Array($0).map(\.string) }, ["XADD", "s", "*", "data", "a\r\nb"])
    }

    func testSubscriptionCommandsAreRecognised() {
        XCTAssertEqual(RESPCommand("SUBSCRIBE", "a").subscriptionKind, .subscribe)
        XCTAssertEqual(RESPCommand("psubscribe", "a*").subscriptionKind, .psubscribe)
        XCTAssertEqual(RESPCommand("SUnsubscribe").subscriptionKind, .sunsubscribe)
        XCTAssertEqual(RESPCommand(arguments: [.bytes(ByteBuffer(string: "UNSUBSCRIBE"))]).subscriptionKind, .unsubscribe)
        XCTAssertNil(RESPCommand("PUBLISH", "a", "b").subscriptionKind)
        XCTAssertNil(RESPCommand("SUBSCRIBEX").subscriptionKind)
        XCTAssertNil(RESPCommand(arguments: []).subscriptionKind)
    }

    func testServerErrorCode() {
        XCTAssertEqual(RedisServerError(message: "WRONGTYPE Operation against a key").code, "WRONGTYPE")
        XCTAssertEqual(RedisServerError(message: "MOVED 3999 127.0.0.1:6381").code, "MOVED")
        XCTAssertEqual(RedisServerError(message: "NOSCRIPT").code, "NOSCRIPT")
        XCTAssertEqual(RedisServerError(message: "").code, "")
    }
}
