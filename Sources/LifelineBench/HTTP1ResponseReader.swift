/// An incremental reader for one HTTP/1.1 response: the head, then the body as spans of the input
/// with chunked framing removed.
///
/// The load tool reads bodies in place rather than through NIOHTTP1's decoder, whose body parts
/// travel through the pipeline boxed one by one; here an event costs no allocation between the
/// socket read and the SSE parser. Only what SSE responses use is supported: chunked,
/// Content-Length, or a body that ends with the connection.
struct HTTP1ResponseReader {
    struct Head {
        var status: Int
        var isEventStream: Bool
    }

    enum Piece {
        /// All input consumed; call again with the next read.
        case needMore
        case head(Head)
        /// Body bytes: a range of the input.
        case body(Range<Int>)
        /// The response is complete (last chunk, or Content-Length reached).
        case end
    }

    enum ReadError: Error, CustomStringConvertible {
        case headTooLarge
        case malformedHead(String)
        case malformedChunk

        var description: String {
            switch self {
            case .headTooLarge: return "response head larger than 64 KiB"
            case .malformedHead(let why): return "malformed response head: \(why)"
            case .malformedChunk: return "malformed chunked body"
            }
        }
    }

    private enum State {
        case head
        case chunkSize(value: Int, digits: Int)
        /// After the size: an extension or whitespace, up to the line's end.
        case chunkSizeLineRest(value: Int)
        case chunkData(remaining: Int)
        case chunkDataEnd(sawCR: Bool)
        /// After the last chunk: trailer lines, then an empty line.
        case trailer(lineIsEmpty: Bool)
        case lengthBody(remaining: Int)
        case untilClose
        case done
    }

    private var state = State.head
    private var headBytes: [UInt8] = []
    private static let maxHeadSize = 64 * 1024

    /// The next piece from `raw` starting at `index`, which it advances.
    mutating func next(_ raw: UnsafeRawBufferPointer, index: inout Int) throws(ReadError) -> Piece {
        let end = raw.count
        while index < end {
            switch self.state {
            case .head:
                // Bytes up to the blank line; a head arrives once per connection, so byte by byte is fine.
                while index < end {
                    let byte = raw[index]
                    index &+= 1
                    self.headBytes.append(byte)
                    guard self.headBytes.count <= Self.maxHeadSize else { throw .headTooLarge }
                    if byte == asciiLF && Self.endsWithBlankLine(self.headBytes) {
                        let head = try self.parseHead()
                        self.headBytes = []
                        return .head(head)
                    }
                }
                return .needMore

            case .chunkSize(let value, let digits):
                let byte = raw[index]
                index &+= 1
                if let digit = hexValue(byte) {
                    guard digits < 15 else { throw .malformedChunk }
                    self.state = .chunkSize(value: value << 4 | digit, digits: digits &+ 1)
                } else if digits == 0 {
                    throw .malformedChunk
                } else if byte == asciiLF {
                    self.chunkSizeDone(value)
                } else {
                    self.state = .chunkSizeLineRest(value: value)
                }

            case .chunkSizeLineRest(let value):
                let byte = raw[index]
                index &+= 1
                if byte == asciiLF {
                    self.chunkSizeDone(value)
                }

            case .chunkData(let remaining):
                let take = min(remaining, end &- index)
                let range = index..<(index &+ take)
                index &+= take
                self.state = take == remaining ? .chunkDataEnd(sawCR: false) : .chunkData(remaining: remaining &- take)
                return .body(range)

            case .chunkDataEnd(let sawCR):
                let byte = raw[index]
                index &+= 1
                if byte == asciiCR && !sawCR {
                    self.state = .chunkDataEnd(sawCR: true)
                } else if byte == asciiLF {
                    self.state = .chunkSize(value: 0, digits: 0)
                } else {
                    throw .malformedChunk
                }

            case .trailer(let lineIsEmpty):
                let byte = raw[index]
                index &+= 1
                if byte == asciiLF {
                    if lineIsEmpty {
                        self.state = .done
                        return .end
                    }
                    self.state = .trailer(lineIsEmpty: true)
                } else if byte != asciiCR {
                    self.state = .trailer(lineIsEmpty: false)
                }

            case .lengthBody(let remaining):
                let take = min(remaining, end &- index)
                let range = index..<(index &+ take)
                index &+= take
                if take == remaining {
                    self.state = .done
                } else {
                    self.state = .lengthBody(remaining: remaining &- take)
                }
                return .body(range)

            case .untilClose:
                let range = index..<end
                index = end
                return .body(range)

            case .done:
                // Bytes after the end of the response: nothing was asked for, ignore them.
                index = end
                return .needMore
            }
        }
        return .needMore
    }

    /// True once the body has been read to its end (as opposed to cut off).
    var isComplete: Bool {
        if case .done = self.state { return true }
        return false
    }

    private mutating func chunkSizeDone(_ value: Int) {
        self.state = value == 0 ? .trailer(lineIsEmpty: true) : .chunkData(remaining: value)
    }

    private static func endsWithBlankLine(_ bytes: [UInt8]) -> Bool {
        let count = bytes.count
        if count >= 2 && bytes[count - 2] == asciiLF { return true }
        return count >= 3 && bytes[count - 2] == asciiCR && bytes[count - 3] == asciiLF
    }

    private mutating func parseHead() throws(ReadError) -> Head {
        // Split on bytes: as Characters, CR LF is one grapheme and would not split at "\n".
        var lines = self.headBytes.split(separator: asciiLF, omittingEmptySubsequences: false).map { line in
            Substring(String(decoding: line.last == asciiCR ? line.dropLast() : line, as: UTF8.self))
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let statusLine = lines.first else { throw .malformedHead("empty") }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            throw .malformedHead("status line \"\(statusLine.prefix(80))\"")
        }
        var chunked = false
        var contentLength: Int?
        var isEventStream = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            switch name {
            case "transfer-encoding":
                chunked = value.lowercased().contains("chunked")
            case "content-length":
                contentLength = Int(value)
            case "content-type":
                isEventStream = value.lowercased().hasPrefix("text/event-stream")
            default:
                break
            }
        }
        if status == 204 || status == 304 {
            self.state = .done
        } else if chunked {
            self.state = .chunkSize(value: 0, digits: 0)
        } else if let length = contentLength {
            self.state = length > 0 ? .lengthBody(remaining: length) : .done
        } else {
            self.state = .untilClose
        }
        return Head(status: status, isEventStream: isEventStream)
    }
}

@inline(__always)
private func hexValue(_ byte: UInt8) -> Int? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte &- UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte &- UInt8(ascii: "a") &+ 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte &- UInt8(ascii: "A") &+ 10)
    default: return nil
    }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        var text = self
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return text
    }
}
