import Upstream

/// A path prefix and the origin it is served from (`--route=/events=http://10.0.0.5:3000/events`).
public struct Route: Sendable, Hashable, CustomStringConvertible {
    public var prefix: String
    public var origin: OriginTarget

    public init(prefix: String, origin: OriginTarget) {
        self.prefix = prefix
        self.origin = origin
    }

    /// Parses `PREFIX=URL`.
    public static func parse(_ text: String) -> Result<Route, RouteError> {
        guard let equals = text.firstIndex(of: "=") else {
            return .failure(RouteError("expected PREFIX=URL, e.g. /events=http://127.0.0.1:3000/events"))
        }
        let prefix = String(text[..<equals])
        guard prefix.hasPrefix("/") else {
            return .failure(RouteError("the prefix \"\(prefix)\" must start with /"))
        }
        switch OriginTarget.parse(String(text[text.index(after: equals)...])) {
        case .success(let origin):
            return .success(Route(prefix: prefix, origin: origin))
        case .failure(let error):
            return .failure(RouteError("the origin URL \(error)"))
        }
    }

    public var description: String { "\(self.prefix)=\(self.origin)" }
}

public struct RouteError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Picks the route for a request path: the longest matching prefix wins, as a string prefix
/// (like nginx's prefix locations).
public struct Router: Sendable {
    /// Longest prefix first.
    public let routes: [Route]

    public init(routes: [Route]) {
        // For equal prefixes the route given last wins (later flags win).
        var byPrefix: [String: Route] = [:]
        for route in routes {
            byPrefix[route.prefix] = route
        }
        self.routes = byPrefix.values.sorted { $0.prefix.utf8.count > $1.prefix.utf8.count }
    }

    public struct Match: Sendable {
        public var route: Route
        /// The origin path: the route's base path plus what follows the prefix.
        public var upstreamPath: String
    }

    /// - Parameter path: the request path without the query.
    public func match(path: String) -> Match? {
        for route in self.routes where path.hasPrefix(route.prefix) {
            var suffix = Substring(path.dropFirst(route.prefix.count))
            let base = route.origin.basePath
            // The suffix replaces the prefix. A slash that ended the prefix is kept between the
            // base path and the suffix (`/=http://o/root` serves `/a` from `/root/a`), and a
            // doubled slash at the seam is folded; the root path is never empty.
            if base.hasSuffix("/") && suffix.hasPrefix("/") {
                suffix = suffix.dropFirst()
            }
            var upstreamPath = base
            if route.prefix.hasSuffix("/"), !base.isEmpty, !base.hasSuffix("/"), !suffix.isEmpty {
                upstreamPath += "/"
            }
            upstreamPath += suffix
            if !upstreamPath.hasPrefix("/") {
                upstreamPath = "/" + upstreamPath
            }
            return Match(route: route, upstreamPath: upstreamPath)
        }
        return nil
    }
}
