import CLiburing
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on a plaintext listening socket on a thread of its own, and hands each one
/// to an event loop as a SwiftNIO channel (`ClientBootstrap.withConnectedSocket`), telling the
/// front end the connection's descriptor. With `--io-uring` the loops write one event to many
/// clients in one system call (`SendBatch`), which needs the sockets' descriptors; SwiftNIO's own
/// accept (`ServerBootstrap`) does not expose them.
///
/// The thread waits in `poll` on the listening socket and an eventfd; `close()` writes the
/// eventfd, waits for the thread to leave and closes the listening socket (after an upgrade
/// hand-over the new process keeps accepting on its own copy). SwiftNIO never calls `listen` on
/// this socket again, so the backlog it was made with stays.
final class PlainAcceptor: @unchecked Sendable {  // the thread owns the loop; `close` is idempotent
    /// Builds a connection's pipeline; called on the connection's event loop.
    typealias Install = @Sendable (Channel, CInt) throws -> Void

    let descriptor: CInt
    let localAddress: SocketAddress?
    private let wake: CInt
    private let pool = NIOThreadPool(numberOfThreads: 1)
    private let finished: EventLoopPromise<Void>
    private let state = NIOLockedValueBox(State.running)
    private let group: EventLoopGroup
    private let configure: @Sendable (ClientBootstrap) -> ClientBootstrap
    private let install: Install
    private let logger: Logger

    private enum State {
        case running
        case closing
        case closed
    }

    init(
        descriptor: CInt,
        group: EventLoopGroup,
        logger: Logger,
        configure: @escaping @Sendable (ClientBootstrap) -> ClientBootstrap,
        install: @escaping Install
    ) throws {
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
        self.group = group
        self.logger = logger
        self.configure = configure
        self.install = install
        self.finished = group.next().makePromise()
        self.pool.start()
        let finished = self.finished
        self.pool.submit { [self] _ in
            self.run()
            finished.succeed()
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
            try? await self.pool.shutdownGracefully()
        }
    }

    private func run() {
        var fds = [
            pollfd(fd: self.descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: self.wake, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                self.logger.error("listener poll failed; no more connections accepted here", metadata: ["error": "\(String(cString: strerror(errno)))"])
                return
            }
            if fds[1].revents != 0 { return }
            self.acceptAll()
        }
    }

    /// Accepts what the queue holds (the socket is non-blocking).
    private func acceptAll() {
        while true {
            let connection = lifeline_accept_nonblocking(self.descriptor)
            if connection >= 0 {
                self.handOver(connection)
                continue
            }
            switch errno {
            case EINTR, ECONNABORTED, EPROTO:
                continue
            case EAGAIN:
                return
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                // Out of descriptors or memory: the connections wait in the backlog meanwhile.
                self.logger.warning("accept failed; retrying in 100 ms", metadata: ["error": "\(String(cString: strerror(errno)))"])
                usleep(100_000)
                return
            default:
                self.logger.error("accept failed", metadata: ["error": "\(String(cString: strerror(errno)))"])
                usleep(100_000)
                return
            }
        }
    }

    private func handOver(_ connection: CInt) {
        let install = self.install
        let bootstrap = self.configure(ClientBootstrap(group: self.group))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try install(channel, connection) }
            }
        bootstrap.withConnectedSocket(connection).whenFailure { [logger] error in
            logger.debug("accepted connection not started", metadata: ["error": "\(error)"])
        }
    }
}
