import LifelineCore

/// What `/status.json` answers and the status page's feed (`/status/events`) sends each second:
/// the gateway as an operator sees it. Field names are the JSON's (docs/operator-guide.md,
/// "Monitoring"); times are seconds, rates per second.
public struct StatusReport: Codable, Sendable, Equatable {
    public struct Process: Codable, Sendable, Equatable {
        public var version: String
        public var pid: Int
        public var uptimeSeconds: Double
        public var residentBytes: Int
        public var openFiles: Int
        public var maxFiles: Int
        public var cpuSeconds: Double
        public var threads: Int
        /// `ready`, `draining` or `stopping` (`/readyz` answers 200 only when `ready`).
        public var state: String
    }

    public struct Connections: Codable, Sendable, Equatable {
        public var http1: Int
        public var http1TLS: Int
        public var h2: Int
        public var h2TLS: Int
        public var total: Int
    }

    /// Totals since the start, and their rates over the last second.
    public struct Totals: Codable, Sendable, Equatable {
        public var eventsReceived: Int
        public var eventsSent: Int
        public var heartbeatsSent: Int
        public var bytesSent: Int
        public var replayHits: Int
        public var replayMisses: Int
        public var upstreamReconnects: Int
        public var slowClientDisconnects: Int
        public var requestsRefused: Int
        public var tlsHandshakeFailures: Int
        public var eventsReceivedPerSecond: Double
        public var eventsSentPerSecond: Double
        public var bytesSentPerSecond: Double
    }

    public struct Upstream: Codable, Sendable, Equatable {
        /// `connecting`, `connected`, `reconnecting` or `ended`.
        public var state: String
        public var sinceSeconds: Double
        public var reconnects: Int
        public var lastError: String?
    }

    public struct Events: Codable, Sendable, Equatable {
        /// From the origin since the stream opened.
        public var received: Int
        /// Deliveries to subscribers since the stream opened.
        public var sent: Int
        public var receivedPerSecond: Double
        public var sentPerSecond: Double
        /// Events received per second over the last samples (oldest first, up to 60), for the
        /// page's sparkline.
        public var history: [Double]
    }

    public struct Replay: Codable, Sendable, Equatable {
        public var events: Int
        public var bytes: Int
        public var ageSeconds: Double
        public var maxEvents: Int
        public var maxBytes: Int
        public var maxAgeSeconds: Double
    }

    public struct Stream: Codable, Sendable, Equatable {
        public var id: String
        /// The path with query values masked.
        public var path: String
        public var origin: String
        public var shared: Bool
        /// With `--redis`: `owner` (this instance reads the origin), `follower` (another does),
        /// `fallback` (Redis is unreachable: this instance reads the origin itself), `deciding`;
        /// `standalone` without `--redis`.
        public var role: String = "standalone"
        /// The instance that holds the origin connection, when known.
        public var owner: String?
        public var subscribers: Int
        public var ageSeconds: Double
        public var upstream: Upstream
        public var events: Events
        public var replay: Replay
    }

    /// The shared store (`--redis`).
    public struct SharedStore: Codable, Sendable, Equatable {
        /// This instance's name in leases.
        public var instance: String
        /// Whether Redis answered the latest probe; false means streams read their origins
        /// themselves (degraded).
        public var reachable: Bool
    }

    public struct Notable: Codable, Sendable, Equatable {
        /// Seconds since the Unix epoch.
        public var at: Double
        /// `origin_down`, `origin_up`, `origin_ended`, `slow_client` or `refused`.
        public var kind: String
        public var stream: String?
        public var detail: String
        public var count: Int
    }

    /// Seconds since the Unix epoch when the report was made.
    public var at: Double
    public var process: Process
    public var connections: Connections
    public var subscribers: Int
    public var totals: Totals
    /// All open streams, of which `streams` shows the first `top` (most subscribers first) that
    /// match `filter`.
    public var streamCount: Int
    public var upstreamConnected: Int
    public var filter: String
    public var top: Int
    public var matching: Int
    public var streams: [Stream]
    /// With `--redis`; absent without.
    public var sharedStore: SharedStore? = nil
    /// Newest last.
    public var recent: [Notable]
}
