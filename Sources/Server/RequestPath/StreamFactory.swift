import LifelineCore
import NIOCore
import NIOHTTP1
import Upstream

/// Puts a stream together for a request: its configuration and reporting, its origin session,
/// and, when several instances share a store (`--redis`), its shared history. The one place that
/// does, for the opener and for a plain request whose answer turned out to be an event stream.
struct StreamFactory {
    let shared: GatewayShared

    /// Makes the stream for `request` from the origin's event-stream answer on `connection` (nil:
    /// none yet — the origin could not be reached, or another instance owns the stream), and
    /// hands it to the hub: promoted under `ticket`, or registered as the client's own.
    ///
    /// - Parameter sharedHistory: the stream's shared history and the claim its opening made.
    func makeStream(
        for request: ClientRequest,
        ticket: StreamHub.OpeningTicket?,
        sharing: StreamSharing,
        resumeID: String?,
        adopting connection: OriginConnection?,
        originHead: HTTPResponseHead?,
        eventLoop: EventLoop,
        shared sharedHistory: (history: StreamHistory, claim: HistoryClaim)? = nil
    ) -> EventStream {
        let shared = self.shared
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
        func session(resumeID: String?) -> UpstreamSession {
            UpstreamSession(
                target: request.match.route.origin,
                requestHead: request.upstreamHead(forStream: true),
                resumeID: resumeID,
                eventLoop: eventLoop,
                configuration: configuration.upstream,
                keepsOriginCookies: request.sendsCookies,
                logger: shared.logger
            )
        }
        let setCookies = originHead?.headers["set-cookie"] ?? []
        var waiting = 0
        if let ticket {
            waiting = shared.hub.promote(ticket, to: stream)
        } else {
            shared.hub.registerPrivate(stream)
        }
        // Before the upstream can deliver: the first events may come with the head.
        stream.expectOpeners(1 + waiting)

        if let sharedHistory, let gateway = configuration.sharedGateway {
            // The stream decides when to read the origin (as the owner, or on its own while the
            // store is down); the opener's connection serves the first such read if it was opened
            // from the same id.
            let pending = PendingOrigin(connection: connection, resumeID: resumeID, setCookies: setCookies)
            stream.start(shared: .init(history: sharedHistory.history, claim: sharedHistory.claim, lease: gateway.lease) { resumeID, stream in
                let upstream = session(resumeID: resumeID)
                let adopted = pending.take(forResumeID: resumeID)
                upstream.start(delegate: stream, adopting: adopted?.connection, setCookies: adopted?.setCookies ?? [])
                return upstream
            })
            pending.closeUnused()
            return stream
        }
        let upstream = session(resumeID: resumeID)
        stream.start(upstream: upstream)
        upstream.start(delegate: stream, adopting: connection, setCookies: setCookies)
        return stream
    }
}

extension StreamFactory {
    /// Makes the private generation for `request` (not a shared GET) from the origin's
    /// event-stream answer on `connection`: registered as its client's own, fed by that one
    /// response, never requested again; kept in the shared store too, with one.
    func makeGeneration(for request: ClientRequest, adopting connection: OriginConnection, originHead: HTTPResponseHead,
                        eventLoop: EventLoop) -> EventStream {
        let shared = self.shared
        // Resumable by its caller alone: the token names it, the credentials bind it.
        let token = ResumeToken.random()
        var headers = SharedResponseHeaders.filter(originHead.headers, forOneClient: true)
        headers.append(("Lifeline-Resume", RequestDecision.resumePrefix + token.value))
        let caller = CallerHeaders(of: request.head)
        let stream = self.makeGenerationStream(token, startedBy: request, caller: caller, responseHeaders: headers,
                                               displayPath: request.displayPath, eventLoop: eventLoop)
        if let idempotencyKey = request.idempotencyKey {
            shared.idempotency.answered(idempotencyKey, with: stream)
        }
        if let archive = shared.configuration.sharedGateway?.archive {
            let facts = ArchivedGenerationFacts(
                caller: caller, responseHeaders: headers, displayPath: request.displayPath,
                routePrefix: request.match.route.prefix, method: request.head.method.rawValue)
            stream.record(to: archive.record(token, facts, on: eventLoop))
        }
        let feed = GenerationFeed(eventLoop: eventLoop, maxEventSize: shared.configuration.upstream.maxEventSize,
                                  logger: shared.logger)
        stream.start(upstream: feed)
        shared.hub.registerPrivate(stream)
        stream.expectOpeners(1)
        feed.start(delegate: stream, adopting: connection)
        return stream
    }

    /// Makes this instance's copy of a generation the shared store keeps (another instance ran
    /// it, or this one before a restart), for a resume that arrived here: what is stored, then
    /// the rest as it is stored.
    func makeArchivedGeneration(_ token: ResumeToken, _ generation: ArchivedGeneration, startedBy request: ClientRequest,
                                eventLoop: EventLoop) -> EventStream {
        let stream = self.makeGenerationStream(
            token, startedBy: request, caller: generation.facts.caller, responseHeaders: generation.facts.responseHeaders,
            displayPath: generation.facts.displayPath, eventLoop: eventLoop)
        let archive = self.shared.configuration.sharedGateway?.archive
        stream.start(archived: .init(generation: generation) { after, stream in
            guard let archive else { preconditionFailure("an archived generation without an archive") }
            return archive.follow(token, after: after, on: eventLoop, delegate: stream)
        })
        self.shared.hub.registerPrivate(stream)
        return stream
    }

    /// A private generation's stream, registered under its token for its caller's resumes.
    private func makeGenerationStream(_ token: ResumeToken, startedBy request: ClientRequest, caller: CallerHeaders,
                                      responseHeaders: [(String, String)], displayPath: String,
                                      eventLoop: EventLoop) -> EventStream {
        let shared = self.shared
        let registry = shared.generations
        let idempotency = shared.idempotency
        let idempotencyKey = request.idempotencyKey
        let stream = EventStream(
            key: request.key,
            eventLoop: eventLoop,
            configuration: shared.configuration.stream,
            sharing: .privateGeneration,
            opening: .init(originHeaders: responseHeaders),
            reporting: .init(
                hub: shared.hub,
                counters: shared.metrics.counters(for: eventLoop),
                displayPath: displayPath,
                logger: shared.logger,
                onEnd: {
                    registry.remove(token)
                    if let idempotencyKey { idempotency.forget(idempotencyKey) }
                },
                onComplete: { [limit = shared.configuration.privateStreamsMemory] bytes in
                    registry.generationEnded(token, keeping: bytes, limit: limit)
                }
            )
        )
        registry.register(.init(stream: stream, credentials: CallerCredentials(caller), request: request), as: token)
        return stream
    }
}

/// The opener's origin connection, until the stream's first read of the origin takes it.
/// Confined to the stream's loop.
private final class PendingOrigin {
    private var connection: OriginConnection?
    private let resumeID: String?
    private let setCookies: [String]

    init(connection: OriginConnection?, resumeID: String?, setCookies: [String]) {
        self.connection = connection
        self.resumeID = resumeID
        self.setCookies = setCookies
    }

    func take(forResumeID resumeID: String?) -> (connection: OriginConnection, setCookies: [String])? {
        guard let connection = self.connection else { return nil }
        self.connection = nil
        guard resumeID == self.resumeID else {
            connection.detachAndClose()
            return nil
        }
        return (connection, self.setCookies)
    }

    /// The stream did not read the origin at once (it follows the history): the connection goes.
    func closeUnused() {
        self.connection?.detachAndClose()
        self.connection = nil
    }
}
