import NIOCore

/// HTTP/1.1 chunk framing (`size CRLF bytes CRLF`) for the bytes that every subscriber on a loop
/// is sent alike. A batch reaches a loop's subscribers one after the other, so the framing of the
/// last buffer framed is kept: the first HTTP/1.1 subscriber frames a batch, the others write the
/// same framed buffer. HTTP/2 subscribers never pay for it. Confined to its loop.
final class HTTP1ChunkFramer {
    private var lastSource: ByteBuffer?
    private var lastFramed = ByteBuffer()
    /// Its own: asking each subscriber's channel for one cost a pipeline lookup per delivery.
    private let allocator = ByteBufferAllocator()

    /// `bytes` framed as one chunk; the same buffer for the same bytes (same storage) as last time.
    func framed(_ bytes: ByteBuffer) -> ByteBuffer {
        if let source = self.lastSource, Self.sameStorage(source, bytes) {
            return self.lastFramed
        }
        let framed = Self.frame(bytes, allocator: self.allocator)
        // Keeping the source keeps its storage alive, so no other buffer can take its address.
        self.lastSource = bytes
        self.lastFramed = framed
        return framed
    }

    /// Frames `bytes` as one chunk. Empty bytes frame to nothing: a zero-size chunk would end
    /// the response.
    static func frame(_ bytes: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard bytes.readableBytes > 0 else { return allocator.buffer(capacity: 0) }
        var framed = allocator.buffer(capacity: bytes.readableBytes + 12)
        framed.writeString(String(bytes.readableBytes, radix: 16))
        framed.writeStaticString("\r\n")
        framed.writeImmutableBuffer(bytes)
        framed.writeStaticString("\r\n")
        return framed
    }

    private static func sameStorage(_ a: ByteBuffer, _ b: ByteBuffer) -> Bool {
        guard a.readableBytes == b.readableBytes else { return false }
        return a.withUnsafeReadableBytes { a in
            b.withUnsafeReadableBytes { b in a.baseAddress == b.baseAddress }
        }
    }
}
