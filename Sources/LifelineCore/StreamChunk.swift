import NIOCore

/// Bytes that go to every subscriber of a stream alike: one batch of encoded events, a heartbeat,
/// or a stream's opening comment. Built once, shared by reference with every subscriber; each
/// front end frames them in its protocol (HTTP/1.1 once per loop, see `HTTP1ChunkFramer`;
/// HTTP/2 through nghttp2), so the core builds no framing no subscriber needs.
public struct StreamChunk: Sendable {
    /// The event-stream bytes.
    public let bytes: ByteBuffer
    /// How many events the bytes hold (for access logs and metrics).
    public let eventCount: Int

    public init(bytes: ByteBuffer, eventCount: Int = 1) {
        self.bytes = bytes
        self.eventCount = eventCount
    }

    /// Joins the blocks of one batch into one chunk, so that subscribers make one write per batch.
    public init(joining buffers: [ByteBuffer], eventCount: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        if buffers.count == 1 {
            self.init(bytes: buffers[0], eventCount: eventCount)
            return
        }
        var joined = allocator.buffer(capacity: buffers.reduce(0) { $0 + $1.readableBytes })
        for buffer in buffers {
            joined.writeImmutableBuffer(buffer)
        }
        self.init(bytes: joined, eventCount: eventCount)
    }

    public var count: Int { self.bytes.readableBytes }
}
