/// The commands whose replies are push messages in RESP3: SUBSCRIBE and friends. A successful
/// one gets no ordinary reply but one push per channel (`>3 subscribe <channel> <count>`), so
/// the connection cannot match it with the next reply the way it matches other commands.
enum RedisSubscriptionKind: String, CaseIterable, Sendable {
    case subscribe, psubscribe, ssubscribe, unsubscribe, punsubscribe, sunsubscribe

    /// The kind whose name is `name`, ASCII case-insensitively; nil for any other command.
    init?(name: some Collection<UInt8>) {
        // Only names of 9 to 12 bytes can match; others are rejected without a comparison.
        guard (9...12).contains(name.count) else { return nil }
        for kind in Self.allCases where Self.equalsLowercased(name, kind.rawValue) {
            self = kind
            return
        }
        return nil
    }

    /// Whether `push` is this kind's confirmation: a push whose first element is its name.
    func confirms(_ push: RESPToken) -> Bool {
        guard let first = push.array?.first, let name = first.bytes else { return false }
        return name.withUnsafeReadableBytes { Self.equalsLowercased($0, self.rawValue) }
    }

    private static func equalsLowercased(_ bytes: some Collection<UInt8>, _ lowercase: String) -> Bool {
        guard bytes.count == lowercase.utf8.count else { return false }
        return zip(bytes, lowercase.utf8).allSatisfy { byte, expected in
            // ASCII letters: setting bit 5 lowercases them; the names hold nothing else.
            byte | 0x20 == expected
        }
    }
}
