import NIOCore

/// Writes event stream blocks in one canonical form: `field: value` lines (`field:` when the
/// value is empty, which parses the same and has no trailing space), LF line endings.
///
/// Everything written parses back, with `SSEParser`, to what was written; the preconditions rule
/// out the values the format cannot carry, since writing them would corrupt the stream's framing.
public enum SSESerializer {
    /// Appends the block for `event` in a canonical form that an EventSource parses back to the same
    /// event: `id: X` when event.id != nil (empty id as `id` with empty value), `event: T` when type != nil,
    /// one `data: line` per line of data when data != nil, then a blank line. Uses LF.
    ///
    /// `lastEventID` is not written: it is the receiver's state, which the `id` field updates.
    /// Lines of `data` may end in LF, CRLF or CR (as a parser would split them); they are all
    /// written as separate `data` lines, so CRs come back as LFs.
    /// - Precondition: `id` contains no CR, LF or NUL (a parser would ignore an id with NUL);
    ///   `type` contains no CR or LF.
    public static func write(_ event: SSEEvent, into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: Self.estimatedSize(of: event))
        if let id = event.id {
            precondition(!id.utf8.contains(where: { $0 == asciiCR || $0 == asciiLF || $0 == asciiNUL }),
                         "an SSE id cannot contain CR, LF or NUL")
            Self.writeField("id", id, into: &buffer)
        }
        if let type = event.type {
            precondition(!type.utf8.contains(where: { $0 == asciiCR || $0 == asciiLF }),
                         "an SSE event type cannot contain CR or LF")
            Self.writeField("event", type, into: &buffer)
        }
        if var data = event.data {
            // `withUTF8` reads a native string in place; it only copies bridged or foreign strings.
            data.withUTF8 { utf8 in
                let bytes = UnsafeRawBufferPointer(utf8)
                var lineStart = 0
                while true {
                    let lineEnd = bytes.firstLineBreak(from: lineStart) ?? bytes.count
                    Self.writeField("data", UnsafeRawBufferPointer(rebasing: bytes[lineStart..<lineEnd]), into: &buffer)
                    guard lineEnd < bytes.count else { break }
                    lineStart = lineEnd + 1
                    if bytes[lineEnd] == asciiCR, lineStart < bytes.count, bytes[lineStart] == asciiLF {
                        lineStart += 1
                    }
                }
            }
        }
        buffer.writeInteger(asciiLF)
    }

    /// The block for `event` in a new buffer; see `write(_:into:)`.
    public static func encode(_ event: SSEEvent, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: Self.estimatedSize(of: event))
        Self.write(event, into: &buffer)
        return buffer
    }

    /// `:` + text + LF + LF (text must not contain CR/LF; precondition).
    ///
    /// The blank line makes the comment a block of its own, so it ends any block a parser might
    /// think is open and counts as traffic on connections that time out idle streams.
    public static func writeComment(_ text: String, into buffer: inout ByteBuffer) {
        precondition(!text.utf8.contains(where: { $0 == asciiCR || $0 == asciiLF }),
                     "an SSE comment cannot contain CR or LF")
        buffer.writeInteger(asciiColon)
        buffer.writeString(text)
        buffer.writeInteger(asciiLF)
        buffer.writeInteger(asciiLF)
    }

    /// `retry: N` LF LF
    /// - Precondition: `milliseconds >= 0` (a parser ignores anything but digits).
    public static func writeRetry(_ milliseconds: Int, into buffer: inout ByteBuffer) {
        precondition(milliseconds >= 0, "an SSE retry must not be negative")
        buffer.writeStaticString("retry: ")
        buffer.writeString(String(milliseconds))
        buffer.writeInteger(asciiLF)
        buffer.writeInteger(asciiLF)
    }

    // MARK: - Private

    private static func writeField(_ name: StaticString, _ value: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(name)
        if value.isEmpty {
            buffer.writeInteger(asciiColon)
        } else {
            buffer.writeStaticString(": ")
            buffer.writeString(value)
        }
        buffer.writeInteger(asciiLF)
    }

    private static func writeField(_ name: StaticString, _ value: UnsafeRawBufferPointer, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(name)
        if value.isEmpty {
            buffer.writeInteger(asciiColon)
        } else {
            buffer.writeStaticString(": ")
            buffer.writeBytes(value)
        }
        buffer.writeInteger(asciiLF)
    }

    /// Exact unless `data` has more than one line; then a little short, and the buffer grows.
    private static func estimatedSize(of event: SSEEvent) -> Int {
        var size = 1
        if let id = event.id { size += 5 + id.utf8.count }
        if let type = event.type { size += 8 + type.utf8.count }
        if let data = event.data { size += 7 + data.utf8.count }
        return size
    }
}
