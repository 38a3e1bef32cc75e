import NIOCore
import NIOHTTP1

/// Turns each complete request on a ``ScriptedOrigin`` connection into a `Request` and an
/// ``OriginResponder`` and passes them to the registry. The responder writes from the channel's
/// tail, so this handler only reads.
final class ScriptedOriginHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart

    private let registry: ScriptedOriginRegistry
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(registry: ScriptedOriginRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
        case .body(let buffer):
            self.body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            let request = ScriptedOrigin.Request(
                method: head.method.rawValue,
                uri: head.uri,
                version: head.version,
                headers: head.headers,
                body: String(decoding: self.body, as: UTF8.self),
                isKeepAlive: head.isKeepAlive
            )
            self.body = []
            let responder = OriginResponder(request: request, channel: context.channel, signal: self.registry.signal)
            self.registry.received(request, responder: responder)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Lets tests wait for backpressure (`OriginResponder.isWritable`) without polling.
        self.registry.signal.notify()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
