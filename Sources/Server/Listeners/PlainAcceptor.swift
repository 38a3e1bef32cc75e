import CLiburing
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on a plaintext listening socket on a thread of its own, and hands each one
/// to an event loop, which starts it as a SwiftNIO channel (`ClientBootstrap.withConnectedSocket`),
/// telling the front end the connection's descriptor. With `--io-uring` the loops write one event
/// to many clients in one system call (`SendBatch`), which needs the sockets' descriptors;
/// SwiftNIO's own accept (`ServerBootstrap`) does not expose them.
///
/// The descriptors travel to the loops through each loop's `ConnectionInbox`, in turn, and the
/// loops read them as I/O: a flood of connections does not hold up the requests of those already
/// started. When a loop's inbox is full the thread stops accepting until it drains, and the
/// connections wait in the listen backlog meanwhile.
///
/// The thread waits in `poll` on the listening socket, the inboxes it has connections queued for
/// and an eventfd; `close()` writes the eventfd, waits for the thread to leave, closes what it
/// had not handed over and the listening socket (after an upgrade hand-over the new process
/// keeps accepting on its own copy), and closes the inboxes, whose loops start what was sent
/// before. SwiftNIO never calls `listen` on this socket again, so the backlog it was made with
/// stays.
final class PlainAcceptor: @unchecked Sendable {  // the thread owns `outboxes`; `close` is idempotent
    /// Builds a connection's pipeline (and sets its options); called on the connection's event loop.
    typealias Install = @Sendable (Channel, CInt) throws -> Void

    let descriptor: CInt
    let localAddress: SocketAddress?
    private let wake: CInt
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let finished: EventLoopPromise<Void>
    private let state = NIOLockedValueBox(State.running)
    private let inboxes: [ConnectionInbox]
    /// The thread's own: per inbox, what it accepted and has not yet sent.
    private var outboxes: [ConnectionOutbox]
    /// The inbox the next connection goes to.
    private var next = 0
    private let logger: Logger

    /// Accepted at once before they are sent on: bounds the thread's queue.
    static let acceptBatch = 256

    private enum State {
        case running
        case closing
        case closed
    }

    /// Opens an inbox on every loop of `group`, then starts accepting on `descriptor`.
    static func start(
        descriptor: CInt,
        group: EventLoopGroup,
        logger: Logger,
        install: @escaping Install
    ) async throws -> PlainAcceptor {
        var inboxes: [ConnectionInbox] = []
        do {
            for loop in group.makeIterator() {
                let inbox = try await ConnectionInbox.open(on: loop) { connection in
                    Self.startConnection(connection, on: loop, install: install, logger: logger)
                }.get()
                inboxes.append(inbox)
            }
            return try PlainAcceptor(descriptor: descriptor, inboxes: inboxes, finished: group.next().makePromise(), logger: logger)
        } catch {
            for inbox in inboxes {
                inbox.finish()
            }
            throw error
        }
    }

    private init(descriptor: CInt, inboxes: [ConnectionInbox], finished: EventLoopPromise<Void>, logger: Logger) throws {
        let wake = lifeline_wake_descriptor()
        guard wake >= 0 else { throw ListeningSocket.Failure(description: "eventfd: \(String(cString: strerror(errno)))") }
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else {
            Glibc.close(wake)
            throw ListeningSocket.Failure(description: "O_NONBLOCK on the listener: \(String(cString: strerror(errno)))")
        }
        self.descriptor = descriptor
        self.localAddress = ListeningSocket.localAddress(descriptor)
        self.wake = wake
        self.inboxes = inboxes
        self.outboxes = Array(repeating: ConnectionOutbox(), count: inboxes.count)
        self.logger = logger
        self.finished = finished
        self.pool.start()
        self.pool.submit { [self] _ in
            self.run()
            self.closeQueued()
            finished.succeed()
        }
    }

    /// On `loop`: the connection's channel, with its pipeline.
    private static func startConnection(_ connection: CInt, on loop: EventLoop, install: @escaping Install, logger: Logger) {
        ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try install(channel, connection) }
            }
            .withConnectedSocket(connection)
            .whenFailure { error in
                logger.debug("accepted connection not started", metadata: ["error": "\(error)"])
            }
    }

    /// Stops accepting and closes the listening socket. Idempotent.
    func close() async {
        let first = self.state.withLockedValue { state -> Bool in
            guard case .running = state else { return false }
            state = .closing
            return true
        }
        if first {
            var one: UInt64 = 1
            _ = write(self.wake, &one, MemoryLayout<UInt64>.size)
        }
        try? await self.finished.futureResult.get()
        let last = self.state.withLockedValue { state -> Bool in
            guard case .closing = state else { return false }
            state = .closed
            return true
        }
        if last {
            Glibc.close(self.descriptor)
            Glibc.close(self.wake)
            for inbox in self.inboxes {
                inbox.finish()
            }
            try? await self.pool.shutdownGracefully()
        }
    }

    private func run() {
        var fds = [
            pollfd(fd: self.descriptor, events: 0, revents: 0),
            pollfd(fd: self.wake, events: Int16(POLLIN), revents: 0),
        ] + self.inboxes.map { pollfd(fd: $0.sendDescriptor, events: 0, revents: 0) }
        while true {
            // Accept only while every inbox has taken what it was given: otherwise wait until
            // the full ones drain.
            let holding = self.outboxes.contains { !$0.isEmpty }
            fds[0].events = holding ? 0 : Int16(POLLIN)
            for index in self.outboxes.indices {
                fds[2 + index].events = self.outboxes[index].isEmpty ? 0 : Int16(POLLOUT)
            }
            for index in fds.indices {
                fds[index].revents = 0
            }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                self.logger.error("listener poll failed; no more connections accepted here", metadata: ["error": "\(String(cString: strerror(errno)))"])
                return
            }
            if fds[1].revents != 0 { return }
            if holding {
                self.sendQueued()
            } else {
                self.acceptAll()
            }
        }
    }

    /// Accepts what the queue holds (the socket is non-blocking), a batch at a time, and sends
    /// each batch on; stops early when an inbox is full.
    private func acceptAll() {
        while true {
            var accepted = 0
            while accepted < Self.acceptBatch {
                let connection = lifeline_accept_nonblocking(self.descriptor)
                if connection >= 0 {
                    self.outboxes[self.next].append(connection)
                    self.next = (self.next + 1) % self.outboxes.count
                    accepted += 1
                    continue
                }
                if self.acceptFailed() { break }
            }
            self.sendQueued()
            if accepted < Self.acceptBatch || self.outboxes.contains(where: { !$0.isEmpty }) {
                return
            }
        }
    }

    /// After `accept` failed: true when the queue is empty for now (or accepting must pause),
    /// false to try again at once.
    private func acceptFailed() -> Bool {
        switch errno {
        case EINTR, ECONNABORTED, EPROTO:
            return false
        case EAGAIN:
            return true
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            // Out of descriptors or memory: the connections wait in the backlog meanwhile.
            self.logger.warning("accept failed; retrying in 100 ms", metadata: ["error": "\(String(cString: strerror(errno)))"])
            usleep(100_000)
            return true
        default:
            self.logger.error("accept failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
            usleep(100_000)
            return true
        }
    }

    /// Sends each inbox what is queued for it; a loop that is gone gets no more (its queue is
    /// closed here).
    private func sendQueued() {
        for index in self.outboxes.indices where !self.outboxes[index].isEmpty {
            if !self.inboxes[index].send(&self.outboxes[index]) {
                self.logger.error("an event loop stopped taking connections; closing those queued for it")
                for connection in self.outboxes[index].takeAll() {
                    Glibc.close(connection)
                }
            }
        }
    }

    /// The thread is leaving: what it accepted and did not hand over is closed.
    private func closeQueued() {
        for index in self.outboxes.indices {
            for connection in self.outboxes[index].takeAll() {
                Glibc.close(connection)
            }
        }
    }
}
