import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Sends the ``SSETestClient``'s request when the connection opens and records the response
/// into the client's shared state, waking its waiters after every change.
final class SSETestClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private let body: String?
    private let state: NIOLockedValueBox<SSETestClient.State>
    private let signal: ChangeSignal
    /// Set between a 1xx interim head and its end, which belong to no real response.
    private var inInterimResponse = false

    init(request: HTTPRequestHead, body: String?, state: NIOLockedValueBox<SSETestClient.State>, signal: ChangeSignal) {
        self.request = request
        self.body = body
        self.state = state
        self.signal = signal
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(.head(self.request)), promise: nil)
        if let body = self.body {
            context.write(
                self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))),
                promise: nil
            )
        }
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            // A 1xx interim response is not the response; wait for the final head.
            guard head.status.code >= 200 || head.status.code == 101 else {
                self.inInterimResponse = true
                return
            }
            self.state.withLockedValue { $0.head = head }
            self.signal.notify()
        case .body(let buffer):
            self.state.withLockedValue { state in
                state.bodyBytes.append(contentsOf: buffer.readableBytesView)
                state.parser.feed(buffer.readableBytesView)
            }
            self.signal.notify()
        case .end:
            guard !self.inInterimResponse else {
                self.inInterimResponse = false
                return
            }
            self.state.withLockedValue { $0.endedCleanly = true }
            self.signal.notify()
            // One request per client: nothing more will come on this connection.
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state.withLockedValue { $0.isClosed = true }
        self.signal.notify()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.state.withLockedValue { state in
            if state.error == nil {
                state.error = "\(error)"
            }
        }
        context.close(promise: nil)
    }
}
