import HTTP2
import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client connection over HTTP/2: each request stream is a `ClientExchange`, served by an
/// `HTTP2StreamResponder`. Admission, the idle timer, byte counts and the access log are the
/// connection core's (`ClientConnection`), as for HTTP/1.1; heartbeats, replay and slow-client
/// bounds are per stream, exactly as over HTTP/1.1. What is HTTP/2's own: streams, GOAWAY, and
/// an access-log line per stream.
final class HTTP2FrontEnd {
    private let shared: GatewayShared
    private let loop: LoopContext
    private let scheme: String
    private let clientAddress: String?
    private var responders: [Int32: HTTP2StreamResponder] = [:]
    var connection: ClientConnection
    private weak var handler: HTTP2ServerHandler?

    init(shared: GatewayShared, loop: LoopContext, scheme: String, clientAddress: String?) {
        self.shared = shared
        self.loop = loop
        self.scheme = scheme
        self.clientAddress = clientAddress
        self.connection = ClientConnection(protocol: .h2, loop: loop)
    }

    /// Adds the HTTP/2 handler for this front end to `channel`'s pipeline.
    static func install(on channel: Channel, shared: GatewayShared, loop: LoopContext, scheme: String) throws {
        let frontEnd = HTTP2FrontEnd(
            shared: shared,
            loop: loop,
            scheme: scheme,
            clientAddress: channel.remoteAddress?.ipAddress
        )
        var configuration = HTTP2ServerConfiguration()
        configuration.maxConcurrentStreams = shared.configuration.h2MaxStreams
        configuration.maxHeaderListSize = shared.configuration.maxRequestHeadSize
        configuration.streamBufferLimit = shared.configuration.clientBuffer
        let handler = HTTP2ServerHandler(configuration: configuration) { stream in
            frontEnd.request(stream)
        }
        frontEnd.handler = handler
        handler.onHeadersRejected = { loop.counters.values.refused[.headTooLarge] += 1 }
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(
            HTTP2ConnectionWatcher(frontEnd: frontEnd, handler: handler, loop: loop, isTLS: scheme == "https")
        )
        frontEnd.admit()
        frontEnd.armIdleTimer()
    }

    /// A refused connection's first request is answered 503/429 (as over HTTP/1.1), then GOAWAY.
    private func admit() {
        _ = self.connection.admit(address: self.clientAddress)
    }

    /// A connection with no stream open for `--request-head-timeout` is closed (GOAWAY), as an
    /// idle HTTP/1.1 connection is: otherwise a client could hold a slot with a bare preface.
    private func armIdleTimer() {
        self.connection.armIdleTimer { [weak self] in
            guard let self, self.responders.isEmpty else { return }
            // HTTP/2 has no 408 to send: the connection just goes.
            self.connection.ended(.idleTimeout)
            self.handler?.beginGracefulShutdown()
        }
    }

    private func request(_ stream: HTTP2ServerStream) {
        let responder = HTTP2StreamResponder(
            stream: stream,
            frontEnd: self,
            eventLoop: self.loop.eventLoop,
            scheme: self.scheme,
            clientAddress: self.clientAddress
        )
        self.connection.requestStarted()
        if let refusal = self.connection.refusal {
            responder.respond(status: refusal.status, body: refusal.body, closeConnection: true)
            self.handler?.beginGracefulShutdown()
            return
        }
        self.responders[stream.streamID] = responder
        let exchange = ClientExchange(shared: self.loop.shared, loop: self.loop, responder: responder)
        responder.exchange = exchange
        exchange.start(stream.head)
    }

    func drainRequested() {
        for responder in self.responders.values {
            responder.exchange?.drainRequested()
        }
    }

    /// Response bytes handed to the connection (DATA payloads), for the access log and metrics.
    func countSent(_ bytes: Int, by responder: HTTP2StreamResponder) {
        responder.bytesSent += bytes
        self.connection.countSent(bytes)
    }

    func streamFinished(_ responder: HTTP2StreamResponder) {
        guard let exchange = self.responders.removeValue(forKey: responder.streamID)?.exchange else { return }
        self.connection.account(exchange)
        self.logStream(responder, exchange)
        if self.responders.isEmpty {
            self.armIdleTimer()
        }
    }

    /// One access-log line per HTTP/2 stream (request), as HTTP/1.1 has one per connection:
    /// many requests share an HTTP/2 connection, and each has its own path, events and end.
    private func logStream(_ responder: HTTP2StreamResponder, _ exchange: ClientExchange) {
        let metadata: Logger.Metadata = [
            "client": "\(self.clientAddress ?? "-")",
            "protocol": "h2",
            "stream_id": .stringConvertible(Int(responder.streamID)),
            "path": "\(exchange.streamPath ?? "-")",
            "target": "\(exchange.target)",
            "duration_ms": .stringConvertible(Int((self.loop.eventLoop.now - responder.startedAt).nanoseconds / 1_000_000)),
            "events": .stringConvertible(exchange.eventsSent),
            "bytes": .stringConvertible(responder.bytesSent),
            "end": "\(exchange.outcome)",
            "end_by": "\(exchange.outcome.party.rawValue)",
        ]
        self.shared.accessLogger.info("stream closed", metadata: metadata)
    }

    func connectionClosed(_ end: HTTP2ConnectionEnd?) {
        for responder in self.responders.values {
            if let exchange = responder.exchange {
                exchange.clientGone()
                self.connection.account(exchange)
                self.logStream(responder, exchange)
            }
        }
        self.responders.removeAll()
        if let end {
            self.connection.ended(Self.outcome(of: end, current: self.connection.outcome))
        }
        self.connection.close()
    }

    /// The HTTP/2 session's end as the connection's outcome. The gateway's own GOAWAY keeps the
    /// outcome that asked for it (a drain, a shutdown, an idle timeout, a refusal).
    static func outcome(of end: HTTP2ConnectionEnd, current: ExchangeOutcome) -> ExchangeOutcome {
        switch end {
        case .gracefulShutdown:
            switch current {
            case .drained, .shutdown, .idleTimeout, .refused: return current
            default: return .shutdown
            }
        case .clientGoAway, .sessionEnded:
            return current == .clientClosed || current == .completed ? .clientEndedSession("\(end)") : current
        case .badPreface, .flood, .protocolError, .channelError, .internalError:
            return end.isClientsDoing ? .clientProtocolError("\(end)") : .internalError("\(end)")
        }
    }
}
