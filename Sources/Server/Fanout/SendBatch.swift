import NIOCore
import SendRing

#if canImport(Glibc)
import Glibc
#endif

/// A client connection whose event writes may go out in its loop's `SendBatch`.
protocol BatchedSendTarget: AnyObject {
    /// The connection's socket while the connection is open (nil once it closed: a descriptor
    /// number is reused by the next accepted connection at once).
    var batchDescriptor: CInt? { get }
    /// Where this target's bytes wait in the batch (an index; negative: not in it). The batch sets
    /// it when it takes the target's first bytes and sets -1 when it has sent them.
    var batchSlot: Int32 { get set }
    /// What the socket did not take (a full buffer, an error): written through the channel, which
    /// then owns the connection's ordering until it has drained.
    func batchFellShort(_ remainder: ByteBuffer)
}

/// One event loop's batch of socket sends (`--io-uring`). A fan-out adds each plaintext client's
/// bytes; at the end of the loop's current task (or earlier, when a client's next write must not
/// overtake them) they are submitted together through the loop's `SendRing`: one system call for
/// hundreds of clients instead of one `write()` each. Confined to its event loop.
///
/// Order: a client has at most one entry (later bytes are appended to it), and the front end
/// submits the batch before it writes anything else to a client with an entry. Safety: every
/// descriptor is checked against its connection just before submission, on the loop that closes
/// it, so no send can reach a socket that replaced a closed one.
final class SendBatch {
    private struct Entry {
        let target: BatchedSendTarget
        var bytes: ByteBuffer
    }

    private let ring: SendRing
    private let eventLoop: EventLoop
    private var entries: [Entry] = []
    private var results: [Int32] = []
    private var submitScheduled = false
    /// Sends submitted and completed whole; for tests and the docs' figures.
    private(set) var sent = 0
    private(set) var fellShort = 0

    /// nil when the kernel has no io_uring for this process.
    init?(eventLoop: EventLoop, capacity: Int = 1024) {
        guard let ring = SendRing(capacity: capacity) else { return nil }
        self.ring = ring
        self.eventLoop = eventLoop
    }

    /// False once the ring failed; the front end then writes through its channels.
    var isUsable: Bool { self.ring.isUsable }

    /// Bytes for `target`, to go out with the batch (after whatever the batch already holds for it).
    func add(_ bytes: ByteBuffer, for target: BatchedSendTarget) {
        let slot = Int(target.batchSlot)
        if slot >= 0, slot < self.entries.count, self.entries[slot].target === target {
            self.entries[slot].bytes.writeImmutableBuffer(bytes)
            return
        }
        target.batchSlot = Int32(truncatingIfNeeded: self.entries.count)
        self.entries.append(Entry(target: target, bytes: bytes))
        if !self.submitScheduled {
            self.submitScheduled = true
            let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
            self.eventLoop.execute { bound.value.submit() }
        }
    }

    /// Sends everything in the batch now and hands what fell short to the targets' channels.
    func submit() {
        self.submitScheduled = false
        guard !self.entries.isEmpty else { return }
        // Taken out first: a target's channel, given what fell short, may add to the next batch.
        var entries = self.entries
        self.entries = []
        defer {
            entries.removeAll(keepingCapacity: true)
            if self.entries.isEmpty { self.entries = entries }
        }
        var start = 0
        while start < entries.count {
            let end = min(entries.count, start + self.ring.capacity)
            self.results.removeAll(keepingCapacity: true)
            self.results.append(contentsOf: repeatElement(Int32.min, count: end - start))
            var gone = 0
            for index in start..<end {
                guard let descriptor = entries[index].target.batchDescriptor else {
                    self.results[index - start] = -EBADF
                    gone += 1
                    continue
                }
                // The pointer outlives the closure: `entries` holds the buffer, unchanged, until
                // the sends have completed (they complete within `submitAndWait`).
                let queued = entries[index].bytes.withUnsafeReadableBytes { bytes in
                    self.ring.queueSend(descriptor: descriptor, bytes: bytes, tag: UInt64(index - start))
                }
                if !queued { self.results[index - start] = -EAGAIN }
            }
            if end - start > gone {
                self.ring.submitAndWait { completion in
                    let offset = Int(completion.tag)
                    if offset < self.results.count { self.results[offset] = completion.result }
                }
            }
            for index in start..<end {
                let entry = entries[index]
                entry.target.batchSlot = -1
                let result = self.results[index - start]
                let length = entry.bytes.readableBytes
                if result == Int32(length) {
                    self.sent += 1
                    continue
                }
                if result == -EBADF { continue }  // the client is gone
                // Partly sent, a full buffer, an error, or never sent (a ring that failed): the
                // channel writes the rest, or finds the error and closes as it would have.
                self.fellShort += 1
                let done = result > 0 ? min(Int(result), length) : 0
                entry.target.batchFellShort(entry.bytes.getSlice(at: entry.bytes.readerIndex + done, length: length - done) ?? ByteBuffer())
            }
            start = end
        }
    }
}
