/// What ends a connection, or keeps one from being made, apart from I/O errors (which come as
/// NIO's and the TLS module's own: `NIOConnectionError`, `ChannelError.connectTimeout`,
/// `TLSError`...).
public enum RedisConnectionError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The connection is closed: by `close()`, by the server, or after an I/O error. Pending
    /// commands fail with this when it closes (unless `protocolError` says more), and every
    /// command sent afterwards.
    case closed
    /// The server sent bytes that are not RESP3 (or over the parser's limits). The connection
    /// was closed; pending commands and a pending handshake fail with this.
    case protocolError(RESPParsingError)
    /// The server sent a reply when no command was waiting for one. The connection was closed.
    case unexpectedReply
    /// The server refused the handshake (`HELLO 3` with `AUTH` and `SETNAME`, then `SELECT`):
    /// WRONGPASS, NOPERM, NOPROTO, or "unknown command" from a server older than Redis 6.
    case handshakeRejected(RedisServerError)
    /// The server answered the handshake with something that is neither the expected reply nor
    /// an error (HELLO must give a map, SELECT "OK").
    case unexpectedHandshakeReply(String)

    public var description: String {
        switch self {
        case .closed: return "Redis connection closed"
        case .protocolError(let error): return "Redis protocol error: \(error)"
        case .unexpectedReply: return "Redis sent a reply nobody asked for"
        case .handshakeRejected(let error): return "Redis refused the handshake: \(error.message)"
        case .unexpectedHandshakeReply(let reply): return "unexpected reply to the Redis handshake: \(reply)"
        }
    }
}
