import LifelineCore
import NIOHTTP1
import Upstream

/// What the front ends know of their client, copied by value into everything that serves it, so
/// that nothing needs a reference to the connection to build an origin request.
struct ClientFacts: Sendable {
    /// The client's IP address, for `X-Forwarded-For` and per-address limits.
    var address: String?
    /// `http` or `https`, for `X-Forwarded-Proto`.
    var scheme: String
}

/// One client request, parsed and validated at the edge: the route, the stream key and a sane
/// `Last-Event-ID`. A pure value: what follows (opening or joining a stream, proxying) works from
/// it and never from the raw request again.
struct ClientRequest: Sendable {
    var head: HTTPRequestHead
    var client: ClientFacts
    var match: Router.Match
    /// The query for the origin (the route's own, then the client's without the resume parameter).
    var upstreamQuery: String?
    /// `Last-Event-ID` from the header or the resume parameter, when it is one an origin can be sent.
    var lastEventID: String?
    /// The client sent a `Last-Event-ID` that was not sane (control characters, too long): it is
    /// treated as absent.
    var rejectedLastEventID: Bool
    var key: StreamKey
    /// `Accept: text/event-stream` (what EventSource sends).
    var wantsEvents: Bool
    /// The route does not share streams (`--unshared-route`): this client gets its own.
    var isUnshared: Bool
    /// The path as the client asked for it (normalized), with its query's values masked: what
    /// the status page and the access log show.
    var displayPath: String
    /// A browser would send cookies with this request (and keep the ones its answer sets): the
    /// stream's upstream reconnects may then repeat the cookies the origin set.
    var sendsCookies: Bool
    /// The request's `Idempotency-Key`, once the gateway sends it to the origin under it.
    var idempotencyKey: IdempotencyRegistry.Key? = nil
    /// The request joins an existing private generation (a resume, an idempotent retry): if that
    /// is gone, the answer is 404, never a new stream.
    var joinsGeneration = false

    /// The longest `Last-Event-ID` taken from a client. Origins' ids are short; a longer one is an
    /// abuse of the header that would be repeated in every origin request of a stream.
    static let maxLastEventIDLength = 1024

    /// Validates `head` and resolves its route and stream key; a refusal is answered by the gateway.
    static func parse(
        _ head: HTTPRequestHead,
        client: ClientFacts,
        router: Router,
        configuration: GatewayConfiguration
    ) -> Result<ClientRequest, RequestRefusal> {
        var head = head
        let isHTTP1 = head.version.major < 2
        if isHTTP1 {
            let hosts = head.headers["host"]
            if hosts.count > 1 || (hosts.isEmpty && head.version == .http1_1) {
                return .failure(.badHost)
            }
        }
        // Absolute-form (RFC 9112 §3.2.2): the target's authority replaces Host.
        if let (authority, rest) = Self.splitAbsoluteForm(head.uri) {
            head.uri = rest
            head.headers.replaceOrAdd(name: "Host", value: authority)
        }
        // (A poisoned Last-Event-ID is treated as absent below, as the resume parameter is: the
        // client keeps its stream.)
        guard head.headers.allSatisfy({
            Self.isValidField(name: $0.name, value: $0.name.lowercased() == "last-event-id" ? "" : $0.value)
        }) else {
            return .failure(.badHeader)
        }
        guard head.uri.hasPrefix("/") else { return .failure(.badTarget) }
        let (rawPath, query) = Self.split(uri: head.uri)
        guard let path = RequestPath.normalize(rawPath) else { return .failure(.badTarget) }
        guard let match = router.match(path: path) else { return .failure(.noRoute(path: path)) }

        let (clientQuery, queryLastEventID) = Self.removeParameter(configuration.lastEventIDParameter, from: query)
        let offered = head.headers.first(name: "last-event-id") ?? queryLastEventID
        var lastEventID: String?
        var rejected = false
        if let offered, !offered.isEmpty {
            if Self.isSane(lastEventID: offered) {
                lastEventID = offered
            } else {
                rejected = true
            }
        }
        // The route's own query belongs to its origin URL: two routes that differ only there
        // never share, whatever --share-by says about the client's query.
        var origin = match.route.origin.authority
        if let routeQuery = match.route.origin.baseQuery {
            origin += "?" + routeQuery
        }
        let key = configuration.sharePolicy.key(
            method: head.method.rawValue,
            origin: origin,
            path: match.upstreamPath,
            query: clientQuery,
            header: { name in
                // Every line of the header counts (a second Cookie line must not be ignored).
                let values = head.headers[name]
                return values.isEmpty ? nil : values.joined(separator: ", ")
            },
            namer: configuration.sharedGateway?.namer
        )
        let wantsEvents = head.headers["accept"].contains { Self.containsEventStream($0) }
        return .success(
            ClientRequest(
                head: head,
                client: client,
                match: match,
                upstreamQuery: Self.joinQueries(match.route.origin.baseQuery, clientQuery),
                lastEventID: lastEventID,
                rejectedLastEventID: rejected,
                key: key,
                wantsEvents: wantsEvents,
                isUnshared: configuration.unsharedRoutes.contains(match.route.prefix),
                displayPath: clientQuery.map { $0.isEmpty ? path : path + "?" + StreamKey.maskedQuery($0) } ?? path,
                sendsCookies: Self.browserSendsCookies(head.headers)
            )
        )
    }

    /// Whether a browser would send cookies with this request, and so keep those of its answer.
    /// An `EventSource` sends them only to its own origin unless the page asked for credentials,
    /// and a request with credentials carries the cookies it has. So: a request that carries a
    /// `Cookie`; one the browser marks same-origin or user-initiated (`Sec-Fetch-Site`); one
    /// without that header (older browsers, SDKs, curl) whose `Origin`, if any, is the `Host` it
    /// asks. Not a same-site but cross-origin one: that is still "cross-origin" to
    /// `EventSource`'s default credentials mode.
    static func browserSendsCookies(_ headers: HTTPHeaders) -> Bool {
        if headers.contains(name: "cookie") {
            return true
        }
        if let site = headers.first(name: "sec-fetch-site")?.trimmingASCIISpaces().lowercased() {
            return site == "same-origin" || site == "none"
        }
        guard let origin = headers.first(name: "origin") else { return true }
        guard let host = headers.first(name: "host"), let originAuthority = Self.authority(ofOrigin: origin) else { return false }
        return Self.sameAuthority(originAuthority, host.trimmingASCIISpaces())
    }

    /// `example.com:8443` of `https://example.com:8443`; nil for `null` and other non-URLs.
    private static func authority(ofOrigin origin: String) -> Substring? {
        guard let range = origin.firstRange(of: "://") else { return nil }
        let authority = origin[range.upperBound...]
        return authority.isEmpty || authority.contains("/") ? nil : authority
    }

    /// Host and port equal, a default port (80, 443) or none being the same.
    private static func sameAuthority(_ a: Substring, _ b: String) -> Bool {
        func normalized(_ value: Substring) -> String {
            var lowered = value.lowercased()
            for suffix in [":80", ":443"] where lowered.hasSuffix(suffix) {
                lowered.removeLast(suffix.count)
            }
            return lowered
        }
        return normalized(a) == normalized(Substring(b))
    }

    /// The value of a request header, all its lines joined (as the share key reads them).
    func headerValue(_ name: String) -> String? {
        let values = self.head.headers[name]
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// The request to send the origin for this client.
    func upstreamHead(forStream: Bool) -> HTTPRequestHead {
        var head = UpstreamRequest.head(
            from: self.head,
            target: self.match.route.origin,
            path: self.match.upstreamPath,
            query: self.upstreamQuery,
            clientAddress: self.client.address,
            clientScheme: self.client.scheme,
            forStream: forStream
        )
        if forStream {
            head.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        } else {
            // The gateway answers 100-continue itself; the origin gets the body as it comes.
            head.headers.remove(name: "Expect")
        }
        return head
    }

    /// A GET on an unshared route, sent once as the client's own: an unencoded answer (its events
    /// are read), and the client's `Last-Event-ID` (also when it came as a query parameter), so
    /// that the origin replays as it would to a browser talking to it directly.
    func ownStreamHead() -> HTTPRequestHead {
        var head = self.upstreamHead(forStream: true)
        if let lastEventID = self.lastEventID {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: lastEventID)
        }
        return head
    }

    /// A `Last-Event-ID` that can be repeated in origin requests and SSE fields: no control
    /// characters (a CR, LF or NUL would break the request or the stream), bounded length.
    /// RFC 9110: a field name is a token; a value is visible characters, spaces, tabs and
    /// obs-text (bytes from 0x80), never another control character.
    static func isValidField(name: String, value: String) -> Bool {
        guard !name.isEmpty, name.utf8.allSatisfy({ Self.tokenBytes[Int($0)] }) else { return false }
        return value.utf8.allSatisfy { $0 >= 0x20 ? $0 != 0x7F : $0 == 0x09 }
    }

    private static let tokenBytes: [Bool] = (0..<256).map { byte in
        switch UInt8(byte) {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(UInt8(byte))
        }
    }

    static func isSane(lastEventID: String) -> Bool {
        guard lastEventID.utf8.count <= Self.maxLastEventIDLength else { return false }
        return lastEventID.utf8.allSatisfy { $0 >= 0x20 && $0 != 0x7F }
    }

    /// Whether an `Accept` value names `text/event-stream` (in any case). A byte search: this
    /// runs for every request, and `String.contains(String)` costs microseconds.
    static func containsEventStream(_ value: String) -> Bool {
        let needle = Self.eventStreamType
        var bytes = value.utf8[...]
        while bytes.count >= needle.count {
            if zip(bytes.prefix(needle.count), needle).allSatisfy({ Self.asciiLowercased($0) == $1 }) {
                return true
            }
            bytes = bytes.dropFirst()
        }
        return false
    }

    private static let eventStreamType = Array("text/event-stream".utf8)

    private static func asciiLowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    // MARK: Target helpers

    /// `http://host[:port]/path?query` → (`host[:port]`, `/path?query`).
    static func splitAbsoluteForm(_ uri: String) -> (authority: String, rest: String)? {
        // Origin-form, nearly every request: no scheme to look for.
        if uri.utf8.first == UInt8(ascii: "/") {
            return nil
        }
        let lowered = uri.prefix(8).lowercased()
        let schemeLength: Int
        if lowered.hasPrefix("http://") {
            schemeLength = 7
        } else if lowered.hasPrefix("https://") {
            schemeLength = 8
        } else {
            return nil
        }
        let afterScheme = uri.dropFirst(schemeLength)
        let end = afterScheme.firstIndex { $0 == "/" || $0 == "?" } ?? afterScheme.endIndex
        let authority = String(afterScheme[..<end])
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var rest = String(afterScheme[end...])
        if !rest.hasPrefix("/") {
            rest = "/" + rest
        }
        return (authority, rest)
    }

    static func split(uri: String) -> (path: String, query: String?) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, nil) }
        return (String(uri[..<mark]), String(uri[uri.index(after: mark)...]))
    }

    /// Removes every `name=value` item from a query; returns the rest and the last value.
    static func removeParameter(_ name: String, from query: String?) -> (query: String?, value: String?) {
        guard let query, !query.isEmpty else { return (query, nil) }
        var kept: [Substring] = []
        var value: String?
        for item in query.split(separator: "&", omittingEmptySubsequences: false) {
            let itemName = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if itemName == name {
                let raw = item.dropFirst(name.count + 1)
                value = PercentDecoding.queryValue(raw) ?? String(raw)
            } else {
                kept.append(item)
            }
        }
        let rest = kept.joined(separator: "&")
        return (rest.isEmpty ? nil : rest, value)
    }

    static func joinQueries(_ first: String?, _ second: String?) -> String? {
        switch (first, second) {
        case (nil, nil): return nil
        case (let one?, nil), (nil, let one?): return one
        case (let one?, let two?): return one + "&" + two
        }
    }
}
