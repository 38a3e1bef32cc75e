import LifelineCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Server

/// The admin listener (`--admin-listen`): `/metrics`, `/healthz`, `/readyz`, `/status.json`,
/// the status page at `/` and its feed `/status/events`. Separate from the gateway's listeners,
/// so none of these paths is reachable there (on a public listener `/metrics` is proxied like any
/// other path).
public final class AdminServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// `ready`, `draining`, `stopping`: `/readyz` answers 200 only for `ready`.
        public var state: @Sendable () -> String
        /// Flag file reloads so far (success, failure), when the process reloads at all.
        public var configReloads: @Sendable () -> (success: Int, failure: Int)?
        /// At most this many admin connections at once; more are closed at once.
        public var maxConnections: Int

        public init(
            host: String,
            port: Int,
            state: @escaping @Sendable () -> String = { "ready" },
            configReloads: @escaping @Sendable () -> (success: Int, failure: Int)? = { nil },
            maxConnections: Int = 128
        ) {
            self.host = host
            self.port = port
            self.state = state
            self.configReloads = configReloads
            self.maxConnections = maxConnections
        }
    }

    private let serverChannel: Channel
    private let feed: StatusFeed
    /// The listening socket's descriptor, for handing it to a new process on upgrade.
    public let descriptor: CInt
    private let ticker: Task<Void, Never>

    public let localAddress: SocketAddress
    public var port: Int { self.localAddress.port ?? 0 }

    private init(serverChannel: Channel, descriptor: CInt, feed: StatusFeed, ticker: Task<Void, Never>, localAddress: SocketAddress) {
        self.serverChannel = serverChannel
        self.descriptor = descriptor
        self.feed = feed
        self.ticker = ticker
        self.localAddress = localAddress
    }

    public static func start(
        configuration: Configuration,
        gateway: GatewayServer,
        group: EventLoopGroup,
        inherited: InheritedListeners = InheritedListeners()
    ) async throws -> AdminServer {
        let sampler = StatusSampler(gateway: gateway, state: configuration.state)
        let feed = StatusFeed(sampler: sampler)
        let routes = AdminRoutes(sampler: sampler, feed: feed, configReloads: configuration.configReloads)
        let open = NIOLockedValueBox(0)
        let maxConnections = configuration.maxConnections
        let descriptor = try inherited.take(role: "admin-listen", index: 0, host: configuration.host, port: configuration.port)
            ?? ListeningSocket.bind(host: configuration.host, port: configuration.port, backlog: 128)
        let serverChannel = try await ServerBootstrap(group: group)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let admitted = open.withLockedValue { count -> Bool in
                    guard count < maxConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(routes: routes))
                }
            }
            .withBoundSocket(descriptor).get()
        guard let localAddress = serverChannel.localAddress else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        // Once a second: rates and sparklines move on, and the status pages get a new report.
        let ticker = Task {
            while !Task.isCancelled {
                await feed.tick()
                try? await Task.sleep(nanoseconds: 1_000_000_000)
            }
        }
        return AdminServer(
            serverChannel: serverChannel, descriptor: descriptor, feed: feed, ticker: ticker, localAddress: localAddress
        )
    }

    /// Stops accepting (after an upgrade hand-over the new process accepts on the same socket);
    /// the status pages and scrapes in flight go on until `stop`.
    public func stopAccepting() async {
        try? await self.serverChannel.close()
    }

    public func stop() async {
        self.ticker.cancel()
        try? await self.serverChannel.close()
        self.feed.closeAll()
    }
}
