import LifelineCore
import Logging
import NIOCore
import NIOHTTP1

/// The gateway's front end on one event loop without listeners: it installs the HTTP/1.1 or
/// HTTP/2 front end on channels it is given. `GatewayServer` does this for accepted sockets;
/// this is for other pipelines, such as the `http1-server` fuzz target, which feeds an
/// `EmbeddedChannel` arbitrary bytes with in-memory origins (`UpstreamSession.Configuration.connector`).
public final class GatewayLoop: @unchecked Sendable {  // confined to `eventLoop`
    private let shared: GatewayShared
    private let context: LoopContext
    private let frontEnds: FrontEnds

    public init(configuration: GatewayConfiguration, eventLoop: EventLoop, hub: StreamHub = StreamHub(), logger: Logger) {
        self.shared = GatewayShared(configuration: configuration, hub: hub, eventLoops: [eventLoop], logger: logger)
        self.context = LoopContext(eventLoop: eventLoop, shared: self.shared)
        self.frontEnds = FrontEnds()
    }

    public var hub: StreamHub { self.shared.hub }
    public var metrics: GatewayMetrics { self.shared.metrics }
    /// Client connections admitted and not yet closed.
    public var connectionCount: Int { self.shared.limiter.total }

    /// Installs the HTTP/1.1 front end (request decoder and connection handler) on `channel`.
    public func installHTTP1(on channel: Channel, scheme: String = "http") throws {
        try self.frontEnds.installHTTP1(on: channel, loop: self.context, scheme: scheme)
    }

    /// Tells every connection of the loop that the gateway is shutting down.
    public func beginShutdown() {
        self.context.beginShutdown()
    }
}
