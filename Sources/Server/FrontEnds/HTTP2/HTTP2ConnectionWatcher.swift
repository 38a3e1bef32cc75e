import HTTP2
import NIOCore

/// Sees the connection close and the gateway's shutdown for an `HTTP2FrontEnd`.
final class HTTP2ConnectionWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let frontEnd: HTTP2FrontEnd
    private let handler: HTTP2ServerHandler
    private let loop: LoopContext

    private let isTLS: Bool

    init(frontEnd: HTTP2FrontEnd, handler: HTTP2ServerHandler, loop: LoopContext, isTLS: Bool) {
        self.isTLS = isTLS
        self.frontEnd = frontEnd
        self.handler = handler
        self.loop = loop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.frontEnd.connection.register(context, protocol: .h2, tls: self.isTLS)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.frontEnd.connection.unregister(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.frontEnd.connectionClosed(self.handler.connectionEnd)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GatewayShutdown {
            // GOAWAY: no new streams; the streams' responses end as their streams do.
            self.frontEnd.connection.ended(.shutdown)
            self.handler.beginGracefulShutdown()
            return
        }
        if event is GatewayDrain {
            // GOAWAY, and each stream goes at its drain moment.
            self.frontEnd.connection.ended(.drained)
            self.handler.beginGracefulShutdown()
            self.frontEnd.drainRequested()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
