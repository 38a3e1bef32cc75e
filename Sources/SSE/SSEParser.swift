import NIOCore

/// An incremental parser for `text/event-stream` bodies that follows the WHATWG HTML
/// "Server-sent events" parsing and interpretation algorithms.
///
/// Bytes may arrive in any split: a line, a UTF-8 sequence, the BOM or a CRLF may straddle two
/// calls to `parse`, and the outputs are the same as if the stream had arrived whole.
///
/// Differences from what a browser's `EventSource` does with the same events, all deliberate:
/// - A block that has an `id` field but no `data` field is emitted (with `data == nil`), so a
///   gateway can forward the id change. A browser fires nothing for it.
/// - `retry` is reported rather than applied.
///
/// ### Last event ID across connections
/// The spec keeps two values: the per-stream *last event ID buffer*, set as soon as an `id` line is
/// parsed, and the `EventSource`'s *last event ID string*, copied from the buffer only when a block
/// is dispatched; reconnections send the latter as `Last-Event-ID`. `lastEventID` is that string.
/// So an `id` in a block cut off by the end of a connection is forgotten by `startNewStream`:
/// the block was never delivered, and resuming after its id would skip it.
/// A new stream starts its buffer from `lastEventID` rather than from "" as the spec words it,
/// so that events of a resumed stream that carry no `id` keep reporting the id they follow
/// (which is what browsers do: Chromium seeds each connection's parser with it).
public struct SSEParser: Sendable {
    public enum Output: Sendable, Hashable {
        /// Emitted at a blank line when the block had a data field or an id field.
        case event(SSEEvent)
        /// A valid `retry` field (ASCII digits only), in milliseconds, emitted as soon as the field
        /// line is parsed. Values beyond `Int.max` are clamped to it.
        case retry(Int)
    }

    public enum Error: Swift.Error, Hashable {
        case eventTooLarge(limit: Int)
    }

    /// The bound on one block and on one line; see `init`.
    public let maxEventSize: Int

    /// The spec's "last event ID string": the last event ID buffer as of the last blank line.
    public private(set) var lastEventID: String

    // Block state, reset at every blank line.
    /// The spec's "last event ID buffer". Outlives blocks, and is reseeded by `startNewStream`.
    private var lastEventIDBuffer: String
    /// The last valid `id` field of the current block.
    private var blockID: String?
    /// The last `event` field of the current block.
    private var eventType: String?
    /// The spec's data buffer as UTF-8: each `data` value followed by LF. Decoding it whole at
    /// dispatch gives the same string as decoding per line (LF can't be part of a UTF-8 sequence)
    /// with one allocation per event instead of one per line.
    private var dataBuffer: [UInt8] = []
    /// The bytes of the current block's field lines, one per terminator (see `init`).
    private var blockSize = 0

    // Line state.
    /// The start of a line whose terminator hasn't arrived yet.
    private var partialLine: [UInt8] = []
    /// The previous line ended with CR, so an LF next is the rest of that terminator.
    private var skipLF = false
    /// How many bytes of a leading BOM have been seen; nil once past the start of the stream.
    private var bomBytesSeen: Int? = 0
    /// A size error was thrown; the stream is unusable until `startNewStream`.
    private var failed = false

    /// - Parameters:
    ///   - maxEventSize: bounds the bytes of one block and of any single pending line; exceeding it
    ///     throws and the parser must then be reset (`startNewStream`). A block counts its field
    ///     lines with one byte for each line terminator (so a CRLF counts as one byte, and the count
    ///     doesn't depend on where the stream was split); comment lines don't count toward a block,
    ///     since they are dropped at once and a server may send keepalive comments without blank
    ///     lines, but no line at all may be longer than the limit.
    ///   - lastEventID: the last event ID to start from, e.g. the one a reconnection resumes from.
    public init(maxEventSize: Int = 1 << 20, lastEventID: String = "") {
        precondition(maxEventSize > 0, "maxEventSize must be positive")
        self.maxEventSize = maxEventSize
        self.lastEventID = lastEventID
        self.lastEventIDBuffer = lastEventID
    }

    /// Feed the next bytes of the stream, in any split. Calls `body` for each output in order.
    public mutating func parse(_ bytes: ByteBuffer, _ body: (Output) -> Void) throws(SSEParser.Error) {
        try bytes.withUnsafeReadableBytes { (raw) throws(SSEParser.Error) in
            try self.parse(raw, body)
        }
    }

    /// Feed the next bytes of the stream, in any split, and collect the outputs.
    public mutating func parse(_ bytes: ByteBuffer) throws(SSEParser.Error) -> [Output] {
        var outputs: [Output] = []
        try self.parse(bytes) { outputs.append($0) }
        return outputs
    }

    /// Feed the next bytes of the stream, in any split. Calls `body` for each output in order.
    public mutating func parse(_ raw: UnsafeRawBufferPointer, _ body: (Output) -> Void) throws(SSEParser.Error) {
        guard !self.failed else {
            throw .eventTooLarge(limit: self.maxEventSize)
        }
        var index = 0
        if self.bomBytesSeen != nil {
            index = self.skipBOM(raw)
        }
        let count = raw.count
        while index < count {
            if self.skipLF {
                self.skipLF = false
                if raw[index] == asciiLF {
                    index &+= 1
                    continue
                }
            }
            guard let end = raw.firstLineBreak(from: index) else {
                // Keep the unterminated rest for the next call, unless it can no longer fit.
                guard self.partialLine.count + (count - index) <= self.maxEventSize else {
                    throw self.fail()
                }
                self.partialLine.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[index..<count]))
                return
            }
            if self.partialLine.isEmpty {
                // The common case: the whole line is in this buffer, so parse it in place.
                try self.processLine(UnsafeRawBufferPointer(rebasing: raw[index..<end]), body)
            } else {
                guard self.partialLine.count + (end - index) <= self.maxEventSize else {
                    throw self.fail()
                }
                // Move the line out of `self` so `processLine` may mutate `self` while reading it.
                var line: [UInt8] = []
                swap(&line, &self.partialLine)
                line.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[index..<end]))
                // `Array.withUnsafeBytes` rethrows untyped, so carry the typed error out by hand.
                let processed = line.withUnsafeBytes { line -> Result<Void, SSEParser.Error> in
                    do throws(SSEParser.Error) {
                        return .success(try self.processLine(line, body))
                    } catch {
                        return .failure(error)
                    }
                }
                try processed.get()
                Self.clear(&line)
                self.partialLine = line
            }
            self.skipLF = raw[end] == asciiCR
            index = end &+ 1
        }
    }

    /// A new connection starts: discard any incomplete block and partial line, expect a BOM again,
    /// keep `lastEventID` (a reconnecting EventSource keeps its last event ID). An `id` seen in the
    /// discarded block is dropped with it; see the type's documentation.
    public mutating func startNewStream() {
        self.lastEventIDBuffer = self.lastEventID
        self.resetBlock()
        self.partialLine = []
        self.skipLF = false
        self.bomBytesSeen = 0
        self.failed = false
    }

    /// After `Error.eventTooLarge`: like `startNewStream`, but if the discarded block carried an
    /// `id`, that id becomes the last event ID, so that a reconnect resumes after the oversized
    /// event instead of asking the origin for it again (and again).
    public mutating func startNewStreamSkippingCurrentEvent() {
        if let id = self.blockID {
            self.lastEventID = id
        }
        self.startNewStream()
    }

    // MARK: - Private

    /// Consumes the bytes of a leading UTF-8 BOM (EF BB BF), which may arrive split, and returns
    /// the index of the first byte after it. If the stream starts like a BOM but isn't one, the
    /// bytes that matched are part of the first line.
    private mutating func skipBOM(_ raw: UnsafeRawBufferPointer) -> Int {
        let bom: (UInt8, UInt8, UInt8) = (0xEF, 0xBB, 0xBF)
        var index = 0
        while let seen = self.bomBytesSeen, index < raw.count {
            let expected = seen == 0 ? bom.0 : seen == 1 ? bom.1 : bom.2
            guard raw[index] == expected else {
                self.bomBytesSeen = nil
                if seen >= 1 { self.partialLine.append(bom.0) }
                if seen >= 2 { self.partialLine.append(bom.1) }
                break
            }
            index &+= 1
            self.bomBytesSeen = seen == 2 ? nil : seen + 1
        }
        return index
    }

    /// Interprets one line (without its terminator).
    private mutating func processLine(_ line: UnsafeRawBufferPointer, _ body: (Output) -> Void) throws(SSEParser.Error) {
        guard let first = line.first else {
            self.dispatch(body)
            return
        }
        guard line.count <= self.maxEventSize else {
            throw self.fail()
        }
        if first == asciiColon {
            return  // A comment.
        }
        self.blockSize += line.count + 1
        guard self.blockSize <= self.maxEventSize else {
            throw self.fail()
        }

        let name: UnsafeRawBufferPointer
        var value: UnsafeRawBufferPointer
        if let colon = line.firstIndex(of: asciiColon) {
            name = UnsafeRawBufferPointer(rebasing: line[..<colon])
            value = UnsafeRawBufferPointer(rebasing: line[(colon + 1)...])
            if value.first == asciiSpace {
                value = UnsafeRawBufferPointer(rebasing: value.dropFirst())
            }
        } else {
            name = line
            value = UnsafeRawBufferPointer(start: nil, count: 0)
        }

        if name.equals("data") {
            self.dataBuffer.append(contentsOf: value)
            self.dataBuffer.append(asciiLF)
        } else if name.equals("id") {
            // An id with NUL could not be sent back in a Last-Event-ID header; the spec ignores it.
            // (U+0000 in the decoded text is exactly a 0x00 byte: replacement never produces it.)
            if !value.contains(asciiNUL) {
                let id = String(decoding: value, as: UTF8.self)
                self.lastEventIDBuffer = id
                self.blockID = id
            }
        } else if name.equals("event") {
            self.eventType = String(decoding: value, as: UTF8.self)
        } else if name.equals("retry") {
            if let milliseconds = Self.parseRetry(value) {
                body(.retry(milliseconds))
            }
        }
        // Any other field is ignored.
    }

    /// The spec's "dispatch the event" step, at a blank line.
    private mutating func dispatch(_ body: (Output) -> Void) {
        self.lastEventID = self.lastEventIDBuffer
        // A block with data or an id is news; one with neither (only `event`, `retry`, unknown
        // fields or comments) is not.
        if !self.dataBuffer.isEmpty || self.blockID != nil {
            var data: String? = nil
            if !self.dataBuffer.isEmpty {
                data = self.dataBuffer.withUnsafeBytes { bytes in
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes.dropLast()), as: UTF8.self)
                }
            }
            let event = SSEEvent(id: self.blockID, type: self.eventType, data: data, lastEventID: self.lastEventID)
            body(.event(event))
        }
        self.resetBlock()
    }

    private mutating func resetBlock() {
        self.blockID = nil
        self.eventType = nil
        Self.clear(&self.dataBuffer)
        self.blockSize = 0
    }

    private mutating func fail() -> SSEParser.Error {
        self.failed = true
        return .eventTooLarge(limit: self.maxEventSize)
    }

    /// A `retry` value: ASCII digits only, at least one. Too many digits clamp to `Int.max`.
    private static func parseRetry(_ value: UnsafeRawBufferPointer) -> Int? {
        guard !value.isEmpty else { return nil }
        var result = 0
        var overflowed = false
        for byte in value {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            if !overflowed {
                let (times10, overflow1) = result.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(Int(digit))
                overflowed = overflow1 || overflow2
                result = sum
            }
        }
        return overflowed ? .max : result
    }

    /// Empties a buffer, keeping its storage only when small: a stream that once carried a huge
    /// event shouldn't hold that much memory for the rest of its life.
    private static func clear(_ buffer: inout [UInt8]) {
        buffer.removeAll(keepingCapacity: buffer.capacity <= 4096)
    }
}
