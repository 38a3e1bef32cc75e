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
/// bytes; at the end of the loop's current task they are submitted together through the loop's
/// `SendRing`: one system call for hundreds of clients instead of one `write()` each. Confined to
/// its event loop.
///
/// Order: a client has at most one entry (later bytes are appended to it), and before the front
/// end writes anything else to a client with an entry it takes the entry back (`withdraw`) and
/// writes it first, through the channel. Safety: the batch is submitted only as a task of its
/// own, never from inside another call. SwiftNIO closes a socket and tells the connection's
/// handlers (channelInactive) within one call, so at submission every target whose socket has
/// closed knows it, and no send can reach a socket that reused a closed one's number.
final class SendBatch {
    private struct Entry {
        let target: BatchedSendTarget
        var bytes: ByteBuffer
    }

    private let ring: SendRing
    private let eventLoop: EventLoop
    private var entries: [Entry] = []
    /// Per queued send: its entry's index, then its result.
    private var queued: [Int] = []
    private var results: [Int32] = []
    private var submitScheduled = false
    /// Sends submitted and completed whole; for tests and the docs' figures.
    private(set) var sent = 0
    private(set) var fellShort = 0
    /// Entries taken back for their channel before submission.
    private(set) var withdrawn = 0

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

    /// Takes back what waits for `target` (nil: nothing), for the front end to write through the
    /// channel before its next write. The entry stays, empty, and is skipped at submission.
    func withdraw(_ target: BatchedSendTarget) -> ByteBuffer? {
        let slot = Int(target.batchSlot)
        guard slot >= 0, slot < self.entries.count, self.entries[slot].target === target else { return nil }
        target.batchSlot = -1
        self.withdrawn += 1
        return self.entries[slot].bytes
    }

    /// Sends everything in the batch and hands what fell short to the targets' channels. Runs
    /// only as its own task (see the type's comment).
    private func submit() {
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
            self.queued.removeAll(keepingCapacity: true)
            for index in start..<end {
                let target = entries[index].target
                // Withdrawn (the slot names another entry, or none), or the client is gone.
                guard Int(target.batchSlot) == index else { continue }
                target.batchSlot = -1
                guard let descriptor = target.batchDescriptor else { continue }
                // The pointer outlives the closure: `entries` holds the buffer, unchanged, until
                // the sends have completed (they complete within `submitAndWait`).
                // One not taken (a full queue) keeps the result Int32.min: never sent, so it goes
                // through its channel below, after the submission, when no user code can close a
                // socket between queueing and sending.
                let tag = UInt64(self.queued.count)
                _ = entries[index].bytes.withUnsafeReadableBytes { bytes in
                    self.ring.queueSend(descriptor: descriptor, bytes: bytes, tag: tag)
                }
                self.queued.append(index)
            }
            self.results.removeAll(keepingCapacity: true)
            self.results.append(contentsOf: repeatElement(Int32.min, count: self.queued.count))
            if !self.queued.isEmpty {
                self.ring.submitAndWait { completion in
                    let offset = Int(completion.tag)
                    if offset < self.results.count { self.results[offset] = completion.result }
                }
            }
            for (offset, index) in self.queued.enumerated() {
                let bytes = entries[index].bytes
                let result = self.results[offset]
                let length = bytes.readableBytes
                if result == Int32(length) {
                    self.sent += 1
                    continue
                }
                // Partly sent, a full buffer, an error, or never sent (a ring that failed): the
                // channel writes the rest, or finds the error and closes as it would have.
                self.fellShort += 1
                let done = result > 0 ? min(Int(result), length) : 0
                entries[index].target.batchFellShort(
                    bytes.getSlice(at: bytes.readerIndex + done, length: length - done) ?? ByteBuffer())
            }
            start = end
        }
    }
}
