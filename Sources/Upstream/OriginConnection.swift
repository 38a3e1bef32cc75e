import NIOCore
import NIOHTTP1
import NIOPosix
import TLS

/// What an origin connection reports; every call comes on the connection's event loop.
public protocol OriginConnectionDelegate: AnyObject {
    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead)
    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer)
    /// The end of one read from the socket: a natural point to flush what the body calls produced.
    func originConnectionReadComplete(_ connection: OriginConnection)
    /// The whole response arrived.
    func originConnectionDidEnd(_ connection: OriginConnection)
    /// The connection failed or closed before the response ended (connect failure included).
    func originConnection(_ connection: OriginConnection, didFail error: Error)
    /// `isWritable` changed: a request body can flow again (or must wait).
    func originConnectionWritabilityChanged(_ connection: OriginConnection)
}

extension OriginConnectionDelegate {
    public func originConnectionWritabilityChanged(_ connection: OriginConnection) {}
}

/// How origin connections are made: TCP sockets in the gateway, in-memory channels in tests
/// (an `EmbeddedChannel` on an `EmbeddedEventLoop`, so that every order of events can be played).
public struct OriginConnector: Sendable {
    public typealias Initializer = @Sendable (Channel) -> EventLoopFuture<Void>
    /// Connects to `target` on `eventLoop`, running `initializer` on the new channel first.
    public var connect:
        @Sendable (_ target: OriginTarget, _ eventLoop: EventLoop, _ connectTimeout: TimeAmount, _ initializer: @escaping Initializer)
            -> EventLoopFuture<Channel>

    public init(
        connect: @escaping @Sendable (OriginTarget, EventLoop, TimeAmount, @escaping Initializer) -> EventLoopFuture<Channel>
    ) {
        self.connect = connect
    }

    public static let sockets = OriginConnector { target, eventLoop, connectTimeout, initializer in
        ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer(initializer)
            .connect(host: target.host, port: target.port)
    }
}

/// One HTTP/1.1 request to an origin and its streamed response. Exactly one of `didEnd` or
/// `didFail` is reported, unless the delegate was detached first. Confined to `eventLoop`.
public final class OriginConnection: @unchecked Sendable {
    public let eventLoop: EventLoop
    public let target: OriginTarget
    private var delegate: OriginConnectionDelegate?
    private var channel: Channel?
    private var state = State.connecting
    private var pending: [HTTPClientRequestPart] = []
    /// Body bytes in `pending`: while connecting, a request body waits here up to `pendingLimit`.
    private var pendingBytes = 0
    private var readingPaused = false
    private var headTimer: Scheduled<Void>?

    private enum State {
        case connecting
        case open
        case finished
    }

    public enum Failure: Error, CustomStringConvertible {
        case closedBeforeEnd
        case closedByGateway
        case headTimeout
        case tlsNotSupported
        public var description: String {
            switch self {
            case .closedBeforeEnd: return "origin closed the connection before the response ended"
            case .closedByGateway: return "closed by the gateway"
            case .headTimeout: return "origin sent no response head in time"
            case .tlsNotSupported: return "https origin without a TLS client context"
            }
        }
    }

    private init(eventLoop: EventLoop, target: OriginTarget, delegate: OriginConnectionDelegate) {
        self.eventLoop = eventLoop
        self.target = target
        self.delegate = delegate
    }

    /// Body bytes that may wait for the connection to open before `isWritable` turns false.
    public static let pendingLimit = 64 << 10

    /// Connects and sends `head`. Send a body with `sendBody` and finish with `endRequest`.
    /// - Parameter headTimeout: fail with `Failure.headTimeout` when the response head has not
    ///   arrived this long after the connection was opened.
    public static func open(
        to target: OriginTarget,
        head: HTTPRequestHead,
        on eventLoop: EventLoop,
        connectTimeout: TimeAmount,
        headTimeout: TimeAmount? = nil,
        tls: TLSClientContext? = nil,
        connector: OriginConnector = .sockets,
        delegate: OriginConnectionDelegate
    ) -> OriginConnection {
        eventLoop.preconditionInEventLoop()
        let connection = OriginConnection(eventLoop: eventLoop, target: target, delegate: delegate)
        connection.pending.append(.head(head))
        if let headTimeout, headTimeout > .zero {
            let bound = NIOLoopBound(connection, eventLoop: eventLoop)
            connection.headTimer = eventLoop.scheduleTask(in: headTimeout) {
                bound.value.fail(Failure.headTimeout)
            }
        }
        let tlsContext: TLSClientContext?
        if target.scheme == .https {
            guard let tls else {
                eventLoop.execute { connection.fail(Failure.tlsNotSupported) }
                return connection
            }
            tlsContext = tls
        } else {
            tlsContext = nil
        }
        // The handler verifies the certificate against this name or IP address, and sends it as
        // SNI only when it is a name (RFC 6066).
        let serverName = target.host
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        connector.connect(target, eventLoop, connectTimeout) { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tlsContext {
                    try channel.pipeline.syncOperations.addHandler(
                        OpenSSLHandler.client(context: tlsContext, serverName: serverName)
                    )
                }
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(OriginResponseHandler(connection: bound.value))
            }
        }
            .whenComplete { result in
                // Always a task of its own: a connector can complete at once (a refused connect,
                // an in-memory channel), and the delegate must not hear from the connection
                // before `open` has returned it.
                eventLoop.execute {
                    let connection = bound.value
                    switch result {
                    case .success(let channel):
                        connection.connected(channel)
                    case .failure(let error):
                        connection.fail(error)
                    }
                }
            }
        return connection
    }

    private func connected(_ channel: Channel) {
        guard self.state == .connecting else {
            channel.close(promise: nil)
            return
        }
        self.state = .open
        self.channel = channel
        if self.readingPaused {
            channel.setOption(.autoRead, value: false).whenFailure { _ in }
        }
        let wasHoldingBack = self.pendingBytes >= Self.pendingLimit
        for part in self.pending {
            channel.write(part, promise: nil)
        }
        self.pending.removeAll()
        self.pendingBytes = 0
        channel.flush()
        if wasHoldingBack {
            self.delegate?.originConnectionWritabilityChanged(self)
        }
    }

    /// Whether the origin takes more request body now: false while the socket's send buffer is
    /// over its high-water mark, or while connecting with `pendingLimit` bytes waiting. A sender
    /// that sees false waits for `originConnectionWritabilityChanged`.
    public var isWritable: Bool {
        switch self.state {
        case .connecting: return self.pendingBytes < Self.pendingLimit
        case .open: return self.channel?.isWritable ?? false
        case .finished: return true
        }
    }

    func writabilityChanged() {
        self.delegate?.originConnectionWritabilityChanged(self)
    }

    public func sendBody(_ body: ByteBuffer) {
        self.send(.body(.byteBuffer(body)))
    }

    public func endRequest() {
        self.send(.end(nil))
    }

    private func send(_ part: HTTPClientRequestPart) {
        switch self.state {
        case .connecting:
            if case .body(.byteBuffer(let buffer)) = part {
                self.pendingBytes += buffer.readableBytes
            }
            self.pending.append(part)
        case .open:
            self.channel?.writeAndFlush(part, promise: nil)
        case .finished:
            break
        }
    }

    /// Stops reading from the origin until `resumeReading` (backpressure from a slow client).
    public func pauseReading() {
        guard !self.readingPaused else { return }
        self.readingPaused = true
        self.channel?.setOption(.autoRead, value: false).whenFailure { _ in }
    }

    public func resumeReading() {
        guard self.readingPaused else { return }
        self.readingPaused = false
        self.channel?.setOption(.autoRead, value: true).whenFailure { _ in }
    }

    /// Hands the connection's reports to another delegate (a stream adopting it).
    public func setDelegate(_ delegate: OriginConnectionDelegate) {
        self.eventLoop.preconditionInEventLoop()
        self.delegate = delegate
    }

    /// Closes the connection; the delegate hears `didFail(closedByGateway)` unless it already heard the end.
    public func close() {
        switch self.state {
        case .connecting:
            self.fail(Failure.closedByGateway)
        case .open:
            self.channel?.close(promise: nil)
        case .finished:
            break
        }
    }

    /// Closes without any further report.
    public func detachAndClose() {
        self.delegate = nil
        self.close()
    }

    // MARK: From the handler

    func receivedHead(_ head: HTTPResponseHead) {
        self.headTimer?.cancel()
        self.headTimer = nil
        self.delegate?.originConnection(self, didReceiveHead: head)
    }

    func receivedBody(_ body: ByteBuffer) {
        self.delegate?.originConnection(self, didReceiveBody: body)
    }

    func readComplete() {
        self.delegate?.originConnectionReadComplete(self)
    }

    func receivedEnd() {
        // The response is complete; this gateway does not reuse origin connections.
        self.finish()?.originConnectionDidEnd(self)
    }

    func fail(_ error: Error) {
        self.finish()?.originConnection(self, didFail: error)
    }

    /// Closes for good; returns the delegate to tell, or nil when it was already finished.
    private func finish() -> OriginConnectionDelegate? {
        guard self.state != .finished else { return nil }
        self.state = .finished
        self.headTimer?.cancel()
        self.headTimer = nil
        let delegate = self.delegate
        self.delegate = nil
        self.channel?.close(promise: nil)
        return delegate
    }
}

/// Passes an origin's response parts to its `OriginConnection`.
final class OriginResponseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let connection: OriginConnection
    private var error: Error?

    init(connection: OriginConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.connection.receivedHead(head)
        case .body(let body):
            self.connection.receivedBody(body)
        case .end:
            self.connection.receivedEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.connection.readComplete()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.connection.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A chunked body cut short, a reset, a malformed response: all end this connection.
        self.error = self.error ?? error
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connection.fail(self.error ?? OriginConnection.Failure.closedBeforeEnd)
        context.fireChannelInactive()
    }
}
