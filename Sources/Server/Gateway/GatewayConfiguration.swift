import LifelineCore
import NIOCore
import Upstream

/// Everything the front end needs to know, built from the flags by `LifelineMain`.
public struct GatewayConfiguration: Sendable {
    public struct ListenAddress: Sendable, Hashable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public var listen: [ListenAddress]
    /// TLS listeners: ALPN picks HTTP/2 or HTTP/1.1.
    public var tlsListen: [ListenAddress]
    /// Certificate/key PEM pairs; the first is the default, the others are chosen by SNI.
    public var tlsCertificates: [(certificate: String, key: String)]
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` for HTTP/2 clients.
    public var h2MaxStreams: Int
    /// An extra CA (PEM) trusted for https origins, besides the system store.
    public var upstreamCA: String?
    /// Do not verify https origins' certificates (logged as a warning at start).
    public var upstreamInsecure: Bool
    public var routes: [Route]
    public var sharePolicy: SharePolicy
    /// Route prefixes whose clients each get their own upstream connection (origins that send a
    /// snapshot of their state first, which a client joining a shared stream later would miss).
    public var unsharedRoutes: Set<String>
    /// Idle time after which a client gets a heartbeat; nil turns heartbeats off.
    public var heartbeat: TimeAmount?
    public var heartbeatComment: String
    /// Send heartbeats as this named event instead of a comment.
    public var heartbeatEvent: String?
    /// The comment written right after the response head.
    public var openingComment: String
    /// `retry:` sent to clients after the head (nil: pass on the origin's, if any).
    public var clientRetry: TimeAmount?
    /// Each client's `retry:` is `clientRetry` plus a random part of this, so clients spread out.
    public var clientRetryJitter: TimeAmount
    public var clientBuffer: Int
    /// Query parameter that carries `Last-Event-ID` for polyfills.
    public var lastEventIDParameter: String
    /// Where the browser client `LifelineEventSource` is served (nil: not served).
    public var clientScriptPath: String?
    public var stream: StreamConfiguration
    public var upstream: UpstreamSession.Configuration
    public var maxClients: Int?
    public var maxClientsPerIP: Int?
    public var maxRequestHeadSize: Int
    public var requestHeadTimeout: TimeAmount
    /// Several instances acting as one through a shared store (`--redis`); nil: on its own.
    public var sharedGateway: SharedGateway?
    /// Most bytes the ended private generations kept for resumes may hold together.
    public var privateStreamsMemory: Int = 256 << 20
    /// `--io-uring` (on by default): plaintext HTTP/1.1 clients' event writes go out in one
    /// io_uring submission per loop and fan-out instead of one `write()` each (`SendBatch`); the
    /// plaintext listeners are then accepted by the gateway itself (`PlainAcceptor`). Where the
    /// kernel refuses io_uring, `GatewayServer.start` turns it off and says so.
    public var ioUring = true

    public init(
        listen: [ListenAddress] = [ListenAddress(host: "127.0.0.1", port: 8080)],
        tlsListen: [ListenAddress] = [],
        tlsCertificates: [(certificate: String, key: String)] = [],
        h2MaxStreams: Int = 128,
        upstreamCA: String? = nil,
        upstreamInsecure: Bool = false,
        routes: [Route] = [],
        sharePolicy: SharePolicy = .default,
        unsharedRoutes: Set<String> = [],
        heartbeat: TimeAmount? = .seconds(15),
        heartbeatComment: String = "heartbeat",
        heartbeatEvent: String? = nil,
        openingComment: String = "ok",
        clientRetry: TimeAmount? = nil,
        clientRetryJitter: TimeAmount = .zero,
        clientBuffer: Int = 1 << 20,
        lastEventIDParameter: String = "lastEventId",
        clientScriptPath: String? = "/_lifeline/client.js",
        stream: StreamConfiguration = StreamConfiguration(),
        upstream: UpstreamSession.Configuration = UpstreamSession.Configuration(),
        maxClients: Int? = nil,
        maxClientsPerIP: Int? = nil,
        maxRequestHeadSize: Int = 32 << 10,
        requestHeadTimeout: TimeAmount = .seconds(10)
    ) {
        self.listen = listen
        self.tlsListen = tlsListen
        self.tlsCertificates = tlsCertificates
        self.h2MaxStreams = h2MaxStreams
        self.upstreamCA = upstreamCA
        self.upstreamInsecure = upstreamInsecure
        self.routes = routes
        self.sharePolicy = sharePolicy
        self.unsharedRoutes = unsharedRoutes
        self.heartbeat = heartbeat
        self.heartbeatComment = heartbeatComment
        self.heartbeatEvent = heartbeatEvent
        self.openingComment = openingComment
        self.clientRetry = clientRetry
        self.clientRetryJitter = clientRetryJitter
        self.clientBuffer = clientBuffer
        self.lastEventIDParameter = lastEventIDParameter
        self.clientScriptPath = clientScriptPath
        self.stream = stream
        self.upstream = upstream
        self.maxClients = maxClients
        self.maxClientsPerIP = maxClientsPerIP
        self.maxRequestHeadSize = maxRequestHeadSize
        self.requestHeadTimeout = requestHeadTimeout
    }
}
