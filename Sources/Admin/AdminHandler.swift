import NIOCore
import NIOHTTP1

/// One admin connection: answers each request through `AdminRoutes`; a request for the feed
/// turns the connection into an event stream for the rest of its life.
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case head(HTTPRequestHead)
        /// A plain answer is being computed; further requests wait in NIO's pipelining handler.
        case answering
        case feeding
    }

    private let routes: AdminRoutes
    private var state = State.idle

    init(routes: AdminRoutes) {
        self.routes = routes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            if case .idle = self.state { self.state = .head(head) }
        case .body:
            break  // No admin path takes a body; it is read and dropped.
        case .end:
            guard case .head(let head) = self.state else { return }
            self.state = .answering
            self.answer(head, context: context)
        }
    }

    /// A request that does not parse (NIO's error handler has answered it 400) or a broken
    /// connection: close, or the peer keeps the connection for nothing.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .feeding = self.state {
            self.routes.feed.remove(context.channel)
        }
        context.fireChannelInactive()
    }

    private func answer(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        switch self.routes.answer(head, on: context.eventLoop) {
        case .now(let response):
            self.write(response, for: head, context: context)
        case .later(let future):
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            future.whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let response):
                    handler.write(response, for: head, context: context)
                case .failure:
                    handler.write(AdminRoutes.text(.internalServerError, "failed\n"), for: head, context: context)
                }
            }
        case .feed(let view):
            self.startFeed(view, head: head, context: context)
        }
    }

    private func write(_ response: AdminRoutes.Response, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var headers = HTTPHeaders([
            ("Content-Type", response.contentType),
            ("Content-Length", String(response.body.readableBytes)),
            ("Cache-Control", "no-store"),
        ])
        headers.add(contentsOf: response.extraHeaders)
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        self.state = .idle
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    private func startFeed(_ view: StatusFeed.View, head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.method == .GET, self.routes.feed.add(context.channel, view: view) else {
            let refusal = head.method == .GET
                ? AdminRoutes.text(.serviceUnavailable, "too many status pages open\n", extraHeaders: [("Retry-After", "10")])
                : AdminRoutes.text(.methodNotAllowed, "GET only\n", extraHeaders: [("Allow", "GET")])
            return self.write(refusal, for: head, context: context)
        }
        self.state = .feeding
        let headers = HTTPHeaders([
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-store"),
            ("X-Accel-Buffering", "no"),
        ])
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "retry: 2000\n\n")))), promise: nil)
        let feed = self.routes.feed
        let channel = context.channel
        Task { await feed.sendFirst(to: channel, view: view) }
    }
}
