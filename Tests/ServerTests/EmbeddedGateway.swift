import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1

@testable import Server

/// One loop of a gateway on an `EmbeddedEventLoop`, with in-memory origins (`OriginChannels`):
/// what the request-path tests set up alike. `route` is the only route, there are no heartbeats,
/// and `configure` changes the rest.
final class EmbeddedGateway {
    let loop = EmbeddedEventLoop()
    let origins: OriginChannels
    let shared: GatewayShared
    let loopContext: LoopContext

    init(route: String = "/=http://origin.test:3000/", configure: (inout GatewayConfiguration) -> Void = { _ in }) {
        self.origins = OriginChannels(loop: self.loop)
        var configuration = GatewayConfiguration()
        configuration.routes = [try! Route.parse(route).get()]
        configuration.heartbeat = nil
        configuration.upstream.connector = self.origins.connector
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        self.shared = GatewayShared(configuration: configuration, hub: StreamHub(), eventLoops: [self.loop], logger: logger)
        self.loopContext = LoopContext(eventLoop: self.loop, shared: self.shared)
    }

    /// Ends every stream, lets the loop finish what that started, and shuts it down.
    func shutdown() {
        for stream in self.shared.hub.streams {
            stream.shutdown()
        }
        self.loop.run()
        try? self.loop.syncShutdownGracefully()
    }

    /// A connected plaintext client channel as a listener makes it: the preface sniffer first,
    /// which installs HTTP/1.1 or HTTP/2 when the first bytes tell.
    func connectPlaintext(loopContext: LoopContext? = nil) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: self.loop)
        try FrontEnds().installPlaintext(on: channel, loop: loopContext ?? self.loopContext)
        try channel.connect(to: SocketAddress(ipAddress: "10.1.1.1", port: 5555)).wait()
        return channel
    }

    /// A connected client channel with the HTTP/1.1 front end (request decoder and handler) of
    /// `loopContext` (default: this gateway's); `installed` sees the handler before the
    /// connection is made.
    func connectHTTP1(
        loopContext: LoopContext? = nil,
        _ installed: (HTTP1ServerHandler) -> Void = { _ in }
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: self.loop)
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
        try channel.pipeline.syncOperations.addHandler(decoder)
        let handler = HTTP1ServerHandler(loop: loopContext ?? self.loopContext, decoder: decoder)
        installed(handler)
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "10.1.1.1", port: 5555)).wait()
        return channel
    }
}
