import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A stretch of network between the demo page and a server that the page can cut: a TCP relay
/// whose open connections, once cut, go silent in both directions without closing. That is what
/// a Wi-Fi change, a NAT or mobile-network timeout or a sleeping laptop does to a long-lived
/// connection: no FIN, no RST, just nothing. New connections pass again, as on the new network.
///
/// A cut connection still reads (and drops) what arrives, so that a side that closes is noticed
/// and the other side is closed too; nothing stays open once the browser gives up.
public final class DemoNetworkPath: Sendable {
    /// Fired through both channels of every open relay connection by `cut()`.
    struct Cut: Sendable {}

    private struct Relays {
        var pairs: [ObjectIdentifier: (Channel, Channel)] = [:]
        var isStopping = false
    }

    private let serverChannel: Channel
    private let relays: NIOLockedValueBox<Relays>

    /// The address the relay listens on (with the real port when started with port 0).
    public let localAddress: SocketAddress

    public var port: Int { self.localAddress.port ?? 0 }

    /// Relay connections open now.
    public var openConnectionCount: Int { self.relays.withLockedValue { $0.pairs.count } }

    private init(serverChannel: Channel, relays: NIOLockedValueBox<Relays>, localAddress: SocketAddress) {
        self.serverChannel = serverChannel
        self.relays = relays
        self.localAddress = localAddress
    }

    /// Listens on `host:port` and relays each connection to `target`.
    public static func start(host: String, port: Int, target: SocketAddress, group: EventLoopGroup) async throws -> DemoNetworkPath {
        let relays = NIOLockedValueBox(Relays())
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { inbound in
                // The far side first: nothing is read from the browser before it can go somewhere.
                ClientBootstrap(group: inbound.eventLoop)
                    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                    .connect(to: target)
                    .flatMapThrowing { outbound in
                        let (near, far) = DemoRelayHandler.pair()  // browser side, server side
                        try outbound.pipeline.syncOperations.addHandler(far)
                        try inbound.pipeline.syncOperations.addHandler(near)
                        let accepted = relays.withLockedValue { state -> Bool in
                            guard !state.isStopping else { return false }
                            state.pairs[ObjectIdentifier(inbound)] = (inbound, outbound)
                            return true
                        }
                        guard accepted else {
                            outbound.close(promise: nil)
                            throw ChannelError.ioOnClosedChannel
                        }
                        inbound.closeFuture.whenComplete { _ in
                            _ = relays.withLockedValue { $0.pairs.removeValue(forKey: ObjectIdentifier(inbound)) }
                        }
                    }
            }
        let serverChannel = try await bootstrap.bind(host: host, port: port).get()
        guard let localAddress = serverChannel.localAddress else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        return DemoNetworkPath(serverChannel: serverChannel, relays: relays, localAddress: localAddress)
    }

    /// Silences every open connection for good. The future says how many there were, once
    /// both sides of each are cut: from then on not a byte passes.
    @discardableResult
    public func cut(on eventLoop: EventLoop) -> EventLoopFuture<Int> {
        let pairs = self.relays.withLockedValue { Array($0.pairs.values) }
        let done = pairs.flatMap { [$0.0, $0.1] }.map { channel in
            channel.eventLoop.submit { channel.pipeline.syncOperations.fireUserInboundEventTriggered(Cut()) }
        }
        return EventLoopFuture.whenAllComplete(done, on: eventLoop).map { _ in pairs.count }
    }

    /// Closes the listener and every relay connection. Idempotent.
    public func stop() async {
        let pairs = self.relays.withLockedValue { state -> [(Channel, Channel)] in
            state.isStopping = true
            return Array(state.pairs.values)
        }
        try? await self.serverChannel.close()
        for (inbound, outbound) in pairs {
            inbound.close(promise: nil)
            outbound.close(promise: nil)
        }
    }
}
