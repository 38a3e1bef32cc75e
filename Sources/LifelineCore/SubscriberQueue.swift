import NIOCore

/// A subscriber's bytes that its connection has not taken yet, bounded by `--client-buffer`.
///
/// Entries are shared buffers (no copies). Replay counts toward the bound only once the client is
/// live: a reconnecting client may owe more history than the bound, and that history is held by
/// the replay buffer anyway.
///
/// Non-copyable: its entries and their count live in a box made on the first enqueue (most
/// subscribers keep up and never need one), which a copy would share. Without the box it is two
/// words, in every streaming client's writer.
public struct SubscriberQueue: ~Copyable {
    private final class Entries {
        var buffers = CircularBuffer<(bytes: ByteBuffer, counted: Bool)>(initialCapacity: 4)
        var countedBytes = 0
    }

    private var entries: Entries?
    public let limit: Int

    /// Bytes of live data waiting here.
    public var countedBytes: Int { self.entries?.countedBytes ?? 0 }

    public init(limit: Int) {
        self.limit = limit
    }

    public var isEmpty: Bool { self.entries?.buffers.isEmpty ?? true }

    public enum EnqueueResult: Equatable {
        case queued
        /// The client is too slow: more than `limit` bytes are waiting.
        case overflow
    }

    public mutating func enqueue(_ bytes: ByteBuffer, counted: Bool = true) -> EnqueueResult {
        let entries = self.entries ?? Entries()
        self.entries = entries
        entries.buffers.append((bytes, counted))
        if counted {
            entries.countedBytes += bytes.readableBytes
            if entries.countedBytes > self.limit {
                return .overflow
            }
        }
        return .queued
    }

    public mutating func dequeue() -> ByteBuffer? {
        guard let entries = self.entries, let entry = entries.buffers.popFirst() else { return nil }
        if entry.counted {
            entries.countedBytes -= entry.bytes.readableBytes
        }
        return entry.bytes
    }

    public mutating func removeAll() {
        self.entries = nil
    }
}
