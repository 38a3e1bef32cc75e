/// What makes two client requests the same stream: they are served by one upstream connection,
/// one replay buffer and one encoded copy of each event.
public struct StreamKey: Hashable, Sendable, CustomStringConvertible {
    public var method: String
    /// Scheme, host and port of the origin.
    public var origin: String
    /// The upstream path, when the share policy includes it.
    public var path: String?
    /// The upstream query (without the resume parameter), when the share policy includes it.
    public var query: String?
    /// Digests of the headers the share policy names, in its order (nil for an absent header).
    /// Credentials are not kept in the key, only a 128-bit keyed hash of them: two clients
    /// share a stream only when their values are equal.
    public var headerDigests: [HeaderDigest?]
    /// The stream's name in a shared store (`--redis`): a keyed hash of the same parts with the
    /// instances' shared secret; nil without a store.
    public var sharedName: SharedStreamName?

    public init(method: String, origin: String, path: String?, query: String?, headerValues: [String?]) {
        self.method = method
        self.origin = origin
        self.path = path
        self.query = query
        self.headerDigests = headerValues.map { $0.map(HeaderDigest.init) }
    }

    /// The path and the query's names, its values masked: query strings often carry tokens
    /// (EventSource cannot send headers). For the status page and the access log.
    public var displayPath: String {
        var text = self.path ?? "/"
        if let query = self.query, !query.isEmpty {
            text += "?" + Self.maskedQuery(query)
        }
        return text
    }

    /// The query's parameter names, each value shown as `…`.
    public static func maskedQuery(_ query: String) -> String {
        let names = query.split(separator: "&").map { $0.split(separator: "=", maxSplits: 1).first ?? "" }
        return names.map { "\($0)=…" }.joined(separator: "&")
    }

    /// For logs and the status page: credentials appear only as a short hash.
    public var description: String {
        var text = "\(self.method) \(self.origin)\(self.path ?? "")"
        if let query = self.query, !query.isEmpty {
            text += "?" + Self.maskedQuery(query)
        }
        if let digest = self.headerDigests.lazy.compactMap({ $0 }).first {
            // A short tag so that log lines of one client's stream can be told apart.
            text += " #" + String(digest.high >> 40, radix: 16)
        }
        return text
    }
}

/// A 128-bit hash of a header value, keyed by a secret of this process (Swift's `Hasher` seed),
/// so that nobody can make two credentials collide on purpose.
public struct HeaderDigest: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    init(_ value: String) {
        var first = Hasher()
        first.combine(0x6c69_6665 as UInt64)
        first.combine(value)
        var second = Hasher()
        second.combine(0x6c69_6e65 as UInt64)
        second.combine(value)
        self.high = UInt64(bitPattern: Int64(first.finalize()))
        self.low = UInt64(bitPattern: Int64(second.finalize()))
    }
}
