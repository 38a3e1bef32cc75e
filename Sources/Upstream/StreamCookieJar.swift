/// The cookies an origin set on one stream's responses, sent back on that stream's later upstream
/// requests, as a browser reconnecting its EventSource would: origins that keep reconnect state in
/// a cookie then work through the gateway as they do directly. One jar per stream (never shared
/// across stream keys); `Set-Cookie` itself is never repeated to other clients.
///
/// Only for streams whose opening request the browser would have sent cookies with
/// (`isEnabled`; the front end decides, see `ClientRequest.browserSendsCookies`): a browser
/// neither keeps nor sends cookies for a cross-origin `EventSource` without credentials, and
/// neither does the gateway for it.
///
/// Deliberately small: name and value only; `Max-Age` ≤ 0 or an empty value deletes; `Path`,
/// `Domain` and `Expires` are not interpreted (every request of a stream goes to one URL).
struct StreamCookieJar: Sendable, Equatable {
    /// A hostile origin cannot grow a stream's requests without bound.
    static let maxCookies = 32
    static let maxCookieLength = 4096

    /// False: `Set-Cookie` is ignored and nothing is ever added to requests.
    let isEnabled: Bool
    private(set) var cookies: [(name: String, value: String)] = []

    init(isEnabled: Bool = true) {
        self.isEnabled = isEnabled
    }

    static func == (lhs: StreamCookieJar, rhs: StreamCookieJar) -> Bool {
        lhs.isEnabled == rhs.isEnabled && lhs.cookies.elementsEqual(rhs.cookies) { $0.name == $1.name && $0.value == $1.value }
    }

    var isEmpty: Bool { self.cookies.isEmpty }

    /// Takes the `Set-Cookie` lines of one response.
    mutating func store(setCookie lines: [String]) {
        guard self.isEnabled else { return }
        for line in lines {
            let parts = line.split(separator: ";", omittingEmptySubsequences: false)
            guard let pair = parts.first, let equals = pair.firstIndex(of: "=") else { continue }
            let name = String(pair[..<equals].trimmingCharacters(in: " \t"))
            let value = String(pair[pair.index(after: equals)...].trimmingCharacters(in: " \t"))
            guard !name.isEmpty, name.utf8.count + value.utf8.count <= Self.maxCookieLength,
                (name + value).utf8.allSatisfy({ $0 > 0x20 && $0 != 0x7F && $0 != UInt8(ascii: ";") })
                    || value.isEmpty
            else { continue }
            var deletes = value.isEmpty
            for attribute in parts.dropFirst() {
                let trimmed = attribute.trimmingCharacters(in: " \t").lowercased()
                if trimmed.hasPrefix("max-age="), let seconds = Int(trimmed.dropFirst("max-age=".count)), seconds <= 0 {
                    deletes = true
                }
            }
            self.cookies.removeAll { $0.name == name }
            if !deletes && self.cookies.count < Self.maxCookies {
                self.cookies.append((name, value))
            }
        }
    }

    /// The `Cookie` header for a request: the client's own cookies, with the jar's values in
    /// place of any of the same name, then the jar's others.
    func header(merging clientCookies: String?) -> String? {
        guard !self.cookies.isEmpty else { return clientCookies }
        var pairs: [String] = []
        if let clientCookies {
            for crumb in clientCookies.split(separator: ";") {
                let trimmed = String(crumb.trimmingCharacters(in: " \t"))
                let name = trimmed.split(separator: "=", maxSplits: 1).first.map(String.init) ?? trimmed
                if !trimmed.isEmpty, !self.cookies.contains(where: { $0.name == name }) {
                    pairs.append(trimmed)
                }
            }
        }
        pairs += self.cookies.map { "\($0.name)=\($0.value)" }
        return pairs.joined(separator: "; ")
    }
}
