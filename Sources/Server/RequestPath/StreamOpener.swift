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
/// It works from the request by value and holds its client until the client leaves (`clientLeft`)
/// or hears the outcome: the client may leave at any moment (a tab closed while a slow origin
/// opens, an HTTP/2 reset), and the stream it opens is still owed to the clients that wait for it. Confined to its event loop.
final class StreamOpener: OriginConnectionDelegate {
    enum Outcome {
        /// The origin answered with an event stream (or could not be reached: the stream starts
        /// by reconnecting); attach to it.
        case stream(EventStream, creatorResumed: Bool)
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
    /// The client, until it leaves (`clientLeft`) or is told how the opening went. Strong: see
    /// `ClientExchange`.
    private var client: StreamOpenerClient?
    private var connection: OriginConnection?
    /// With a shared store: the stream's history and the claim this opening made on it.
    private var claimed: (history: StreamHistory, claim: HistoryClaim)?
    /// The id the origin connection was opened with.
    private var originResumeID: String?

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
        if let gateway = shared.configuration.sharedGateway, let name = request.key.sharedName, sharing.isShared {
            // Several instances act as one: only the lease's holder opens the origin.
            let history = gateway.store.history(named: name, on: eventLoop)
            history.claim(startFresh: false, nextSequence: 1) { claim in
                opener.claimAnswered(claim, history: history)
            }
        } else {
            opener.openOrigin(resumeID: resumeID)
        }
        return opener
    }

    private func openOrigin(resumeID: String?) {
        var head = self.request.upstreamHead(forStream: true)
        if let resumeID {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: resumeID)
        }
        self.originResumeID = resumeID
        let connection = self.shared.openOrigin(self.request, head: head, on: self.eventLoop, delegate: self)
        connection.endRequest()
        self.connection = connection
    }

    /// The shared store's answer: the owner opens the origin (from the history's last id when it
    /// has one); a follower makes its stream at once; without the store, it is as on its own.
    private func claimAnswered(_ claim: HistoryClaim, history: StreamHistory) {
        self.eventLoop.preconditionInEventLoop()
        self.claimed = (history, claim)
        switch claim {
        case .owner(let token, let position):
            if self.client == nil, self.ticket == nil {
                return history.release(token: token)
            }
            self.openOrigin(resumeID: position.lastEventID ?? self.resumeID)
        case .follower:
            let stream = self.makeStream(adopting: nil, originHead: nil)
            self.reportOpened(stream, creatorResumed: false)
        case .unavailable:
            self.openOrigin(resumeID: self.resumeID)
        }
    }

    private func makeStream(adopting connection: OriginConnection?, originHead: HTTPResponseHead?) -> EventStream {
        StreamFactory(shared: self.shared).makeStream(
            for: self.request,
            ticket: self.ticket,
            sharing: self.sharing,
            resumeID: self.originResumeID,
            adopting: connection,
            originHead: originHead,
            eventLoop: self.eventLoop,
            shared: self.claimed
        )
    }

    /// Whether the opening client's own id went to the origin (its resume is the origin's to
    /// serve, not the buffer's).
    private var creatorResumed: Bool {
        self.originResumeID != nil && self.originResumeID == self.resumeID
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
            let stream = self.makeStream(adopting: connection, originHead: head)
            self.reportOpened(stream, creatorResumed: self.creatorResumed)
            return
        }
        if case .owner(let token, _)? = self.claimed?.claim {
            self.claimed?.history.release(token: token)
        }
        // Not an event stream: this client gets the origin's answer as it is, and no stream is
        // made; the clients that waited make requests of their own.
        if let ticket = self.ticket {
            self.shared.hub.abandon(ticket)
        }
        if let client = self.client {
            self.client = nil
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
        let stream = self.makeStream(adopting: nil, originHead: nil)
        stream.upstreamAttemptFailed(reason: reason)
        self.reportOpened(stream, creatorResumed: self.creatorResumed)
    }

    private func reportOpened(_ stream: EventStream, creatorResumed: Bool) {
        if let client = self.client {
            self.client = nil
            client.streamOpened(.stream(stream, creatorResumed: creatorResumed))
        } else {
            stream.openerWillNotJoin()
        }
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
