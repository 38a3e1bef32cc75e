/// Where a route sends its requests: an origin URL such as `http://10.0.0.5:3000/events`.
public struct OriginTarget: Sendable, Hashable, CustomStringConvertible {
    public enum Scheme: String, Sendable {
        case http, https
    }

    public var scheme: Scheme
    public var host: String
    public var port: Int
    /// The path the route's suffix is appended to, as given (a trailing slash is kept); "" for the root.
    public var basePath: String
    /// A query that the route itself carries, merged before the client's.
    public var baseQuery: String?

    public init(scheme: Scheme, host: String, port: Int, basePath: String, baseQuery: String? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
        self.baseQuery = baseQuery
    }

    /// Parses `http://host[:port][/path][?query]`; returns a reason on failure.
    public static func parse(_ text: String) -> Result<OriginTarget, OriginTargetError> {
        let scheme: Scheme
        var rest: Substring
        if text.hasPrefix("http://") {
            scheme = .http
            rest = text.dropFirst("http://".count)
        } else if text.hasPrefix("https://") {
            scheme = .https
            rest = text.dropFirst("https://".count)
        } else {
            return .failure(.init("must start with http:// or https://"))
        }
        if rest.contains("#") {
            return .failure(.init("must not contain a fragment (#)"))
        }
        var query: String?
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if rest.contains("#") {
            return .failure(.init("must not contain a fragment (#)"))
        }
        let authority: Substring
        var path = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = String(rest[slash...])
        } else {
            authority = rest
        }
        if authority.contains("@") {
            return .failure(.init("must not contain user information"))
        }
        var host: Substring
        var port = scheme == .http ? 80 : 443
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(.init("has an unterminated IPv6 address"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let value = Int(after.dropFirst()) else {
                    return .failure(.init("has a bad port"))
                }
                port = value
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let value = Int(authority[authority.index(after: colon)...]) else {
                return .failure(.init("has a bad port"))
            }
            port = value
        } else {
            host = authority
        }
        guard !host.isEmpty else { return .failure(.init("has no host")) }
        guard (1...65535).contains(port) else { return .failure(.init("has a port out of range")) }
        if path == "/" {
            path = ""
        }
        return .success(OriginTarget(scheme: scheme, host: String(host), port: port, basePath: path, baseQuery: query))
    }

    /// `Host` header value for requests to this origin.
    public var hostHeader: String {
        let defaultPort = self.scheme == .http ? 80 : 443
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == defaultPort ? host : "\(host):\(self.port)"
    }

    /// Scheme, host and port: what a stream key records of the origin.
    public var authority: String {
        "\(self.scheme.rawValue)://\(self.hostHeader)"
    }

    public var description: String {
        var text = self.authority + self.basePath
        if let query = self.baseQuery { text += "?\(query)" }
        return text
    }
}

public struct OriginTargetError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
