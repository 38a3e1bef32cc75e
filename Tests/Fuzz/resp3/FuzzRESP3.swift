import FuzzSupport
import NIOCore
import Redis

// Fuzz target `resp3`: RESPTokenParser on arbitrary bytes in arbitrary splits, and RESPToken's
// decoding of everything it returns.
//
// Input layout:
//   byte 0   limits, two bits each (0 is the default): bits 0-1 maxDepth (32, 1, 2, 4),
//            bits 2-3 maxBulkLength (64 MiB, 0, 5, 64), bits 4-5 maxAggregateCount (2^20, 0, 3,
//            16), bits 6-7 maxLineLength (64 KiB, 1, 4, 16)
//   byte 1   bits 0-3: k, the number of chunk-length bytes that follow (0: one byte per chunk)
//            bit 4: the split run compacts its buffer (discardReadBytes) after every chunk
//   k bytes  chunk lengths, cycled (0 is an empty chunk)
//   rest     the server's byte stream
//
// Properties: parsing in those chunks gives the same tokens, error and leftover as parsing the
// whole stream at once; nothing traps; every token, and every element inside it, parses again
// to itself from its own bytes; walking a token's value (aggregates recursively) never traps,
// visits `count` elements (twice that for maps), and the elements' bytes lie back to back inside
// their aggregate's, after its header, separated only by attributes, ending where it ends.

enum Step: Equatable {
    case token(RESPToken)
    case error(RESPParsingError)
    case leftover(Int)
}

func limits(_ byte: UInt8) -> RESPTokenParser.Limits {
    func pick(_ shift: UInt8, _ choices: [Int]) -> Int { choices[Int((byte >> shift) & 3)] }
    return RESPTokenParser.Limits(
        maxDepth: pick(0, [32, 1, 2, 4]),
        maxBulkLength: pick(2, [64 << 20, 0, 5, 64]),
        maxAggregateCount: pick(4, [1 << 20, 0, 3, 16]),
        maxLineLength: pick(6, [64 << 10, 1, 4, 16]))
}

/// Takes every value `buffer` holds; stops at nil or an error.
func drain(_ parser: inout RESPTokenParser, _ buffer: inout ByteBuffer, into steps: inout [Step]) -> Bool {
    while true {
        do {
            guard let token = try parser.next(from: &buffer) else { return true }
            steps.append(.token(token))
        } catch {
            steps.append(.error(error))
            return false
        }
    }
}

func run(_ data: UnsafeRawBufferPointer, limits: RESPTokenParser.Limits, chunks: [(start: Int, end: Int)]?, compact: Bool) -> [Step] {
    var parser = RESPTokenParser(limits: limits)
    var steps: [Step] = []
    var buffer = ByteBuffer()
    for chunk in chunks ?? [(0, data.count)] {
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: data[chunk.start..<chunk.end]))
        guard drain(&parser, &buffer, into: &steps) else { return steps }
        if compact { buffer.discardReadBytes() }
    }
    steps.append(.leftover(buffer.readableBytes))
    return steps
}

/// The address range of a buffer's readable bytes (tokens are slices of one storage).
func span(_ buffer: ByteBuffer) -> Range<UInt> {
    buffer.withUnsafeReadableBytes { bytes in
        let start = UInt(bitPattern: bytes.baseAddress)
        return start..<(start + UInt(bytes.count))
    }
}

func byte(_ buffer: ByteBuffer, at address: UInt) -> UInt8? {
    let range = span(buffer)
    guard range.contains(address) else { return nil }
    return buffer.getInteger(at: buffer.readerIndex + Int(address - range.lowerBound), as: UInt8.self)
}

/// Checks a token and everything in it; returns the number of tokens walked.
@discardableResult
func walk(_ token: RESPToken, depth: Int) -> Int {
    fuzzCheck(depth <= 40, "walked deeper than any limit allows")
    let base = token.base
    fuzzCheck(base.readableBytes >= 3, "token too short: \(base.readableBytes) bytes")

    // The token's own bytes parse to exactly it.
    var again = base
    var parser = RESPTokenParser(limits: .init(maxDepth: 64))
    do {
        let reparsed = try parser.next(from: &again)
        fuzzCheck(reparsed == token, "token does not parse to itself: \(String(describing: reparsed)) vs \(token)")
        fuzzCheck(again.readableBytes == 0, "token parses with \(again.readableBytes) bytes left")
    } catch {
        fuzzFail("token's own bytes do not parse: \(error)")
    }

    _ = token.string
    _ = token.int
    _ = token.isNull
    _ = token.errorMessage
    _ = token.description
    if let bytes = token.bytes {
        fuzzCheck(bytes.readableBytes <= base.readableBytes, "payload longer than the token")
    }

    var elements: [RESPToken] = []
    let expected: Int
    switch token.value {
    case .array(let array), .set(let array), .push(let array):
        elements = Array(array)
        expected = array.count
        // Indexing agrees with iterating.
        var indexed: [RESPToken] = []
        var index = array.startIndex
        while index < array.endIndex, indexed.count <= array.count {
            indexed.append(array[index])
            index = array.index(after: index)
        }
        fuzzCheck(indexed == elements, "indexing and iterating differ")
        fuzzCheck(token.array != nil, "array accessor")
    case .map(let map), .attribute(let map):
        for entry in map {
            elements.append(entry.key)
            elements.append(entry.value)
        }
        expected = 2 * map.count
    case .bulkString(let bytes), .bulkError(let bytes), .verbatimString(let bytes):
        fuzzCheck(bytes.readableBytes + 5 <= base.readableBytes, "blob payload does not fit its token")
        return 1
    default:
        return 1
    }
    fuzzCheck(elements.count == expected, "walked \(elements.count) elements, header says \(expected)")

    // The elements lie back to back after the header, gaps only for attributes, up to the end.
    let parent = span(base)
    let headerEnd = base.withUnsafeReadableBytes { bytes in
        UInt(bitPattern: bytes.baseAddress) + UInt(bytes.firstIndex(of: 0x0A)! + 1)
    }
    var position = headerEnd
    for element in elements {
        let child = span(element.base)
        fuzzCheck(child.lowerBound >= position && child.upperBound <= parent.upperBound, "element outside its aggregate")
        if child.lowerBound > position {
            fuzzCheck(byte(base, at: position) == UInt8(ascii: "|"), "gap before an element that is not an attribute")
        }
        position = child.upperBound
    }
    fuzzCheck(position == parent.upperBound || (elements.isEmpty && position == parent.upperBound),
              "elements end \(parent.upperBound - position) bytes before their aggregate")

    var total = 1
    for element in elements {
        total += walk(element, depth: depth + 1)
    }
    return total
}

@main
struct FuzzRESP3 {
    static func main() {
        FuzzMain.run { input in
            var reader = FuzzBytes(input)
            let limits = limits(reader.byte())
            let flags = reader.byte()
            let lengths = (0..<Int(flags & 0x0F)).map { _ in Int(reader.byte()) }
            let compact = flags & 0x10 != 0
            let data = reader.rest

            let whole = run(data, limits: limits, chunks: nil, compact: false)
            let split = run(data, limits: limits, chunks: fuzzChunks(count: data.count, lengths: lengths), compact: compact)
            fuzzCheck(whole == split, "split parse differs:\n  whole: \(whole)\n  split: \(split)")
            if FuzzMain.verbose {
                print("\(FuzzMain.currentInput ?? "input"): \(limits): \(whole)")
            }
            for step in whole {
                if case .token(let token) = step {
                    walk(token, depth: 0)
                }
            }
        }
    }
}
