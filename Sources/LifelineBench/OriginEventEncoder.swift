import NIOCore

/// What the benchmark origin sends, fixed at start.
struct OriginSchedule: Sendable {
    /// Nanoseconds between two events of a stream; 0 when the origin sends no events.
    var periodNanoseconds: Int64
    var streams: Int
    /// The length the data field is padded to.
    var payload: Int
    /// How many events back a Last-Event-ID can resume from.
    var replay: Int
    var retryMilliseconds: Int64?
    var dropEveryNanoseconds: Int64

    /// Event ids count periods since the Unix epoch, so they are the same in every process and in
    /// every incarnation of the origin: a restarted origin continues the sequence where the old one
    /// stopped (and can replay what was due while it was down), as a durable origin would.
    func eventID(atWallNanoseconds wall: Int64) -> Int64 {
        self.periodNanoseconds > 0 ? wall / self.periodNanoseconds : 0
    }

    /// When event `id` was due, in wall-clock nanoseconds.
    func dueTime(of id: Int64) -> Int64 {
        id &* self.periodNanoseconds
    }
}

/// Encodes the origin's bytes. Every event goes out as one HTTP/1.1 chunk that is framed here, once,
/// so the same buffer is written unchanged to every connection of its stream (no per-connection
/// framing, no encoder in the pipeline).
///
/// An event: `id: N` LF `data: STAMP K[ xxx…]` LF LF, where STAMP is the send time in nanoseconds
/// since the Unix epoch (CLOCK_REALTIME), K the stream number and the x's pad the data field to
/// `--payload` bytes.
struct OriginEventEncoder: Sendable {
    let payload: Int
    private let padding: [UInt8]

    init(payload: Int) {
        self.payload = payload
        self.padding = [UInt8](repeating: UInt8(ascii: "x"), count: max(0, payload))
    }

    /// The chunk-framed event `id` of `stream`, stamped `stamp`.
    func encode(id: Int64, stream: Int, stamp: Int64, allocator: ByteBufferAllocator) -> ByteBuffer {
        let stampDigits = decimalDigitCount(UInt64(max(0, stamp)))
        let streamDigits = decimalDigitCount(UInt64(stream))
        let minimumData = stampDigits + 1 + streamDigits
        // " " plus the x's, when the payload asks for more than the stamp and stream number take.
        let padLength = self.payload > minimumData + 1 ? self.payload - minimumData : 0
        let dataLength = minimumData + padLength
        let idDigits = decimalDigitCount(UInt64(max(0, id)))
        // "id: " N LF "data: " DATA LF LF
        let bodyLength = 4 + idDigits + 1 + 6 + dataLength + 2
        let sizeDigits = hexDigitCount(bodyLength)
        var buffer = allocator.buffer(capacity: sizeDigits + 2 + bodyLength + 2)
        writeHex(bodyLength, digits: sizeDigits, into: &buffer)
        buffer.writeStaticString("\r\nid: ")
        writeDecimal(UInt64(max(0, id)), digits: idDigits, into: &buffer)
        buffer.writeStaticString("\ndata: ")
        writeDecimal(UInt64(max(0, stamp)), digits: stampDigits, into: &buffer)
        buffer.writeInteger(UInt8(ascii: " "))
        writeDecimal(UInt64(stream), digits: streamDigits, into: &buffer)
        if padLength > 0 {
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeBytes(self.padding[0..<(padLength - 1)])
        }
        buffer.writeStaticString("\n\n\r\n")
        return buffer
    }

    /// The response head of a stream, with the `retry:` chunk when one is configured.
    static func streamHead(retryMilliseconds: Int64?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 160)
        buffer.writeStaticString(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        if let retry = retryMilliseconds {
            let body = "retry: \(retry)\n\n"
            buffer.writeString(String(body.utf8.count, radix: 16))
            buffer.writeStaticString("\r\n")
            buffer.writeString(body)
            buffer.writeStaticString("\r\n")
        }
        return buffer
    }
}

@inline(__always)
func decimalDigitCount(_ value: UInt64) -> Int {
    var count = 1
    var rest = value
    while rest >= 10 {
        rest /= 10
        count &+= 1
    }
    return count
}

@inline(__always)
private func hexDigitCount(_ value: Int) -> Int {
    var count = 1
    var rest = value >> 4
    while rest > 0 {
        rest >>= 4
        count &+= 1
    }
    return count
}

/// Writes `value` in decimal without going through a String (that would allocate per event).
@inline(__always)
func writeDecimal(_ value: UInt64, digits: Int, into buffer: inout ByteBuffer) {
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { raw in
        var rest = value
        var index = digits
        while index > 0 {
            index &-= 1
            raw[index] = UInt8(truncatingIfNeeded: rest % 10) &+ UInt8(ascii: "0")
            rest /= 10
        }
        return digits
    }
}

@inline(__always)
private func writeHex(_ value: Int, digits: Int, into buffer: inout ByteBuffer) {
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { raw in
        var rest = value
        var index = digits
        while index > 0 {
            index &-= 1
            let nibble = UInt8(truncatingIfNeeded: rest & 0xF)
            raw[index] = nibble < 10 ? nibble &+ UInt8(ascii: "0") : nibble &- 10 &+ UInt8(ascii: "a")
            rest >>= 4
        }
        return digits
    }
}
