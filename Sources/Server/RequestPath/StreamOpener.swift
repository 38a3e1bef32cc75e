import LifelineCore
import NIOCore
import NIOHTTP1
import Upstream

/// Who a `StreamOpener` reports to: the exchange of the client whose request opens the stream.
protocol StreamOpenerClient: AnyObject {
    func streamOpened(_ outcome: StreamOpener.Outcome)
}

/// Opens a new stream: sends the first client's request to the origin and, from the origin's
/// answer, makes the stream and hands it to the hub (or, for a private stream, registers it).
///
/// It works from the request by value and holds its client weakly: the client may leave at any
/// moment (a tab closed while a slow origin opens, an HTTP/2 reset), and the stream it opens is
/// still owed to the clients that wait for it. Confined to its event loop.
final class StreamOpener: OriginConnectionDelegate {
    enum Outcome {
        /// The origin answered with an event stream (or could not be reached: the stream starts
        /// by reconnecting); attach to it.
        case stream(EventStream)
        /// The origin answered with something else: it is the client's response as it is. The
        /// client takes over the connection (its body is still to come).
        case plainResponse(HTTPResponseHead, OriginConnection)
    }

    private let request: ClientRequest
    private let shared: GatewayShared
    private let eventLoop: EventLoop
    /// The hub's right to open the key; nil for a stream of the client's own.
    private let ticket: StreamHub.OpeningTicket?
    private let sharing: StreamSharing
    private let resumeID: String?
    private weak var client: StreamOpenerClient?
    private var connection: OriginConnection?

    private init(
        request: ClientRequest,
        ticket: StreamHub.OpeningTicket?,
        sharing: StreamSharing,
        resumeID: String?,
        shared: GatewayShared,
        eventLoop: EventLoop,
        client: StreamOpenerClient
    ) {
        precondition((ticket != nil) == sharing.isShared, "a shared stream is opened under the hub's ticket")
        self.request = request
        self.ticket = ticket
        self.sharing = sharing
        self.resumeID = resumeID
        self.shared = shared
        self.eventLoop = eventLoop
        self.client = client
    }

    /// Sends `request` to the origin to open a stream (shared under `ticket`, or the client's
    /// own), resuming from `resumeID`.
    static func open(
        _ request: ClientRequest,
        ticket: StreamHub.OpeningTicket?,
        sharing: StreamSharing,
        resumeID: String?,
        shared: GatewayShared,
        eventLoop: EventLoop,
        client: StreamOpenerClient
    ) -> StreamOpener {
        let opener = StreamOpener(
            request: request,
            ticket: ticket,
            sharing: sharing,
            resumeID: resumeID,
            shared: shared,
            eventLoop: eventLoop,
            client: client
        )
        var head = request.upstreamHead(forStream: true)
        if let resumeID {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: resumeID)
        }
        let connection = shared.openOrigin(request, head: head, on: eventLoop, delegate: opener)
        connection.endRequest()
        opener.connection = connection
        return opener
    }

    /// The client left: the opening goes on for the clients that wait, without it.
    func clientLeft() {
        self.client = nil
        if self.ticket == nil {
            // A private stream serves no one else.
            self.connection?.detachAndClose()
            self.connection = nil
        }
    }

    // MARK: OriginConnectionDelegate

    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        guard connection === self.connection else { return }
        self.connection = nil
        if EventStreamHead.isUsable(head) {
            let stream = Self.makeStream(
                for: self.request,
                ticket: self.ticket,
                sharing: self.sharing,
                resumeID: self.resumeID,
                adopting: connection,
                originHead: head,
                shared: self.shared,
                eventLoop: self.eventLoop
            )
            self.reportOpened(stream)
            return
        }
        // Not an event stream: this client gets the origin's answer as it is, and no stream is
        // made; the clients that waited make requests of their own.
        if let ticket = self.ticket {
            self.shared.hub.abandon(ticket)
        }
        if let client = self.client {
            client.streamOpened(.plainResponse(head, connection))
        } else {
            connection.detachAndClose()
        }
    }

    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {}
    func originConnectionReadComplete(_ connection: OriginConnection) {}
    func originConnectionDidEnd(_ connection: OriginConnection) {}

    func originConnection(_ connection: OriginConnection, didFail error: Error) {
        guard connection === self.connection else { return }
        self.connection = nil
        // The origin could not be reached: make the stream anyway and let it reconnect, so that
        // an EventSource opened during an origin restart stays open.
        self.shared.logger.info("origin unreachable for a new stream; retrying", metadata: ["error": "\(error)"])
        let reason = "\(error)"
        if self.ticket == nil && self.client == nil {
            return  // A private stream for a client that has left.
        }
        let stream = Self.makeStream(
            for: self.request,
            ticket: self.ticket,
            sharing: self.sharing,
            resumeID: self.resumeID,
            adopting: nil,
            originHead: nil,
            shared: self.shared,
            eventLoop: self.eventLoop
        )
        stream.upstreamAttemptFailed(reason: reason)
        self.reportOpened(stream)
    }

    private func reportOpened(_ stream: EventStream) {
        if let client = self.client {
            client.streamOpened(.stream(stream))
        } else {
            stream.openerWillNotJoin()
        }
    }

    // MARK: Making the stream

    /// Makes the stream for `request` from the origin's event-stream answer on `connection` (nil:
    /// the origin could not be reached and the stream starts by reconnecting), and hands it to the
    /// hub: promoted under `ticket`, or registered as the client's own.
    static func makeStream(
        for request: ClientRequest,
        ticket: StreamHub.OpeningTicket?,
        sharing: StreamSharing,
        resumeID: String?,
        adopting connection: OriginConnection?,
        originHead: HTTPResponseHead?,
        shared: GatewayShared,
        eventLoop: EventLoop
    ) -> EventStream {
        let configuration = shared.configuration
        let originHeaders = originHead.map { SharedResponseHeaders.filter($0.headers) } ?? []
        let stream = EventStream(
            key: request.key,
            eventLoop: eventLoop,
            configuration: configuration.stream,
            sharing: sharing,
            opening: .init(
                resumeID: resumeID,
                originHeaders: originHeaders,
                variant: originHead.map { StreamVariant(vary: $0.headers["vary"], value: request.headerValue) } ?? .any
            ),
            reporting: .init(
                hub: shared.hub,
                counters: shared.metrics.counters(for: eventLoop),
                displayPath: request.displayPath,
                logger: shared.logger
            )
        )
        let session = UpstreamSession(
            target: request.match.route.origin,
            requestHead: request.upstreamHead(forStream: true),
            resumeID: resumeID,
            eventLoop: eventLoop,
            configuration: configuration.upstream,
            keepsOriginCookies: request.sendsCookies,
            logger: shared.logger
        )
        stream.start(upstream: session)
        var waiting = 0
        if let ticket {
            waiting = shared.hub.promote(ticket, to: stream)
        } else {
            shared.hub.registerPrivate(stream)
        }
        // Before the upstream can deliver: the first events may come with the head.
        stream.expectOpeners(1 + waiting)
        session.start(delegate: stream, adopting: connection, setCookies: originHead?.headers["set-cookie"] ?? [])
        return stream
    }
}

extension GatewayShared {
    /// Opens a connection to `request`'s origin with the gateway's timeouts, TLS and connector.
    func openOrigin(
        _ request: ClientRequest,
        head: HTTPRequestHead,
        on eventLoop: EventLoop,
        delegate: OriginConnectionDelegate
    ) -> OriginConnection {
        let upstream = self.configuration.upstream
        return OriginConnection.open(
            to: request.match.route.origin,
            head: head,
            on: eventLoop,
            connectTimeout: upstream.connectTimeout,
            headTimeout: upstream.headTimeout,
            tls: upstream.tls,
            connector: upstream.connector,
            delegate: delegate
        )
    }
}
