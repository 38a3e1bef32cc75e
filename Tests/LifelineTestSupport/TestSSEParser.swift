/// A small, independent `text/event-stream` parser for checking what clients receive.
///
/// Deliberately separate from the product's SSE module, so that a bug there cannot hide itself
/// in the tests. It follows the WHATWG rules that matter for a gateway: lines end with CR, LF or
/// CRLF (also split across reads); a leading BOM is skipped; a field value loses one leading
/// space; `data` lines accumulate; an `id` containing NUL is ignored; `retry` takes digits only;
/// a blank line dispatches an event only if the block had a `data` field.
public struct TestSSEParser: Sendable {
    /// Events dispatched so far, in order.
    public private(set) var events: [TestEvent] = []
    /// Comment lines so far: the text after `:`, without one leading space (`": ping"` → `"ping"`).
    public private(set) var comments: [String] = []
    /// The last valid `retry:` value, in milliseconds.
    public private(set) var retry: Int?
    /// The last event ID buffer (persists across events, as in `EventSource`).
    public private(set) var lastEventID = ""

    private var line: [UInt8] = []
    private var previousWasCR = false
    private var isFirstLine = true
    private var dataBuffer = ""
    private var hasData = false
    private var eventType = ""
    private var blockID: String?

    public init() {}

    /// Feeds the next bytes of the stream; complete events become visible in ``events``.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        let done: Void? = bytes.withContiguousStorageIfAvailable { self.feed(contiguous: $0) }
        if done == nil {
            Array(bytes).withUnsafeBufferPointer { self.feed(contiguous: $0) }
        }
    }

    /// Scans for line ends and copies whole runs of line bytes at once: tests push megabytes
    /// through this in unoptimized builds, where a per-byte append is slow.
    private mutating func feed(contiguous bytes: UnsafeBufferPointer<UInt8>) {
        var lineStart = 0
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") else {
                index += 1
                continue
            }
            if byte == UInt8(ascii: "\n"), self.previousWasCR, index == lineStart {
                // The LF of a CRLF: the line already ended at the CR.
                self.previousWasCR = false
            } else {
                self.line.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[lineStart..<index]))
                self.finishLine()
                self.previousWasCR = byte == UInt8(ascii: "\r")
            }
            index += 1
            lineStart = index
        }
        if lineStart < bytes.count {
            self.line.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[lineStart...]))
            self.previousWasCR = false
        }
    }

    private mutating func finishLine() {
        var bytes = self.line[...]
        self.line.removeAll(keepingCapacity: true)
        if self.isFirstLine {
            self.isFirstLine = false
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
                bytes = bytes.dropFirst(3)
            }
        }
        if bytes.isEmpty {
            self.dispatch()
            return
        }
        let text = String(decoding: bytes, as: UTF8.self)
        if text.hasPrefix(":") {
            self.comments.append(Self.dropOneSpace(text.dropFirst()))
            return
        }
        let name: Substring
        let value: String
        if let colon = text.firstIndex(of: ":") {
            name = text[..<colon]
            value = Self.dropOneSpace(text[text.index(after: colon)...])
        } else {
            name = text[...]
            value = ""
        }
        switch name {
        case "data":
            self.dataBuffer += value
            self.dataBuffer += "\n"
            self.hasData = true
        case "event":
            self.eventType = value
        case "id":
            if !value.contains("\u{0}") {
                self.lastEventID = value
                self.blockID = value
            }
        case "retry":
            if !value.isEmpty, value.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                self.retry = Int(value)
            }
        default:
            break  // Unknown fields are ignored.
        }
    }

    private mutating func dispatch() {
        defer {
            self.dataBuffer = ""
            self.hasData = false
            self.eventType = ""
            self.blockID = nil
        }
        guard self.hasData else { return }
        var data = self.dataBuffer
        data.removeLast()  // the "\n" after the last data line
        self.events.append(
            TestEvent(
                id: self.blockID,
                type: self.eventType.isEmpty ? nil : self.eventType,
                data: data,
                lastEventID: self.lastEventID
            )
        )
    }

    private static func dropOneSpace(_ text: Substring) -> String {
        String(text.first == " " ? text.dropFirst() : text)
    }
}
