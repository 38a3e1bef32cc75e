import NIOCore

/// A subscriber's bytes that its connection has not taken yet, bounded by `--client-buffer`.
///
/// Entries are shared buffers (no copies). Replay counts toward the bound only once the client is
/// live: a reconnecting client may owe more history than the bound, and that history is held by
/// the replay buffer anyway.
public struct SubscriberQueue {
    private var entries: CircularBuffer<(bytes: ByteBuffer, counted: Bool)> = CircularBuffer(initialCapacity: 4)
    /// Bytes of live data waiting here.
    public private(set) var countedBytes = 0
    public let limit: Int

    public init(limit: Int) {
        self.limit = limit
    }

    public var isEmpty: Bool { self.entries.isEmpty }

    public enum EnqueueResult: Equatable {
        case queued
        /// The client is too slow: more than `limit` bytes are waiting.
        case overflow
    }

    public mutating func enqueue(_ bytes: ByteBuffer, counted: Bool = true) -> EnqueueResult {
        self.entries.append((bytes, counted))
        if counted {
            self.countedBytes += bytes.readableBytes
            if self.countedBytes > self.limit {
                return .overflow
            }
        }
        return .queued
    }

    public mutating func dequeue() -> ByteBuffer? {
        guard let entry = self.entries.popFirst() else { return nil }
        if entry.counted {
            self.countedBytes -= entry.bytes.readableBytes
        }
        return entry.bytes
    }

    public mutating func removeAll() {
        self.entries.removeAll()
        self.countedBytes = 0
    }
}
