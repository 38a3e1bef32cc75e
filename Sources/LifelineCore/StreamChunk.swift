import NIOCore

/// Bytes that go to every subscriber of a stream alike: one batch of encoded events, a heartbeat,
/// or a stream's opening comment. Built once, shared by reference with every subscriber.
public struct StreamChunk: Sendable {
    /// The event-stream bytes.
    public let bytes: ByteBuffer
    /// `bytes` framed as one HTTP/1.1 chunk (`size CRLF bytes CRLF`), built once so that each
    /// HTTP/1.1 subscriber writes the same buffer instead of framing it again.
    public let chunked: ByteBuffer
    /// How many events the bytes hold (for access logs and metrics).
    public let eventCount: Int

    public init(bytes: ByteBuffer, eventCount: Int = 1, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.bytes = bytes
        self.eventCount = eventCount
        var framed = allocator.buffer(capacity: bytes.readableBytes + 12)
        framed.writeString(String(bytes.readableBytes, radix: 16))
        framed.writeStaticString("\r\n")
        framed.writeImmutableBuffer(bytes)
        framed.writeStaticString("\r\n")
        self.chunked = framed
    }

    /// Joins the blocks of one batch into one chunk, so that subscribers make one write per batch.
    public init(joining buffers: [ByteBuffer], eventCount: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        if buffers.count == 1 {
            self.init(bytes: buffers[0], eventCount: eventCount, allocator: allocator)
            return
        }
        var joined = allocator.buffer(capacity: buffers.reduce(0) { $0 + $1.readableBytes })
        for buffer in buffers {
            joined.writeImmutableBuffer(buffer)
        }
        self.init(bytes: joined, eventCount: eventCount, allocator: allocator)
    }

    public var count: Int { self.bytes.readableBytes }
}
