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
    /// Values of the headers the share policy names, in its order (nil for an absent header).
    /// Kept whole so that different credentials can never collide.
    public var headerValues: [String?]

    public init(method: String, origin: String, path: String?, query: String?, headerValues: [String?]) {
        self.method = method
        self.origin = origin
        self.path = path
        self.query = query
        self.headerValues = headerValues
    }

    /// For logs and the status page: credentials appear only as a short hash.
    public var description: String {
        var text = "\(self.method) \(self.origin)\(self.path ?? "")"
        if let query = self.query, !query.isEmpty {
            text += "?\(query)"
        }
        if self.headerValues.contains(where: { $0 != nil }) {
            var hasher = FNV1a()
            for value in self.headerValues {
                hasher.combine(value ?? "\u{0}")
            }
            text += " #" + String(hasher.value >> 32, radix: 16)
        }
        return text
    }
}

/// A stable, non-cryptographic hash for display (Swift's `Hasher` is seeded per process).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func combine(_ string: String) {
        for byte in string.utf8 {
            self.value = (self.value ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        self.value = (self.value ^ 0xff) &* 0x100_0000_01b3
    }
}
