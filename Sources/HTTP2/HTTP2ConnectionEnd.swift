/// Why an HTTP/2 connection ended or is ending: `HTTP2ServerHandler.connectionEnd`, for logs and
/// for the front end's outcome of the connection.
public enum HTTP2ConnectionEnd: Sendable, Equatable, CustomStringConvertible {
    /// The server's GOAWAY (`beginGracefulShutdown`).
    case gracefulShutdown
    /// The client sent GOAWAY with this error code.
    case clientGoAway(errorCode: UInt32)
    /// Neither side wants to read or write any more.
    case sessionEnded
    /// The bytes were not an HTTP/2 connection preface.
    case badPreface
    /// The client sent too many frames of a kind (`detail` says which).
    case flood(String)
    /// The client broke the protocol (nghttp2's words).
    case protocolError(String)
    /// The channel failed (a reset, a TLS error).
    case channelError(String)
    /// nghttp2 could not create the session or send.
    case internalError(String)

    /// The client's doing (it left, flooded or broke the protocol), not the server's.
    public var isClientsDoing: Bool {
        switch self {
        case .gracefulShutdown, .internalError: return false
        case .clientGoAway, .sessionEnded, .badPreface, .flood, .protocolError, .channelError: return true
        }
    }

    public var description: String {
        switch self {
        case .gracefulShutdown: return "graceful shutdown"
        case .clientGoAway(let code): return "client GOAWAY (\(HTTP2ErrorCodeName.name(code)))"
        case .sessionEnded: return "session ended (GOAWAY)"
        case .badPreface: return "not an HTTP/2 client (bad connection preface)"
        case .flood(let detail): return "flood: \(detail)"
        case .protocolError(let detail): return "protocol error: \(detail)"
        case .channelError(let detail): return "channel error: \(detail)"
        case .internalError(let detail): return detail
        }
    }
}
