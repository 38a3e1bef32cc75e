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

/// Who may resume a generation: keyed hashes of the `Authorization` and `Cookie` its request
/// carried. Nothing of the credentials themselves is kept.
public struct CallerCredentials: Hashable, Sendable {
    private let authorization: HeaderDigest?
    private let cookie: HeaderDigest?

    public init(authorization: String?, cookie: String?) {
        self.authorization = authorization.map { HeaderDigest("a" + $0) }
        self.cookie = cookie.map { HeaderDigest("c" + $0) }
    }

    /// Whether a request with `other` credentials may join what these started: each credential
    /// these carried must be carried alike. One these did not carry is not asked for: a browser
    /// that got a cookie from the generation's own answer still resumes it.
    public func admits(_ other: CallerCredentials) -> Bool {
        (self.authorization == nil || self.authorization == other.authorization)
            && (self.cookie == nil || self.cookie == other.cookie)
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - self.count)) + self
    }
}
