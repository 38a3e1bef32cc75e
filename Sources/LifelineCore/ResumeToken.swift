/// The unguessable name of a private generation (`Lifeline-Resume: /_lifeline/resume/TOKEN`):
/// 128 bits from the system's CSPRNG (`getrandom`), as 32 hex digits.
public struct ResumeToken: Hashable, Sendable, CustomStringConvertible {
    public let value: String

    public init?(_ value: String) {
        guard value.utf8.count == 32, value.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        self.value = value
    }

    private init(unchecked value: String) { self.value = value }

    /// A new token.
    public static func random() -> ResumeToken {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        let text = String(high, radix: 16).leftPadded(to: 16) + String(low, radix: 16).leftPadded(to: 16)
        return ResumeToken(unchecked: text)
    }

    /// For logs and the status page: enough to tell two apart, not enough to use.
    public var description: String { String(self.value.prefix(6)) + "…" }
}

/// Who may resume a generation: a keyed hash of the `Authorization` and `Cookie` its request
/// carried (or their absence). Nothing of the credentials themselves is kept.
public struct CallerCredentials: Hashable, Sendable {
    private let digest: HeaderDigest

    public init(authorization: String?, cookie: String?) {
        // Each part with a presence mark, so that no two different pairs hash alike.
        let text = (authorization.map { "a" + $0 } ?? "-") + "\u{0}" + (cookie.map { "c" + $0 } ?? "-")
        self.digest = HeaderDigest(text)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - self.count)) + self
    }
}
