import LifelineCore
import Logging
import NIOConcurrencyHelpers
import TLS
import NIOTLS
import NIOCore
import NIOHTTP1
import NIOPosix
import SendRing

/// The gateway's listeners and what they share. One per process.
public final class GatewayServer: Sendable {
    public let hub: StreamHub
    public let metrics: GatewayMetrics
    /// The configuration in force: the one at start, or the last one reloaded.
    private let current: NIOLockedValueBox<GatewayShared>
    private let listeners: [GatewayListener]
    /// The listening sockets' descriptors by role, in order (`listen`, then `tls-listen`), for
    /// handing them to a new process on upgrade.
    public let listenerDescriptors: [(role: String, fd: CInt)]
    /// One per event loop; each knows its loop's connections, for shutdown.
    private let loops: [LoopContext]
    private let heapTrimmer: HeapTrimmer
    private let tls: TLSServerContext?

    private init(
        configuration: GatewayConfiguration,
        hub: StreamHub,
        shared: GatewayShared,
        listeners: [GatewayListener],
        listenerDescriptors: [(role: String, fd: CInt)],
        loops: [LoopContext],
        tls: TLSServerContext?
    ) {
        self.tls = tls
        self.listenerDescriptors = listenerDescriptors
        self.hub = hub
        self.metrics = shared.metrics
        self.current = NIOLockedValueBox(shared)
        self.listeners = listeners
        self.loops = loops
        self.heapTrimmer = HeapTrimmer(hub: hub, eventLoop: loops[0].eventLoop, logger: shared.logger)
        let trimmer = self.heapTrimmer
        trimmer.eventLoop.execute { trimmer.start() }
    }

    /// The addresses actually bound (a port 0 in the configuration becomes the kernel's choice).
    public var localAddresses: [SocketAddress] {
        self.listeners.compactMap(\.localAddress)
    }

    /// The first listener's port.
    public var port: Int { self.localAddresses.first?.port ?? 0 }

    /// The addresses of the plaintext listeners (`--listen`), then of the TLS ones (`--tls-listen`).
    public var plaintextAddresses: [SocketAddress] {
        zip(self.listeners, self.listenerDescriptors).filter { $0.1.role == "listen" }.compactMap(\.0.localAddress)
    }

    public var tlsAddresses: [SocketAddress] {
        zip(self.listeners, self.listenerDescriptors).filter { $0.1.role == "tls-listen" }.compactMap(\.0.localAddress)
    }

    public var configuration: GatewayConfiguration {
        self.current.withLockedValue { $0.configuration }
    }

    private var shared: GatewayShared {
        self.current.withLockedValue { $0 }
    }

    /// Applies `configuration` to new connections, requests and streams; what runs keeps going
    /// as it started (streams keep their replay bounds, upstream settings and linger; clients
    /// get the new heartbeat). Certificates are read again if any are configured; if they cannot
    /// be, nothing changes and the error is thrown. Returns what differs but needs new sockets
    /// or threads (an in-place upgrade, SIGUSR2), for the log.
    @discardableResult
    public func reload(_ configuration: GatewayConfiguration) async throws -> [String] {
        var configuration = configuration
        let old = self.configuration
        var needsUpgrade: [String] = []
        if configuration.listen != old.listen { needsUpgrade.append("--listen") }
        if configuration.tlsListen != old.tlsListen { needsUpgrade.append("--tls-listen") }
        if let tls = self.tls, !configuration.tlsCertificates.isEmpty {
            try tls.reload(certificates: configuration.tlsCertificates.map {
                TLSServerContext.CertificatePair(certificatePath: $0.certificate, keyPath: $0.key)
            })
        } else if self.tls == nil, !configuration.tlsCertificates.isEmpty, !configuration.tlsListen.isEmpty {
            needsUpgrade.append("--tls-cert/--tls-key without a TLS listener at start")
        }
        // The upstream TLS context (https origins) is kept: it was made at start for what the
        // routes then needed.
        configuration.upstream.tls = old.upstream.tls
        if configuration.routes.contains(where: { $0.origin.scheme == .https }), configuration.upstream.tls == nil {
            configuration.upstream.tls = try TLSClientContext(
                additionalCAPath: configuration.upstreamCA,
                verify: !configuration.upstreamInsecure
            )
        }
        let shared = GatewayShared(reloading: self.shared, configuration: configuration)
        self.current.withLockedValue { $0 = shared }
        for loop in self.loops {
            try? await loop.eventLoop.submit { loop.reload(shared) }.get()
        }
        return needsUpgrade
    }

    /// The first TLS listener's port.
    public var tlsPort: Int? { self.tlsAddresses.first?.port }

    /// Re-reads the TLS certificates (SIGHUP). Established connections keep theirs.
    public func reloadCertificates() throws {
        try self.tls?.reload()
    }

    /// Handshake and shutdown counts of the TLS listeners.
    public var tlsMetrics: TLSMetrics { self.shared.tlsMetrics }

    public var connectionCount: Int { self.shared.limiter.total }

    /// Starts listening on the configured addresses, or on the sockets in `inherited` that
    /// match them (an upgrade's hand-over, systemd socket activation).
    public static func start(
        configuration: GatewayConfiguration,
        group: EventLoopGroup,
        logger: Logger,
        inherited: InheritedListeners = InheritedListeners()
    ) async throws -> GatewayServer {
        var configuration = configuration
        if configuration.routes.contains(where: { $0.origin.scheme == .https }), configuration.upstream.tls == nil {
            if configuration.upstreamInsecure {
                logger.warning("--upstream-insecure: https origins' certificates are not verified")
            }
            configuration.upstream.tls = try TLSClientContext(
                additionalCAPath: configuration.upstreamCA,
                verify: !configuration.upstreamInsecure
            )
        }
        if configuration.ioUring, !SendRing.isAvailable {
            configuration.ioUring = false
            logger.warning("no io_uring for this process (kernel before 5.6, or seccomp); each client is written with its own write()")
        }
        let hub = StreamHub()
        let shared = GatewayShared(
            configuration: configuration,
            hub: hub,
            eventLoops: Array(group.makeIterator()),
            logger: logger
        )
        let tls = try configuration.tlsListen.isEmpty ? nil : TLSServerContext(
            certificates: configuration.tlsCertificates.map {
                TLSServerContext.CertificatePair(certificatePath: $0.certificate, keyPath: $0.key)
            }
        )
        var contexts: [ObjectIdentifier: LoopContext] = [:]
        for loop in group.makeIterator() {
            contexts[ObjectIdentifier(loop)] = LoopContext(eventLoop: loop, shared: shared)
        }
        let loopContexts = contexts
        // The kernel buffers what a slow client has not taken; past this the channel is
        // unwritable and bytes wait in the subscriber's own queue, bounded by --client-buffer.
        let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 << 10, high: 64 << 10)

        let frontEnds = FrontEnds()
        var listeners: [GatewayListener] = []
        var descriptors: [(role: String, fd: CInt)] = []
        do {
            let plain = configuration.listen.enumerated().map { ($0.element, false, $0.offset) }
            let secure = configuration.tlsListen.enumerated().map { ($0.element, true, $0.offset) }
            for (address, isTLS, index) in plain + secure {
                let role = isTLS ? "tls-listen" : "listen"
                let fd = try inherited.take(role: role, index: index, host: address.host, port: address.port)
                    ?? ListeningSocket.bind(host: address.host, port: address.port)
                if !isTLS, configuration.ioUring {
                    // Accepted here, so that each connection's descriptor is known to its loop's
                    // batched sends.
                    let acceptor = try await PlainAcceptor.start(descriptor: fd, group: group, logger: logger) { channel, descriptor in
                        guard let loop = loopContexts[ObjectIdentifier(channel.eventLoop)] else {
                            throw ChannelError.ioOnClosedChannel
                        }
                        try Self.setClientOptions(on: channel, waterMark: waterMark)
                        try frontEnds.installPlaintext(on: channel, loop: loop, descriptor: descriptor)
                    }
                    listeners.append(.acceptor(acceptor))
                    descriptors.append((role, fd))
                    continue
                }
                let channel = try await ServerBootstrap(group: group)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try Self.setClientOptions(on: channel, waterMark: waterMark)
                            guard let loop = loopContexts[ObjectIdentifier(channel.eventLoop)] else {
                                throw ChannelError.ioOnClosedChannel
                            }
                            if isTLS, let tls {
                                try frontEnds.installTLS(on: channel, loop: loop, context: tls)
                            } else {
                                try frontEnds.installPlaintext(on: channel, loop: loop)
                            }
                        }
                    }
                    .withBoundSocket(fd)
                    .get()
                listeners.append(.channel(channel))
                try ListeningSocket.restoreBacklog(fd)
                descriptors.append((role, fd))
            }
        } catch {
            for listener in listeners {
                await listener.close()
            }
            throw error
        }
        return GatewayServer(
            configuration: configuration,
            hub: hub,
            shared: shared,
            listeners: listeners,
            listenerDescriptors: descriptors,
            loops: Array(loopContexts.values),
            tls: tls
        )
    }

    /// A client connection's options, on its loop before its pipeline is built: set directly
    /// rather than as a bootstrap's options, which it applies one future at a time.
    private static func setClientOptions(
        on channel: Channel, waterMark: ChannelOptions.Types.WriteBufferWaterMark
    ) throws {
        let options = channel.syncOptions
        try options?.setOption(.tcpOption(.tcp_nodelay), value: 1)
        try options?.setOption(.writeBufferWaterMark, value: waterMark)
        try options?.setOption(.maxMessagesPerRead, value: 4)
        try options?.setOption(.recvAllocator, value: ClientReadSizing())
    }

    /// Closes the listeners: no new connection is accepted here (after an upgrade hand-over the
    /// new process still accepts on the same sockets). Idempotent.
    public func stopAccepting() async {
        for listener in self.listeners {
            await listener.close()
        }
    }

    /// Drains: stops accepting, then lets every client go over `window` (each streaming client
    /// at its own random moment, after a `retry:`), while streams and their origin connections
    /// keep running for those still here. Returns when no client is left or the window is over;
    /// `shutdown` ends what remains.
    public func drain(window: TimeAmount, retryRange: ClosedRange<Int64> = DrainSchedule.defaultRetryRange) async {
        await self.stopAccepting()
        let schedule = DrainSchedule(deadline: .now() + window, retryRange: retryRange)
        for loop in self.loops {
            loop.eventLoop.execute { loop.beginDrain(schedule) }
        }
        while !Task.isCancelled, await self.openConnections() > 0, NIODeadline.now() < schedule.deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Stops accepting and ends every stream (clients' responses end cleanly, then their
    /// connections close); waits up to `grace` for that and for plain responses in flight,
    /// then closes what is left.
    public func shutdown(grace: TimeAmount = .seconds(2)) async {
        let trimmer = self.heapTrimmer
        try? await trimmer.eventLoop.submit { trimmer.stop() }.get()
        for listener in self.listeners {
            await listener.close()
        }
        for stream in self.hub.streams {
            stream.shutdown()
        }
        for loop in self.loops {
            loop.eventLoop.execute { loop.beginShutdown() }
        }
        let deadline = NIODeadline.now() + grace
        while await self.openConnections() > 0, NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        for loop in self.loops {
            try? await loop.eventLoop.submit { loop.closeAllConnections() }.get()
        }
    }

    /// `--io-uring`: client writes that went out whole in the loops' batches, and those the
    /// sockets did not take at once (the rest went through the channel); nil when no loop has
    /// a batch (flag off, or no io_uring here).
    public func batchedSends() async -> (sent: Int, fellShort: Int, withdrawn: Int)? {
        var total: (sent: Int, fellShort: Int, withdrawn: Int)?
        for loop in self.loops {
            let counts = try? await loop.eventLoop.submit { () -> (Int, Int, Int)? in
                guard let batch = loop.sendBatch else { return nil }
                return (batch.sent, batch.fellShort, batch.withdrawn)
            }.get()
            if let (sent, fellShort, withdrawn) = counts ?? nil {
                total = ((total?.sent ?? 0) + sent, (total?.fellShort ?? 0) + fellShort, (total?.withdrawn ?? 0) + withdrawn)
            }
        }
        return total
    }

    private func openConnections() async -> Int {
        var count = 0
        for loop in self.loops {
            count += (try? await loop.eventLoop.submit { loop.connectionCount }.get()) ?? 0
        }
        return count
    }
}

/// Tells a connection that the gateway is shutting down: close when idle, and after the
/// response in flight.
struct GatewayShutdown: Sendable {}
