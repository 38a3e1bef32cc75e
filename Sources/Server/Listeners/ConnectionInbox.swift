import CLiburing
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The way from `PlainAcceptor`'s thread to one event loop: a local stream socket pair. The
/// thread sends the descriptors it accepted; the loop reads them as I/O, like its clients'
/// bytes, with `ConnectionInboxReader`, a bounded number per pass.
///
/// Handing a connection over as a task instead (`ClientBootstrap.withConnectedSocket` from
/// another thread) lets a reconnect storm starve the loop: SwiftNIO runs queued tasks until none
/// is left before it polls its sockets again, so while thousands of connections come in, none
/// of those already started has its request read (issue 18: a storm's 10,000 requests were read
/// only after the last connection had been started).
final class ConnectionInbox: Sendable {
    /// The accepting thread's end: non-blocking, sent to with `MSG_NOSIGNAL` (a loop gone is
    /// `EPIPE`, not a signal).
    let sendDescriptor: CInt
    /// Set by `finish`, which closes `sendDescriptor` once.
    private let finished = NIOLockedValueBox(false)

    /// At most this many descriptors are read per pass of the loop (4 bytes each).
    static let readSize = 256

    private init(sendDescriptor: CInt) {
        self.sendDescriptor = sendDescriptor
    }

    /// Opens the pair and registers its reading end on `eventLoop`; `start` runs there for each
    /// descriptor received.
    static func open(on eventLoop: EventLoop, start: @escaping @Sendable (CInt) -> Void) -> EventLoopFuture<ConnectionInbox> {
        var ends: [CInt] = [-1, -1]
        guard lifeline_local_stream_pair(&ends) == 0 else {
            return eventLoop.makeFailedFuture(ListeningSocket.Failure(description: "socketpair: \(String(cString: strerror(errno)))"))
        }
        let (receive, send) = (ends[0], ends[1])
        return NIOPipeBootstrap(group: eventLoop)
            .channelOption(.maxMessagesPerRead, value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.readSize))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionInboxReader(start: start))
                }
            }
            .takingOwnershipOfDescriptor(input: receive)
            .map { _ in ConnectionInbox(sendDescriptor: send) }
            .flatMapErrorThrowing { error in
                Glibc.close(receive)
                Glibc.close(send)
                throw error
            }
    }

    /// Sends what it can of `outbox` now; false when the loop's end is gone (the descriptors
    /// still queued are then the caller's to close).
    func send(_ outbox: inout ConnectionOutbox) -> Bool {
        while !outbox.isEmpty {
            let bytes = outbox.pendingBytes(limit: 1024)
            let sent = bytes.withUnsafeBytes { lifeline_send_nonblocking(self.sendDescriptor, $0.baseAddress, $0.count) }
            if sent > 0 {
                outbox.sent(sent)
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN: return true
            default: return false
            }
        }
        return true
    }

    /// No more connections: the loop reads those already sent, then closes its end. Idempotent.
    func finish() {
        let first = self.finished.withLockedValue { finished -> Bool in
            defer { finished = true }
            return !finished
        }
        if first {
            Glibc.close(self.sendDescriptor)
        }
    }
}
