import NIOCore

/// Sizes the read buffer of a client connection. A connection keeps its last read buffer for its
/// next read, and a streaming client sends a request head and then nothing, so the buffer starts
/// small (256 bytes, where NIO's default starts at 2 KiB) and grows only for connections that
/// fill it: doubled after a full read, halved after two reads that used at most half of it,
/// between 64 bytes and 64 KiB (NIO's adaptive rule).
///
/// Its fields fit in an existential's inline storage, so, unlike NIO's adaptive allocator, each
/// connection does not box a copy of it on the heap.
struct ClientReadSizing: RecvByteBufferAllocator {
    static let minimum: UInt32 = 64
    static let maximum: UInt32 = 64 << 10

    private(set) var nextSize: UInt32
    private var shrinkNext = false

    init(initial: UInt32 = 256) {
        self.nextSize = min(max(initial, Self.minimum), Self.maximum)
    }

    func buffer(allocator: ByteBufferAllocator) -> ByteBuffer {
        allocator.buffer(capacity: Int(self.nextSize))
    }

    func nextBufferSize() -> Int? {
        Int(self.nextSize)
    }

    /// Returns true when the next read may use a larger buffer.
    mutating func record(actualReadBytes: Int) -> Bool {
        let half = self.nextSize / 2
        if actualReadBytes <= Int(half) && half >= Self.minimum {
            if self.shrinkNext {
                self.nextSize = half
                self.shrinkNext = false
            } else {
                self.shrinkNext = true
            }
            return false
        }
        self.shrinkNext = false
        if actualReadBytes >= Int(self.nextSize) && self.nextSize < Self.maximum {
            self.nextSize *= 2
            return true
        }
        return false
    }
}
