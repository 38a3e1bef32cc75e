import LifelineCore
import NIOHTTP1

/// What the gateway does with a request, decided from the parsed request and what the hub
/// answered: pure functions, no channels, no loops. `ClientExchange` carries the steps out.
enum RequestDecision {
    /// The first decision, once the head is read.
    enum Dispatch {
        /// The gateway's own browser client, whatever the routes say.
        case clientScript(ClientScript)
        /// Answered by the gateway (400, 404).
        case refuse(RequestRefusal)
        /// A stream subscription: join, wait for or open the stream for the request's key.
        case stream(ClientRequest)
        /// A plain request, proxied as it is (its answer may still turn out to be a stream).
        case proxy(ClientRequest)
        /// A resume of a private generation (`GET /_lifeline/resume/TOKEN`); nil: not a token.
        case resume(ResumeToken?)
    }

    /// Where the resumes of private generations are served, before any route.
    static let resumePrefix = "/_lifeline/resume/"

    /// - Parameters:
    ///   - parsed: the request as `ClientRequest.parse` made it, or why it could not.
    ///   - clientScriptPath: `--client-script-path`, nil when off.
    ///   - hasStream: whether a stream exists for a key (asked only for a GET without
    ///     `Accept: text/event-stream`, as `curl -N` sends).
    static func dispatch(
        _ head: HTTPRequestHead,
        parsed: Result<ClientRequest, RequestRefusal>,
        clientScriptPath: String?,
        hasStream: (StreamKey) -> Bool
    ) -> Dispatch {
        if let scriptPath = clientScriptPath {
            let path = ClientRequest.split(uri: head.uri).path
            if path == scriptPath {
                return .clientScript(.embedded)
            }
            if path.hasSuffix(".mjs"), path == ClientScript.modulePath(forScriptPath: scriptPath) {
                return .clientScript(.embeddedModule)
            }
        }
        if head.method == .GET {
            let path = ClientRequest.split(uri: head.uri).path
            if path.hasPrefix(Self.resumePrefix) {
                return .resume(ResumeToken(String(path.dropFirst(Self.resumePrefix.count))))
            }
        }
        switch parsed {
        case .failure(let refusal):
            return .refuse(refusal)
        case .success(let request):
            // A GET on an unshared route is the client's own request, like a POST: proxied, and
            // a private generation if answered with an event stream.
            if head.method == .GET, !request.isUnshared, request.wantsEvents || hasStream(request.key) {
                return .stream(request)
            }
            return .proxy(request)
        }
    }

    /// The next step of a stream subscription.
    enum StreamStep {
        /// Attach to this stream.
        case attach(EventStream, waitedForOpening: Bool)
        /// Another client is opening the stream; the hub calls back.
        case waitForOpening
        /// Send the request to the origin to open a stream: the shared one under `ticket`, or
        /// one of the client's own (`sharing` says why), resuming from `resumeID`.
        case open(StreamHub.OpeningTicket?, StreamSharing, resumeID: String?)
    }

    /// After the hub's answer for the request's key.
    static func afterLookup(
        _ request: ClientRequest,
        _ lookup: StreamHub.Lookup,
        replayMiss: StreamConfiguration.ReplayMissPolicy
    ) -> StreamStep {
        switch lookup {
        case .stream(let stream):
            return self.onStream(request, stream, waitedForOpening: false)
        case .wait:
            return .waitForOpening
        case .open(let ticket):
            // The client's id goes to the origin, unless misses join live.
            return .open(ticket, .shared, resumeID: replayMiss == .upstream ? request.lastEventID : nil)
        }
    }

    /// A stream for the key exists (or was opened while the client waited): attach, unless the
    /// origin's head for it does not fit this client's request (`Vary`).
    static func onStream(_ request: ClientRequest, _ stream: EventStream, waitedForOpening: Bool) -> StreamStep {
        guard stream.variant.fits(request.headerValue) else {
            return .open(nil, .varyMismatch, resumeID: request.lastEventID)
        }
        return .attach(stream, waitedForOpening: waitedForOpening)
    }

    /// The stream did not take the subscriber. Nil: it ended first; look the key up again.
    static func afterRefusal(_ request: ClientRequest, _ refusal: StreamRefusal) -> StreamStep? {
        switch refusal {
        case .ended, .notHeld, .busy:
            // (`busy` comes only from private generations, which a joining request answers itself.)
            return nil
        case .needsCatchUp(let lastEventID):
            // A stream of its own from its id, until it reaches what the shared stream holds.
            return .open(nil, .catchUp, resumeID: lastEventID)
        }
    }
}
