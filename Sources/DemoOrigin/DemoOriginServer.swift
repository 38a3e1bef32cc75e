import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The built-in demo origin: an SSE server that publishes a numbered tick event at a fixed
/// interval, replays missed ticks for `Last-Event-ID`, and drops its connections now and then.
///
/// It exists so that `lifeline --demo` shows the gateway at work without any other software, and
/// so that tests have a well-behaved origin that can be killed and restarted on the same port.
///
/// Routes: `GET /` (the demo page, `DemoPage`), `GET /events` and `/events/...` (the stream, open
/// to pages of any site: CORS `*`), `GET /healthz` (`ok`), `POST /demo/cut` (cuts the attached
/// `DemoNetworkPaths`), `POST /demo/chat` (a canned LLM-style answer as an event stream, `DemoChat`),
/// `GET /demo/stats` (stream requests so far and streams open now, by path, and the chat's
/// requests and open answers, as JSON), `OPTIONS` (CORS preflight); other paths get `404`, other
/// methods `405`.
public final class DemoOriginServer: Sendable {
    private struct Connections {
        var channels: [ObjectIdentifier: Channel] = [:]
        var isStopping = false
    }

    private let serverChannel: Channel
    private let connections: NIOLockedValueBox<Connections>
    private let controls: DemoControls

    /// The address the listener is bound to (with the real port when started with port 0).
    public let localAddress: SocketAddress

    /// The port the listener is bound to.
    public var port: Int {
        self.localAddress.port ?? 0
    }

    /// The number of client connections currently open (streaming or not).
    public var openConnectionCount: Int {
        self.connections.withLockedValue { $0.channels.count }
    }

    private init(
        serverChannel: Channel,
        connections: NIOLockedValueBox<Connections>,
        controls: DemoControls,
        localAddress: SocketAddress
    ) {
        self.serverChannel = serverChannel
        self.connections = connections
        self.controls = controls
        self.localAddress = localAddress
    }

    /// Gives the page the paths it can cut (`lifeline --demo` starts them after the gateway).
    public func attach(_ paths: DemoNetworkPaths) {
        self.controls.paths.withLockedValue { $0 = paths }
    }

    /// Binds `host:port` (port 0 picks a free port) and starts serving on `group`.
    ///
    /// The listener uses `SO_REUSEADDR`, so a restarted process can bind the same port right away
    /// even while connections of its predecessor linger in `TIME_WAIT`.
    public static func start(
        host: String,
        port: Int,
        configuration: DemoOriginConfiguration,
        group: EventLoopGroup
    ) async throws -> DemoOriginServer {
        let connections = NIOLockedValueBox(Connections())
        let controls = DemoControls()
        // One broadcaster per event loop, created when the loop gets its first connection.
        let broadcasters = NIOLockedValueBox<[ObjectIdentifier: DemoTickBroadcaster]>([:])
        let tickMillis = configuration.tickMillis

        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let accepted = connections.withLockedValue { state -> Bool in
                    guard !state.isStopping else { return false }
                    state.channels[ObjectIdentifier(channel)] = channel
                    return true
                }
                guard accepted else {
                    // Accepted while stop() runs: stop() has already taken its list of channels.
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in
                    _ = connections.withLockedValue { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
                }
                let loop = channel.eventLoop
                let broadcaster = broadcasters.withLockedValue { table in
                    if let existing = table[ObjectIdentifier(loop)] {
                        return existing
                    }
                    let created = DemoTickBroadcaster(eventLoop: loop, tickMillis: tickMillis)
                    table[ObjectIdentifier(loop)] = created
                    return created
                }
                return loop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        DemoOriginHandler(configuration: configuration, broadcaster: broadcaster, controls: controls)
                    )
                }
            }

        let serverChannel = try await bootstrap.bind(host: host, port: port).get()
        guard let localAddress = serverChannel.localAddress else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        return DemoOriginServer(
            serverChannel: serverChannel,
            connections: connections,
            controls: controls,
            localAddress: localAddress
        )
    }

    /// Closes the listener and every open connection (streams are cut, not ended). Idempotent.
    public func stop() async throws {
        let open = self.connections.withLockedValue { state -> [Channel] in
            state.isStopping = true
            return Array(state.channels.values)
        }
        do {
            try await self.serverChannel.close()
        } catch ChannelError.alreadyClosed {
            // Stopped before: fine.
        }
        for channel in open {
            try? await channel.close()
        }
    }
}

/// The two cuttable stretches of network of `lifeline --demo`: page → origin and page → gateway.
public struct DemoNetworkPaths: Sendable {
    public var direct: DemoNetworkPath
    public var lifeline: DemoNetworkPath

    public init(direct: DemoNetworkPath, lifeline: DemoNetworkPath) {
        self.direct = direct
        self.lifeline = lifeline
    }
}

/// What the page's buttons reach, shared by every connection of one demo origin.
final class DemoControls: Sendable {
    let paths = NIOLockedValueBox<DemoNetworkPaths?>(nil)
    /// Stream requests by path, for `/demo/stats` (tests count a gateway's origin requests).
    let streamRequests = NIOLockedValueBox<[String: Int]>([:])
    /// Streams open now, by path (tests check that a gateway's origin connections merge).
    let openStreams = NIOLockedValueBox<[String: Int]>([:])
    /// `POST /demo/chat`: the chat panel shows how often the origin was asked.
    let chats = NIOLockedValueBox(ChatCounts())

    struct ChatCounts: Sendable {
        /// Requests received (answered or refused).
        var requests = 0
        /// Answers being sent now.
        var open = 0
    }
}
