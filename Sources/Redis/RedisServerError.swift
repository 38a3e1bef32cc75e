/// An error reply from the server (`-ERR ...` or a bulk error), e.g. "WRONGTYPE Operation
/// against a key holding the wrong kind of value".
public struct RedisServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The whole error text, code first.
    public var message: String

    public init(message: String) {
        self.message = message
    }

    /// The first word of the message, by convention an upper-case code: "ERR", "WRONGTYPE",
    /// "NOSCRIPT", "MOVED", "ASK", "NOAUTH", "WRONGPASS", "NOPERM", "BUSYGROUP"...
    public var code: Substring {
        self.message.prefix { $0 != " " }
    }

    public var description: String { "Redis: \(self.message)" }
}
