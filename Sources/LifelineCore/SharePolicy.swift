/// Which parts of a request decide whether clients share a stream (`--share-by`).
public struct SharePolicy: Sendable, Hashable {
    public var path: Bool
    public var query: Bool
    /// Header names (lowercased) whose values are part of the key.
    public var headers: [String]

    public init(path: Bool = true, query: Bool = true, headers: [String] = ["authorization", "cookie", "origin"]) {
        self.path = path
        self.query = query
        self.headers = headers.map { $0.lowercased() }
    }

    /// The default: path, query, the client's credentials, so that clients with different
    /// credentials never share, and `Origin`, so that each site gets the CORS headers its origin
    /// made for it.
    public static let `default` = SharePolicy()

    /// Parses `path,query,header:NAME,...`; a bad item is a failure that names it.
    public static func parse(_ text: String) -> Result<SharePolicy, ShareByError> {
        var policy = SharePolicy(path: false, query: false, headers: [])
        for rawItem in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = rawItem.trimmingASCIISpaces()
            switch item.lowercased() {
            case "path": policy.path = true
            case "query": policy.query = true
            case "authorization": policy.headers.append("authorization")
            case "cookie": policy.headers.append("cookie")
            case "origin": policy.headers.append("origin")
            default:
                let lowered = item.lowercased()
                let name = lowered.dropFirst("header:".count).trimmingASCIISpaces()
                let isToken = !name.isEmpty && name.utf8.allSatisfy { byte in
                    (byte >= 0x21 && byte <= 0x7E) && !"\"(),/:;<=>?@[\\]{}".utf8.contains(byte)
                }
                if lowered.hasPrefix("header:"), isToken {
                    policy.headers.append(name)
                } else {
                    return .failure(ShareByError(item: item))
                }
            }
        }
        return .success(policy)
    }

    public func key(
        method: String,
        origin: String,
        path: String,
        query: String?,
        header: (String) -> String?,
        namer: SharedStreamNamer? = nil
    ) -> StreamKey {
        let headerValues = self.headers.map { header($0) }
        var key = StreamKey(
            method: method,
            origin: origin,
            path: self.path ? path : nil,
            query: self.query ? (query ?? "") : nil,
            headerValues: headerValues
        )
        key.sharedName = namer?.name(method: method, origin: origin, path: key.path, query: key.query, headerValues: headerValues)
        return key
    }
}

public struct ShareByError: Error, CustomStringConvertible, Sendable {
    public var item: String
    public var description: String {
        "unknown item \"\(self.item)\" (expected path, query, authorization, cookie, origin or header:NAME)"
    }
}

extension StringProtocol {
    public func trimmingASCIISpaces() -> String {
        var slice = Substring(self)
        while slice.first == " " || slice.first == "\t" { slice = slice.dropFirst() }
        while slice.last == " " || slice.last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
