import LifelineCore

/// How one exchange (a request and its response) or one client connection ended, and whose
/// doing it was: the client's, the origin's or Lifeline's own (as Pingora tags its errors). Set
/// once where it happens; the access log (`end`, `end_by`), the metrics
/// (`lifeline_exchanges_ended_total{by}`) and the status page read this one value.
enum ExchangeOutcome: Equatable, Sendable, CustomStringConvertible {
    typealias Party = EndingParty

    /// The response went out whole.
    case completed
    /// The gateway answered itself (a 4xx for what the client sent, 429/503 for its limits, a
    /// 502/504 for the origin): whose doing it was is the refusal's.
    case refused(RequestRefusal)
    // The client's doing
    /// The client closed the connection or reset the stream.
    case clientClosed
    /// The client ended an HTTP/2 session (its GOAWAY): the words say how.
    case clientEndedSession(String)
    /// More than `--client-buffer` behind: cut.
    case slowClient
    /// An idle keep-alive connection, or an HTTP/2 connection with no stream for
    /// `--request-head-timeout`.
    case idleTimeout
    /// The connection failed under the client (a reset, a TLS error).
    case connectionError(String)
    /// The client broke HTTP/2 (a flood, a protocol error, not a preface): the words say how.
    case clientProtocolError(String)
    // The origin's doing
    case originFailedMidResponse
    /// The stream ended (an origin's 204, an origin given up on, or the gateway's shutdown).
    case streamEnded(StreamEndReason)
    // Lifeline's own
    case drained
    case shutdown
    /// Something failed inside the gateway (nghttp2 could not make or send its session).
    case internalError(String)

    var party: Party {
        switch self {
        case .completed:
            return .none
        case .refused(let refusal):
            return refusal.party
        case .clientClosed, .clientEndedSession, .slowClient, .idleTimeout, .connectionError, .clientProtocolError:
            return .client
        case .originFailedMidResponse:
            return .origin
        case .streamEnded(let reason):
            switch reason {
            case .originNoContent, .originGaveUp, .originBroke: return .origin
            case .originFinished: return .none
            case .shutdown, .catchUpOverflow: return .lifeline
            }
        case .drained, .shutdown, .internalError:
            return .lifeline
        }
    }

    /// What the access log's `end` says.
    var description: String {
        switch self {
        case .completed: return "response complete"
        case .clientClosed: return "client closed"
        case .slowClient: return "slow client (over --client-buffer)"
        case .refused(let refusal): return refusal.endDescription
        case .idleTimeout: return "idle timeout"
        case .connectionError(let detail): return "error: \(detail)"
        case .clientEndedSession(let detail), .clientProtocolError(let detail), .internalError(let detail): return detail
        case .originFailedMidResponse: return "origin failed mid-response"
        case .streamEnded(let reason): return "stream ended (\(reason))"
        case .drained: return "drained"
        case .shutdown: return "gateway shutdown"
        }
    }
}
