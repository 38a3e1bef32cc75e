import NIOHTTP1

/// Headers that describe one connection, not the message: a proxy must not forward them.
public enum HopByHopHeaders {
    static let names: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "proxy-authenticate", "proxy-authorization",
    ]

    /// `headers` without hop-by-hop headers, including those that `Connection` names.
    public static func removing(from headers: HTTPHeaders) -> HTTPHeaders {
        var named = Self.names
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                named.insert(token.trimmingCharacters(in: " \t").lowercased())
            }
        }
        var result = HTTPHeaders()
        result.reserveCapacity(headers.count)
        for (name, value) in headers where !named.contains(name.lowercased()) {
            result.add(name: name, value: value)
        }
        return result
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> Substring {
        var slice = self
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return slice
    }
}

/// The part of an origin's event-stream response head that every subscriber of the stream may be
/// sent (CORS headers and the like). The gateway sets the framing and caching headers itself, and
/// drops `Set-Cookie`: a shared stream must not hand one client's cookie to the others.
public enum SharedResponseHeaders {
    static let owned: Set<String> = [
        "content-type", "content-length", "cache-control", "x-accel-buffering", "set-cookie", "date",
        "lifeline-replay", "content-encoding",
    ]

    /// - Parameter forOneClient: the response goes to the one client whose request it answers
    ///   (a private generation), so its own cookies go with it.
    public static func filter(_ headers: HTTPHeaders, forOneClient: Bool = false) -> [(String, String)] {
        HopByHopHeaders.removing(from: headers)
            .filter { header in
                let name = header.name.lowercased()
                return !Self.owned.contains(name) || (forOneClient && name == "set-cookie")
            }
            .map { ($0.name, $0.value) }
    }
}
