import LifelineCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The gateway's listeners and what they share. One per process.
public final class GatewayServer: Sendable {
    public let configuration: GatewayConfiguration
    public let hub: StreamHub
    public let metrics: GatewayMetrics
    private let shared: GatewayShared
    private let listeners: [Channel]
    /// Every open client connection, for shutdown.
    private let connections: ConnectionRegistry

    private init(
        configuration: GatewayConfiguration,
        hub: StreamHub,
        shared: GatewayShared,
        listeners: [Channel],
        connections: ConnectionRegistry
    ) {
        self.configuration = configuration
        self.hub = hub
        self.metrics = shared.metrics
        self.shared = shared
        self.listeners = listeners
        self.connections = connections
    }

    /// The addresses actually bound (a port 0 in the configuration becomes the kernel's choice).
    public var localAddresses: [SocketAddress] {
        self.listeners.compactMap(\.localAddress)
    }

    /// The first listener's port.
    public var port: Int { self.localAddresses.first?.port ?? 0 }

    public var connectionCount: Int { self.shared.limiter.total }

    public static func start(
        configuration: GatewayConfiguration,
        group: EventLoopGroup,
        logger: Logger
    ) async throws -> GatewayServer {
        let hub = StreamHub()
        let shared = GatewayShared(configuration: configuration, hub: hub, logger: logger)
        var contexts: [ObjectIdentifier: LoopContext] = [:]
        for loop in group.makeIterator() {
            contexts[ObjectIdentifier(loop)] = LoopContext(eventLoop: loop, configuration: configuration)
        }
        let loopContexts = contexts
        let connections = ConnectionRegistry()
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = configuration.maxRequestHeadSize
        limits.maxHeaderFieldSize = configuration.maxRequestHeadSize
        let decoderLimits = limits
        // The kernel buffers what a slow client has not taken; past this the channel is
        // unwritable and bytes wait in the subscriber's own queue, bounded by --client-buffer.
        let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 32 << 10, high: 64 << 10)

        var listeners: [Channel] = []
        do {
            for address in configuration.listen {
                let channel = try await ServerBootstrap(group: group)
                    .serverChannelOption(.backlog, value: 1024)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelOption(.writeBufferWaterMark, value: waterMark)
                    .childChannelOption(.maxMessagesPerRead, value: 4)
                    .childChannelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            guard let loop = loopContexts[ObjectIdentifier(channel.eventLoop)] else {
                                throw ChannelError.ioOnClosedChannel
                            }
                            connections.add(channel)
                            try channel.pipeline.syncOperations.addHandler(
                                ByteToMessageHandler(HTTPRequestDecoder(
                                    leftOverBytesStrategy: .dropBytes,
                                    informationalResponseStrategy: .drop,
                                    limitConfiguration: decoderLimits
                                ))
                            )
                            try channel.pipeline.syncOperations.addHandler(HTTP1ServerHandler(shared: shared, loop: loop))
                        }
                    }
                    .bind(host: address.host, port: address.port)
                    .get()
                listeners.append(channel)
            }
        } catch {
            for listener in listeners {
                try? await listener.close()
            }
            throw error
        }
        return GatewayServer(
            configuration: configuration,
            hub: hub,
            shared: shared,
            listeners: listeners,
            connections: connections
        )
    }

    /// Stops accepting and ends every stream (clients' responses end cleanly, then their
    /// connections close); waits up to `grace` for that and for plain responses in flight,
    /// then closes what is left.
    public func shutdown(grace: TimeAmount = .seconds(2)) async {
        for listener in self.listeners {
            try? await listener.close()
        }
        for stream in self.hub.streams {
            stream.shutdown()
        }
        for channel in self.connections.all {
            channel.pipeline.fireUserInboundEventTriggered(GatewayShutdown())
        }
        let deadline = NIODeadline.now() + grace
        while self.connections.count > 0, NIODeadline.now() < deadline {
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        for channel in self.connections.all {
            try? await channel.close()
        }
    }
}

/// The open client channels, so that shutdown can reach them.
final class ConnectionRegistry: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: Channel]>([:])

    func add(_ channel: Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLockedValue { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLockedValue { _ = $0.removeValue(forKey: id) }
        }
    }

    var all: [Channel] { self.channels.withLockedValue { Array($0.values) } }
    var count: Int { self.channels.withLockedValue { $0.count } }
}

/// Tells a connection that the gateway is shutting down: close when idle, and after the
/// response in flight.
struct GatewayShutdown: Sendable {}
