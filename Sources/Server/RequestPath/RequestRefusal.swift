import LifelineCore
import NIOHTTP1

/// Why the gateway answered a request or a connection itself instead of serving it: one type for
/// every such answer, with its status, its body, what it does to the connection, its access-log
/// text and its metric label (`lifeline_requests_refused_total{reason}`).
enum RequestRefusal: Error, Equatable, Sendable {
    // What the client sent
    /// Not origin-form or absolute-form, or a path that climbs above the root.
    case badTarget
    /// HTTP/1.1 without `Host`, or more than one `Host`.
    case badHost
    /// A header whose name is not a token or whose value holds a control character: it could
    /// not be sent on to an origin (RFC 9110 §5.1, §5.5).
    case badHeader
    /// The request did not parse.
    case malformed
    case noRoute(path: String)
    /// A resume (`/_lifeline/resume/TOKEN`) of a generation that is not kept, or not the caller's:
    /// the same answer either way, so that it tells nothing about other callers' tokens.
    case unknownResume
    /// `Idempotency-Key` reused with another body (IETF draft-ietf-httpapi-idempotency-key-header: 422).
    case idempotencyKeyReused
    /// `Idempotency-Key` of a request whose answer has not come yet (the draft's 409).
    case idempotencyKeyInProgress
    /// A private generation already has its most readers (`429`).
    case tooManyResumes
    /// The token is not known here and the shared store of kept generations (`--redis`) could
    /// not be asked (`503`: worth retrying).
    case resumeStoreUnavailable
    /// A request head over `--max-request-head`.
    case headTooLarge
    /// No complete request head within `--request-head-timeout`.
    case headTimeout
    // Lifeline's limits
    /// Over `--max-clients`.
    case tooManyClients
    /// Over `--max-clients-per-ip`.
    case tooManyFromAddress
    // The origin's
    /// The origin could not be reached for a plain request.
    case originUnreachable
    /// The origin sent no response head in time for a plain request.
    case originTimeout

    var status: HTTPResponseStatus {
        switch self {
        case .badTarget, .badHost, .badHeader, .malformed: return .badRequest
        case .noRoute, .unknownResume: return .notFound
        case .idempotencyKeyReused: return .unprocessableEntity
        case .idempotencyKeyInProgress: return .conflict
        case .tooManyResumes: return .tooManyRequests
        case .headTooLarge: return .init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large")
        case .headTimeout: return .requestTimeout
        case .tooManyClients, .resumeStoreUnavailable: return .serviceUnavailable
        case .tooManyFromAddress: return .tooManyRequests
        case .originUnreachable: return .badGateway
        case .originTimeout: return .gatewayTimeout
        }
    }

    var body: String {
        switch self {
        case .badTarget: return "bad request target\n"
        case .badHost: return "missing or repeated Host header\n"
        case .badHeader: return "malformed header field\n"
        case .malformed: return "bad request\n"
        case .noRoute(let path): return "no route for \(path)\n"
        case .unknownResume: return "no such generation\n"
        case .idempotencyKeyReused: return "Idempotency-Key already used with another request body\n"
        case .idempotencyKeyInProgress: return "a request with this Idempotency-Key is still waiting for its answer\n"
        case .tooManyResumes: return "too many readers of this generation\n"
        case .resumeStoreUnavailable: return "the store of kept generations is unreachable; try again\n"
        case .headTooLarge: return "request head too large\n"
        case .headTimeout: return "request head timeout\n"
        case .tooManyClients: return "too many clients\n"
        case .tooManyFromAddress: return "too many connections from your address\n"
        case .originUnreachable: return "origin unreachable\n"
        case .originTimeout: return "origin did not answer in time\n"
        }
    }

    /// A request the gateway cannot make sense of may leave the connection out of step; a
    /// connection over a limit is not kept.
    var closesConnection: Bool {
        switch self {
        case .badTarget, .badHost, .badHeader, .malformed, .headTooLarge, .headTimeout, .tooManyClients, .tooManyFromAddress:
            return true
        case .noRoute, .unknownResume, .idempotencyKeyReused, .idempotencyKeyInProgress, .tooManyResumes, .originUnreachable,
             .originTimeout, .resumeStoreUnavailable:
            return false
        }
    }

    /// Whose doing it was.
    var party: ExchangeOutcome.Party {
        switch self {
        case .badTarget, .badHost, .badHeader, .malformed, .noRoute, .unknownResume, .idempotencyKeyReused,
             .idempotencyKeyInProgress, .tooManyResumes, .headTooLarge, .headTimeout: return .client
        case .tooManyClients, .tooManyFromAddress, .resumeStoreUnavailable: return .lifeline
        case .originUnreachable, .originTimeout: return .origin
        }
    }

    /// What the access log's `end` says.
    var endDescription: String {
        switch self {
        case .badTarget: return "bad request target (400)"
        case .badHost: return "bad Host (400)"
        case .badHeader: return "malformed header field (400)"
        case .malformed: return "bad request (400)"
        case .noRoute: return "no route (404)"
        case .unknownResume: return "unknown resume (404)"
        case .idempotencyKeyReused: return "Idempotency-Key reused with another body (422)"
        case .idempotencyKeyInProgress: return "Idempotency-Key in progress (409)"
        case .tooManyResumes: return "too many readers (429)"
        case .resumeStoreUnavailable: return "resume store unavailable (503)"
        case .headTooLarge: return "request head too large (431)"
        case .headTimeout: return "request head timeout (408)"
        case .tooManyClients, .tooManyFromAddress: return "refused (\(self.status.code))"
        case .originUnreachable: return "origin unreachable (502)"
        case .originTimeout: return "origin timeout (504)"
        }
    }

    /// The metric label it is counted under.
    var reason: RefusalReason {
        switch self {
        case .badTarget, .badHost, .badHeader, .malformed, .idempotencyKeyReused, .idempotencyKeyInProgress: return .badRequest
        case .noRoute, .unknownResume: return .noRoute
        case .tooManyResumes: return .tooManyResumes
        case .resumeStoreUnavailable: return .resumeStoreUnavailable
        case .headTooLarge: return .headTooLarge
        case .headTimeout: return .requestTimeout
        case .tooManyClients: return .tooManyClients
        case .tooManyFromAddress: return .tooManyFromAddress
        case .originUnreachable: return .originUnreachable
        case .originTimeout: return .originTimeout
        }
    }
}
