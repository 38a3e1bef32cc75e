/// A host and port to listen on, from `127.0.0.1:8080`, `[::1]:8080`, `:8080` or `localhost:0`.
///
/// The host is kept as written (without brackets); an empty host means every interface, and
/// the caller chooses how to bind that. Port 0 asks the system for a free port.
public struct FlagListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// True for `:PORT`, which listens on every interface.
    public var isAnyHost: Bool { self.host.isEmpty }

    /// The address as it would be written in a flag, with brackets around IPv6 hosts.
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    public static func parse(_ text: String) -> Result<FlagListenAddress, FlagValueError> {
        func failure(_ why: String) -> Result<FlagListenAddress, FlagValueError> {
            .failure(FlagValueError("invalid address \(quoted(text)): \(why)"))
        }
        if text.contains("/") {
            return failure("expected HOST:PORT, not a URL")
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                return failure("missing \"]\" after the IPv6 address")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                return failure("expected :PORT after \"]\"")
            }
            portText = rest.dropFirst()
            guard host.contains(":"),
                host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." || $0 == "%" || $0.isLetter || $0.isNumber })
            else {
                return failure("\(quoted(host)) is not an IPv6 address")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return failure("expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or :8080")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") {
                return failure("IPv6 addresses must be in brackets, e.g. [::1]:8080")
            }
            guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") })
            else {
                return failure("\(quoted(host)) is not a host name or IP address")
            }
        }
        if portText.isEmpty {
            return failure("missing port")
        }
        guard portText.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            return failure("port must be a number, got \(quoted(portText))")
        }
        guard let port = Int(portText), port <= 65535 else {
            return failure("port must be between 0 and 65535, got \(portText)")
        }
        return .success(FlagListenAddress(host: String(host), port: port))
    }
}

extension FlagValueParser where Value == FlagListenAddress {
    /// A listen address; see `FlagListenAddress.parse`.
    public static var listenAddress: FlagValueParser<FlagListenAddress> {
        FlagValueParser(valueName: "HOST:PORT", parse: FlagListenAddress.parse)
    }
}
