/// What a gateway has done, as counts: the figures behind `/metrics` and the status page.
///
/// Each event loop keeps its own (`LoopCounters`) and only code on that loop changes it, so an
/// event or a request costs a plain increment: no lock, no atomic, no shared cache line. A
/// reader sums the loops' copies (`+`). Fields marked "gauge" go up and down; the others only up.
public struct GatewayCounters: Sendable, Equatable {
    // MARK: Clients

    /// Client connections open now, by protocol and TLS (gauge).
    public var connectionsOpen = ConnectionCounts()
    /// Clients receiving a stream now (gauge).
    public var subscribers = 0
    public var connectionsAccepted = 0
    public var streamRequests = 0
    public var proxiedRequests = 0
    /// Event deliveries to clients: one per client per event, replayed ones included.
    public var eventsSent = 0
    public var heartbeatsSent = 0
    /// Bytes written to clients: HTTP/1.1 as on the wire (heads and chunk framing included),
    /// HTTP/2 the DATA payloads (nghttp2 frames them).
    public var bytesSent = 0
    public var replayHits = 0
    public var replayMisses = 0
    /// Clients that missed, caught up from the origin on a stream of their own, and continued on
    /// the shared stream (their own origin connection closed).
    public var catchUpsJoined = 0
    /// Clients disconnected for going over `--client-buffer`.
    public var slowClientDisconnects = 0
    /// `Last-Event-ID`s refused at the edge (control characters, too long) and treated as absent.
    public var lastEventIDsRejected = 0
    /// Requests and connections the gateway answered itself instead of serving them.
    public var refused = RefusalCounts()
    /// Requests (exchanges) that ended, by whose doing.
    public var exchangesEnded = EndingCounts()

    // MARK: Streams

    /// Events from origins (after duplicates were dropped).
    public var eventsReceived = 0
    /// Origin connections that ended and were reconnected, by why they ended.
    public var upstreamReconnects = ReconnectCounts()

    // MARK: Shared history (`--redis`)

    /// Batches of events an owner stored in the shared history.
    public var historyAppendsStored = 0
    /// Batches it could not store (fenced, or the store unreachable).
    public var historyAppendsFailed = 0
    /// Times a stream fell back to its own origin connection because the store could not be used.
    public var historyFallbacks = 0
    /// Resumes the shared history served after this instance's ring missed.
    public var historyResumeHits = 0

    public init() {}

    public static func + (a: GatewayCounters, b: GatewayCounters) -> GatewayCounters {
        var sum = GatewayCounters()
        sum.connectionsOpen = a.connectionsOpen + b.connectionsOpen
        sum.subscribers = a.subscribers + b.subscribers
        sum.connectionsAccepted = a.connectionsAccepted + b.connectionsAccepted
        sum.streamRequests = a.streamRequests + b.streamRequests
        sum.proxiedRequests = a.proxiedRequests + b.proxiedRequests
        sum.eventsSent = a.eventsSent + b.eventsSent
        sum.heartbeatsSent = a.heartbeatsSent + b.heartbeatsSent
        sum.bytesSent = a.bytesSent + b.bytesSent
        sum.replayHits = a.replayHits + b.replayHits
        sum.replayMisses = a.replayMisses + b.replayMisses
        sum.catchUpsJoined = a.catchUpsJoined + b.catchUpsJoined
        sum.slowClientDisconnects = a.slowClientDisconnects + b.slowClientDisconnects
        sum.lastEventIDsRejected = a.lastEventIDsRejected + b.lastEventIDsRejected
        sum.refused = a.refused + b.refused
        sum.exchangesEnded = a.exchangesEnded + b.exchangesEnded
        sum.eventsReceived = a.eventsReceived + b.eventsReceived
        sum.upstreamReconnects = a.upstreamReconnects + b.upstreamReconnects
        sum.historyAppendsStored = a.historyAppendsStored + b.historyAppendsStored
        sum.historyAppendsFailed = a.historyAppendsFailed + b.historyAppendsFailed
        sum.historyFallbacks = a.historyFallbacks + b.historyFallbacks
        sum.historyResumeHits = a.historyResumeHits + b.historyResumeHits
        return sum
    }
}

/// The client protocols a connection can speak, for `lifeline_connections{protocol}`.
public enum ClientProtocol: String, Sendable, CaseIterable {
    case http1
    case h2
}

/// Open client connections by protocol and TLS.
public struct ConnectionCounts: Sendable, Equatable {
    public var http1 = 0
    public var http1TLS = 0
    public var h2 = 0
    public var h2TLS = 0

    public init() {}

    public subscript(_ clientProtocol: ClientProtocol, tls tls: Bool) -> Int {
        get {
            switch (clientProtocol, tls) {
            case (.http1, false): return self.http1
            case (.http1, true): return self.http1TLS
            case (.h2, false): return self.h2
            case (.h2, true): return self.h2TLS
            }
        }
        set {
            switch (clientProtocol, tls) {
            case (.http1, false): self.http1 = newValue
            case (.http1, true): self.http1TLS = newValue
            case (.h2, false): self.h2 = newValue
            case (.h2, true): self.h2TLS = newValue
            }
        }
    }

    public var total: Int { self.http1 + self.http1TLS + self.h2 + self.h2TLS }

    public static func + (a: ConnectionCounts, b: ConnectionCounts) -> ConnectionCounts {
        var sum = ConnectionCounts()
        sum.http1 = a.http1 + b.http1
        sum.http1TLS = a.http1TLS + b.http1TLS
        sum.h2 = a.h2 + b.h2
        sum.h2TLS = a.h2TLS + b.h2TLS
        return sum
    }
}

/// Why the front end answered a request (or a connection) itself, as the `reason` label of
/// `lifeline_requests_refused_total`: a fixed set, so the label cannot grow without bound. The
/// answer itself (status, body) is the front end's (`RequestRefusal` in `Server`); the status
/// codes below are what it answers today.
public enum RefusalReason: String, Sendable, CaseIterable {
    /// 400: a request that does not parse, a bad target or `Host`.
    case badRequest = "bad_request"
    /// 404: no `--route` matches.
    case noRoute = "no_route"
    /// 408: no complete request head within `--request-head-timeout`.
    case requestTimeout = "request_timeout"
    /// 429: over `--max-clients-per-ip`.
    case tooManyFromAddress = "too_many_from_address"
    /// 431: a request head over `--max-request-head`.
    case headTooLarge = "head_too_large"
    /// 503: over `--max-clients`.
    case tooManyClients = "too_many_clients"
    /// 502: the origin could not be reached for a plain request.
    case originUnreachable = "origin_unreachable"
    /// 504: the origin sent no response head in time for a plain request.
    case originTimeout = "origin_timeout"
    /// 429: a private generation already has its most resumes in flight.
    case tooManyResumes = "too_many_resumes"
    /// 503: a resume's token is not known here and the store of kept generations (`--redis`)
    /// could not be asked.
    case resumeStoreUnavailable = "resume_store_unavailable"
}

/// Whose doing the end of a request or connection was (as Pingora tags its errors).
public enum EndingParty: String, Sendable, CaseIterable {
    /// Nobody's: the response was complete.
    case none
    /// The client's: it left, was too slow, or sent what could not be served.
    case client
    /// The origin's: unreachable, too slow, failed mid-response, or ended the stream.
    case origin
    /// Lifeline's own: its limits, a drain or a shutdown.
    case lifeline
}

/// Counts by `EndingParty`.
public struct EndingCounts: Sendable, Equatable {
    private var counts = [Int](repeating: 0, count: EndingParty.allCases.count)

    public init() {}

    public subscript(_ party: EndingParty) -> Int {
        get { self.counts[Self.index(party)] }
        set { self.counts[Self.index(party)] = newValue }
    }

    private static func index(_ party: EndingParty) -> Int {
        switch party {
        case .none: return 0
        case .client: return 1
        case .origin: return 2
        case .lifeline: return 3
        }
    }

    public static func + (a: EndingCounts, b: EndingCounts) -> EndingCounts {
        var sum = EndingCounts()
        for index in sum.counts.indices { sum.counts[index] = a.counts[index] + b.counts[index] }
        return sum
    }
}

/// Counts by `RefusalReason`.
public struct RefusalCounts: Sendable, Equatable {
    private var counts = [Int](repeating: 0, count: RefusalReason.allCases.count)

    public init() {}

    public subscript(_ reason: RefusalReason) -> Int {
        get { self.counts[Self.index(reason)] }
        set { self.counts[Self.index(reason)] = newValue }
    }

    public var total: Int { self.counts.reduce(0, +) }

    /// A switch, not `allCases.firstIndex`: this runs on every refusal, and `allCases` builds
    /// an array each time.
    private static func index(_ reason: RefusalReason) -> Int {
        switch reason {
        case .badRequest: return 0
        case .noRoute: return 1
        case .requestTimeout: return 2
        case .tooManyFromAddress: return 3
        case .headTooLarge: return 4
        case .tooManyClients: return 5
        case .originUnreachable: return 6
        case .originTimeout: return 7
        case .tooManyResumes: return 8
        case .resumeStoreUnavailable: return 9
        }
    }

    public static func + (a: RefusalCounts, b: RefusalCounts) -> RefusalCounts {
        var sum = RefusalCounts()
        for index in sum.counts.indices {
            sum.counts[index] = a.counts[index] + b.counts[index]
        }
        return sum
    }
}

/// Why an origin connection ended before the gateway reconnected it; the `reason` label of
/// `lifeline_upstream_reconnects_total`.
public enum UpstreamDisconnect: String, Sendable, CaseIterable {
    /// The origin ended its response in order (a deploy, a maximum response age).
    case ended
    /// The connection broke: closed mid-response, reset, a read error.
    case dropped
    /// Nothing arrived for `--upstream-idle-timeout`: the gateway closed it.
    case idleTimeout = "idle_timeout"
}

/// Counts by `UpstreamDisconnect`.
public struct ReconnectCounts: Sendable, Equatable {
    public var ended = 0
    public var dropped = 0
    public var idleTimeout = 0

    public init() {}

    public subscript(_ reason: UpstreamDisconnect) -> Int {
        get {
            switch reason {
            case .ended: return self.ended
            case .dropped: return self.dropped
            case .idleTimeout: return self.idleTimeout
            }
        }
        set {
            switch reason {
            case .ended: self.ended = newValue
            case .dropped: self.dropped = newValue
            case .idleTimeout: self.idleTimeout = newValue
            }
        }
    }

    public var total: Int { self.ended + self.dropped + self.idleTimeout }

    public static func + (a: ReconnectCounts, b: ReconnectCounts) -> ReconnectCounts {
        var sum = ReconnectCounts()
        sum.ended = a.ended + b.ended
        sum.dropped = a.dropped + b.dropped
        sum.idleTimeout = a.idleTimeout + b.idleTimeout
        return sum
    }
}
