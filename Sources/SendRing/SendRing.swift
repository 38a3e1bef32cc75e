import CLiburing

#if canImport(Glibc)
import Glibc
#endif

/// A Linux io_uring used for one thing: many non-blocking socket sends submitted with one system
/// call. A fan-out writes one event to every client of a loop; with a `write()` each, the
/// system-call entries are a large part of the cost (Benchmarks/floor.c --mode=uring measures the
/// difference). Not thread-safe: one ring per event loop, used from that loop only.
///
/// Sends complete inline: they are `MSG_DONTWAIT`, so a full socket buffer completes with
/// `EAGAIN` (and a partial count before it) instead of waiting in the kernel, and every send has
/// completed when `submitAndWait` returns. The caller keeps the bytes alive until then.
public final class SendRing {
    public struct Completion: Sendable {
        /// What the send was queued with.
        public var tag: UInt64
        /// Bytes sent (possibly fewer than asked), or a negative errno (`-EAGAIN`: nothing sent).
        public var result: Int32
    }

    private let ring: OpaquePointer
    /// Submission slots: at most this many sends per `submitAndWait`.
    public let capacity: Int
    private var queued = 0

    /// nil when the kernel offers no io_uring (older than 5.6, or a seccomp profile that forbids
    /// it, as container runtimes' default profiles do); `errno` says why.
    public init?(capacity: Int = 4096) {
        guard capacity > 0, let ring = lifeline_uring_new(UInt32(capacity)) else { return nil }
        self.ring = ring
        self.capacity = capacity
    }

    deinit {
        lifeline_uring_free(self.ring)
    }

    /// Whether this process can use rings for sends: one is made and sends a byte over a socket
    /// pair (a kernel without `IORING_OP_SEND`, before 5.6, or a seccomp profile that forbids
    /// io_uring, as container runtimes' defaults do, fails here). Probed once.
    public static let isAvailable: Bool = {
        guard let ring = SendRing(capacity: 2) else { return false }
        var fds: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { return false }
        defer {
            close(fds[0])
            close(fds[1])
        }
        var result: Int32 = 0
        let byte: [UInt8] = [0x2A]
        let queued = byte.withUnsafeBytes { ring.queueSend(descriptor: fds[0], bytes: $0, tag: 1) }
        guard queued, ring.submitAndWait({ result = $0.result }) else { return false }
        return result == 1
    }()

    /// Sends queued and not yet submitted.
    public var pending: Int { self.queued }

    /// False once a submission went wrong: sends it did not take stay in the kernel's queue and
    /// would go out with a later submission, to descriptors that may by then be other sockets, so
    /// a ring is never submitted again after that.
    public private(set) var isUsable = true

    /// Queues a send of `bytes` to `descriptor`; false when `capacity` sends are already queued or
    /// the ring is no longer usable.
    public func queueSend(descriptor: CInt, bytes: UnsafeRawBufferPointer, tag: UInt64) -> Bool {
        guard self.isUsable, self.queued < self.capacity,
            lifeline_uring_prep_send(self.ring, descriptor, bytes.baseAddress, bytes.count, tag) == 0
        else { return false }
        self.queued += 1
        return true
    }

    /// Submits every queued send, waits for all of them and hands each completion to `body`.
    /// Returns false when not every send was submitted and completed: those without a completion
    /// were not made, and the ring is no longer usable.
    @discardableResult
    public func submitAndWait(_ body: (Completion) -> Void) -> Bool {
        let count = self.queued
        guard count > 0 else { return self.isUsable }
        self.queued = 0
        let submitted = lifeline_uring_submit_and_wait(self.ring, UInt32(count))
        var tag: UInt64 = 0
        var result: Int32 = 0
        var seen = 0
        while lifeline_uring_take_completion(self.ring, &tag, &result) == 1 {
            body(Completion(tag: tag, result: result))
            seen += 1
        }
        if submitted != Int32(count) || seen != count {
            self.isUsable = false
        }
        return self.isUsable
    }
}
