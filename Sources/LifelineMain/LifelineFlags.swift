import Flags
import LifelineCore
import NIOCore
import Server
import RedisStore
import Upstream

/// Every flag of `lifeline`, in one table: parsing, `--help` and docs/flags.md come from it.
enum LifelineFlags {
    // MARK: Listening and routing
    static let listen = RepeatedFlag(
        "listen", .listenAddress, default: "127.0.0.1:8080", valueName: "HOST:PORT", section: "Listening and routing",
        help: "Address to accept plaintext HTTP/1.1 clients. Port 0 picks a free port.")
    static let tlsListen = RepeatedFlag(
        "tls-listen", .listenAddress, valueName: "HOST:PORT", section: "TLS and HTTP/2",
        help: "Address to accept TLS clients on; ALPN picks HTTP/2 (h2) or HTTP/1.1. Needs --tls-cert and --tls-key.")
    static let tlsCert = RepeatedFlag(
        "tls-cert", .string, valueName: "PEM", section: "TLS and HTTP/2",
        help: "Certificate chain (PEM file) for --tls-listen. Give several --tls-cert/--tls-key pairs to serve several "
            + "names: the first is the default, the others are chosen by SNI. Reloaded on SIGHUP.")
    static let tlsKey = RepeatedFlag(
        "tls-key", .string, valueName: "PEM", section: "TLS and HTTP/2",
        help: "Private key (PEM file) for the --tls-cert at the same position.")
    static let h2MaxStreams = Flag(
        "h2-max-streams", .integer(in: 1...100_000), default: "128", section: "TLS and HTTP/2",
        help: "Most concurrent streams (EventSources) one HTTP/2 connection may open (SETTINGS_MAX_CONCURRENT_STREAMS).")
    static let upstreamCA = OptionalFlag(
        "upstream-ca", .string, valueName: "PEM", section: "TLS and HTTP/2",
        help: "Extra CA certificate (PEM file) to trust for https:// origins, besides the system's CA store.")
    static let upstreamInsecure = Flag<Bool>(
        boolean: "upstream-insecure", section: "TLS and HTTP/2",
        help: "Do not verify https:// origins' certificates or names (logged as a warning at start). For testing only.")
    static let route = RepeatedFlag(
        "route", .custom(valueName: "PREFIX=URL") { text in try Route.parse(text).get() }, section: "Listening and routing",
        help: "Serve request paths that start with PREFIX from the origin URL (the longest prefix wins). "
            + "The path after the prefix and the query are appended to the URL's path.")
    static let upstream = OptionalFlag(
        "upstream", .custom(valueName: "URL") { text in try OriginTarget.parse(text).get() },
        section: "Listening and routing", help: "Short for --route=/=URL.")
    static let shareBy = Flag(
        "share-by", .custom(valueName: "ITEMS") { text in try SharePolicy.parse(text).get() },
        default: "path,query,authorization,cookie,origin", section: "Listening and routing",
        help: "What must match for clients to share one stream: path, query, authorization, cookie, origin, "
            + "header:NAME (comma-separated). Use path,query,origin for public broadcast streams. A client whose "
            + "values of the headers the origin names in Vary differ from the stream's never joins it.")
    static let unsharedRoute = RepeatedFlag(
        "unshared-route", .string.validate { $0.hasPrefix("/") ? nil : "must be a route prefix starting with /" },
        valueName: "PREFIX", section: "Listening and routing",
        help: "Give each client of this --route prefix its own origin request, for origins that send a snapshot "
            + "of their state first: the client's GET is sent once (with its Last-Event-ID), and an event-stream "
            + "answer is a private generation (heartbeats, Lifeline-Resume, never re-requested by the gateway; "
            + "the client reconnects).")
    static let clientScriptPath = Flag(
        "client-script-path", .string.validate { $0.isEmpty || ($0.hasPrefix("/") && !$0.contains("?")) ? nil : "must be empty or a path starting with /" },
        default: "/_lifeline/client.js", valueName: "PATH", section: "Listening and routing",
        help: "Where every listener serves the browser client LifelineEventSource (docs/client.md), before any "
            + "route, and its ES module form at the same path with .mjs; empty: not served.")
    static let lastEventIDParam = Flag(
        "last-event-id-param", .string, default: "lastEventId", valueName: "NAME", section: "Listening and routing",
        help: "Query parameter that carries Last-Event-ID for polyfills; removed before the request goes upstream.")

    // MARK: Heartbeats
    static let heartbeat = Flag(
        "heartbeat", .duration.validate { $0 == .zero || $0 >= .milliseconds(10) ? nil : "must be 0 (off) or at least 10ms" }, default: "15s", section: "Heartbeats",
        help: "Write a heartbeat to a client that has been sent nothing for this long (0 turns heartbeats off).")
    static let heartbeatComment = Flag(
        "heartbeat-comment", .string.validate(Self.singleLine), default: "heartbeat", valueName: "TEXT",
        section: "Heartbeats", help: "Text of the heartbeat comment line (`:TEXT`).")
    static let heartbeatEvent = OptionalFlag(
        "heartbeat-event", .string.validate(Self.eventName), valueName: "NAME", section: "Heartbeats",
        help: "Send heartbeats as an event of this type (`event: NAME`, empty data) instead of a comment, "
            + "for client-side watchdogs.")
    static let openingComment = Flag(
        "opening-comment", .string.validate(Self.singleLine), default: "ok", valueName: "TEXT", section: "Heartbeats",
        help: "Comment written right after the response head, so clients and proxies see the stream open at once.")
    static let clientRetry = OptionalFlag(
        "client-retry", .duration, section: "Heartbeats",
        help: "Send clients `retry:` with this delay after the head (default: pass on the origin's retry:).")
    static let clientRetryJitter = Flag(
        "client-retry-jitter", .duration, default: "0", section: "Heartbeats",
        help: "Add a random delay up to this to each client's retry:, so clients don't reconnect in step.")

    // MARK: Upstream
    static let reconnectMin = Flag(
        "reconnect-min", .duration.validate { $0 >= .milliseconds(1) ? nil : "must be at least 1ms" }, default: "100ms", section: "Upstream",
        help: "Shortest delay before reconnecting to the origin (the backoff's floor and base).")
    static let reconnectMax = Flag(
        "reconnect-max", .duration.validate { $0 >= .milliseconds(1) ? nil : "must be at least 1ms" }, default: "10s", section: "Upstream",
        help: "Longest delay between reconnect attempts (exponential backoff with full jitter).")
    static let upstreamIdleTimeout = Flag(
        "upstream-idle-timeout", .duration, default: "0", section: "Upstream",
        help: "Reconnect when the origin sends no byte for this long (0: never). Set it above the origin's own "
            + "keepalive interval.")
    static let upstreamGiveUp = Flag(
        "upstream-give-up", .duration, default: "0", section: "Upstream",
        help: "End a stream (its clients' responses end) when its origin has been unreachable this long (0: never).")
    static let upstreamConnectTimeout = Flag(
        "upstream-connect-timeout", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "5s", section: "Upstream",
        help: "Time allowed for a TCP connection to the origin.")
    static let upstreamHeadTimeout = Flag(
        "upstream-head-timeout", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "30s",
        section: "Upstream",
        help: "Time the origin has to send its response head; then a stream retries, a plain request gets 504.")
    static let maxEventSize = Flag(
        "max-event-size", .byteSize.validate { $0 >= 64 ? nil : "must be at least 64 bytes" }, default: "1MiB", section: "Upstream",
        help: "Largest event accepted from the origin; a larger one ends that upstream connection and Lifeline reconnects.")

    // MARK: Replay
    static let replayEvents = Flag(
        "replay-events", .integer(in: 0...), default: "1000", section: "Replay",
        help: "Most events a stream keeps for clients that reconnect with Last-Event-ID.")
    static let replayBytes = Flag(
        "replay-bytes", .byteSize, default: "4MiB", section: "Replay", help: "Most bytes of events a stream keeps.")
    static let replayAge = Flag(
        "replay-age", .duration, default: "10m", section: "Replay", help: "Oldest event a stream keeps.")
    static let resumeWait = Flag(
        "resume-wait", .duration, default: "2s", section: "Replay",
        help: "How long a client whose Last-Event-ID the buffer does not hold waits for it to arrive before it "
            + "counts as a miss. After a restart the first resumer opens the stream from its id; the others, a "
            + "little ahead, are in the origin's replay a moment later and join the shared stream. 0: miss at once.")
    static let replayMiss = Flag(
        "replay-miss", .oneOf(StreamConfiguration.ReplayMissPolicy.self), default: "upstream", section: "Replay",
        help: "When a client's Last-Event-ID is not in the buffer: `upstream` gives it a stream of its own opened "
            + "with that id (the origin replays); `live` joins it to the live stream. Either way the response "
            + "carries `Lifeline-Replay: miss`.")
    static let gapEvent = OptionalFlag(
        "gap-event", .string.validate(Self.eventName), valueName: "NAME", section: "Replay",
        help: "Also tell such a client in-band: an event of this type whose data is the id it asked for.")
    static let assignIDs = Flag<Bool>(
        boolean: "assign-ids", section: "Replay",
        help: "Give events from origins that send no ids ids of Lifeline's own, so that replay works for them.")
    static let streamLinger = Flag(
        "stream-linger", .duration, default: "30s", section: "Replay",
        help: "How long a stream (its upstream connection and buffer) outlives its last client.")

    // MARK: Private generations
    static let resumeWindow = Flag(
        "resume-window", .duration, default: "5m", section: "Private streams",
        help: "How long a private generation (the event-stream answer to a POST and the like) runs on after its "
            + "client left and is kept after it ended, for a resume through its Lifeline-Resume path "
            + "(docs/private-streams.md).")

    static let privateStreamBytes = Flag(
        "private-stream-bytes", .byteSize.validate { $0 >= 1024 ? nil : "must be at least 1KiB" }, default: "4MiB",
        section: "Private streams",
        help: "Most bytes of events a private generation keeps for resumes; a longer one streams on, and a resume "
            + "from before what is kept is a miss.")
    static let privateStreamsMemory = Flag(
        "private-streams-memory", .byteSize.validate { $0 >= 1024 ? nil : "must be at least 1KiB" }, default: "256MiB",
        section: "Private streams",
        help: "Most bytes all ended private generations kept for resumes may hold together; over it, the ones that "
            + "ended first are forgotten first.")

    // MARK: Clients
    static let clientBuffer = Flag(
        "client-buffer", .byteSize.validate { $0 >= 1024 ? nil : "must be at least 1KiB" }, default: "1MiB", section: "Clients",
        help: "Most unsent bytes a client may have queued; a slower client is disconnected (it reconnects and "
            + "catches up from the replay buffer).")
    static let maxClients = Flag(
        "max-clients", .integer(in: 0...), default: "0", section: "Clients",
        help: "Most client connections at once (0: no limit); more get 503.")
    static let maxClientsPerIP = Flag(
        "max-clients-per-ip", .integer(in: 0...), default: "0", section: "Clients",
        help: "Most client connections from one address (0: no limit); more get 429.")
    static let maxRequestHead = Flag(
        "max-request-head", .byteSize.validate { $0 >= 1024 ? nil : "must be at least 1KiB" }, default: "32KiB",
        section: "Clients", help: "Largest request head (request line and headers); a larger one gets 431.")
    static let requestHeadTimeout = Flag(
        "request-head-timeout", .duration, default: "10s", section: "Clients",
        help: "Time a client has to send a complete request head (408 after it); also the keep-alive idle time.")

    // MARK: Operations
    static let logLevel = Flag(
        "log-level", .oneOf(["trace", "debug", "info", "notice", "warning", "error", "critical"]), default: "info",
        section: "Operations", help: "Least severe log level written to stderr.")
    static let logFormat = Flag(
        "log-format", .oneOf(["text", "json"]), default: "text", section: "Operations",
        help: "Log line format on stderr: text, or one JSON object per line.")
    static let threads = Flag(
        "threads", .integer(in: 0...1024), default: "0", section: "Operations",
        help: "Event loop threads (0: one per CPU the process may run on, as `taskset`, cpusets and CPU quotas allow).")
    static let ioUring = Flag<Bool>(
        boolean: "io-uring", default: true, section: "Operations",
        help: "Write each event to the plaintext HTTP/1.1 clients of a thread with one io_uring submission instead of "
            + "one write() per client (Linux 5.6 or later, where seccomp allows io_uring; elsewhere the gateway says so "
            + "and writes one write() each). TLS and HTTP/2 clients are written as usual. --io-uring=false: never.")
    static let check = Flag<Bool>(
        boolean: "check", section: "Operations",
        help: "Validate the flags and flag files, print the effective configuration and exit (0 valid, 1 not).")
    static let demo = Flag<Bool>(
        boolean: "demo", section: "Operations",
        help: "Start the built-in demo origin (ticks every second, drops its connection every ~20s, answers POST "
            + "/demo/chat with an LLM-style stream), route / to it "
            + "and open two cuttable network paths for its page (docs/client.md); --heartbeat defaults to 2s.")
    static let demoTick = Flag(
        "demo-tick", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "1s",
        section: "Operations", help: "With --demo: time between the demo origin's events.")
    static let demoDropEvery = Flag(
        "demo-drop-every", .duration, default: "20s", section: "Operations",
        help: "With --demo: the demo origin drops each connection after about this long (0: never).")
    static let help = Flag<Bool>(boolean: "help", section: "Operations", help: "Show this help and exit.")
    static let drainWindow = Flag(
        "drain-window", .duration, default: "10s", section: "Operations",
        help: "On SIGTERM (and after an upgrade hand-over), close each streaming client at its own random moment "
            + "within this window, after a retry: line, while streams keep running; then exit. 0: close all at once.")
    static let version = Flag<Bool>(boolean: "version", section: "Operations", help: "Print the version and exit.")
    static let adminListen = OptionalFlag(
        "admin-listen", .listenAddress, valueName: "HOST:PORT", section: "Monitoring",
        help: "Serve /metrics (Prometheus), /healthz, /readyz, /status.json and the live status page at / on this "
            + "address (off unless set; never on the public listeners). Keep it private: 127.0.0.1 or an internal network.")

    // MARK: Scale-out
    static let redis = OptionalFlag(
        "redis", FlagValueParser.custom(valueName: "URL") { text in try RedisURL(parsing: text) }
            .displayed(as: RedisURL.redactingPassword), section: "Scale-out",
        help: "Act as one gateway with every instance that uses this Redis (docs/scale-out.md): one origin "
            + "connection per stream across them, replay from any of them. redis://[user:password@]HOST:PORT[/DB], "
            + "rediss://… (TLS), or redis+cluster://HOST:PORT[,HOST:PORT…] (seeds of a Redis Cluster). "
            + "Needs --redis-key-secret-file.")
    static let redisPasswordFile = OptionalFlag(
        "redis-password-file", .string, valueName: "PATH", section: "Scale-out",
        help: "File whose first line is the Redis password (overrides one in the URL).")
    static let redisKeySecretFile = OptionalFlag(
        "redis-key-secret-file", .string, valueName: "PATH", section: "Scale-out",
        help: "File holding a secret (at least 16 bytes) that every instance shares: Redis keys are a keyed hash of "
            + "the stream key with it, so no URL, credential or cookie is stored in Redis.")
    static let redisCA = OptionalFlag(
        "redis-ca", .string, valueName: "PEM", section: "Scale-out",
        help: "Extra CA certificate (PEM file) to trust for rediss:// besides the system's CA store.")
    static let redisLease = Flag(
        "redis-lease", .duration.validate { $0 >= .milliseconds(300) ? nil : "must be at least 300ms" }, default: "5s",
        section: "Scale-out",
        help: "How long a stream's owner keeps it without renewing: another instance takes over a dead owner's "
            + "streams about this long after it died.")
    static let redisTimeout = Flag(
        "redis-timeout", .duration.validate { $0 >= .milliseconds(50) ? nil : "must be at least 50ms" }, default: "2s",
        section: "Scale-out",
        help: "A Redis command without an answer this long counts as Redis being down (the connection is replaced "
            + "and streams read their origins themselves until Redis answers again).")
    static let instanceName = OptionalFlag(
        "instance-name", .string.validate(Self.singleLine), valueName: "NAME", section: "Scale-out",
        help: "This instance's name in leases and on the status page (default: host name and process id).")

    static let set = FlagSet([
        listen, route, upstream, shareBy, unsharedRoute, clientScriptPath, lastEventIDParam,
        tlsListen, tlsCert, tlsKey, h2MaxStreams, upstreamCA, upstreamInsecure,
        heartbeat, heartbeatComment, heartbeatEvent, openingComment, clientRetry, clientRetryJitter,
        reconnectMin, reconnectMax, upstreamIdleTimeout, upstreamGiveUp, upstreamConnectTimeout, upstreamHeadTimeout, maxEventSize,
        replayEvents, replayBytes, replayAge, replayMiss, resumeWait, gapEvent, assignIDs, streamLinger, resumeWindow,
        privateStreamBytes, privateStreamsMemory,
        clientBuffer, maxClients, maxClientsPerIP, maxRequestHead, requestHeadTimeout,
        adminListen, drainWindow, logLevel, logFormat, threads, ioUring, check, demo, demoTick, demoDropEvery, help, version,
        redis, redisPasswordFile, redisKeySecretFile, redisCA, redisLease, redisTimeout, instanceName,
    ])

    @Sendable static func singleLine(_ text: String) -> String? {
        text.contains(where: { $0 == "\r" || $0 == "\n" }) ? "must be a single line" : nil
    }

    @Sendable static func eventName(_ text: String) -> String? {
        if text.isEmpty { return "must not be empty" }
        return Self.singleLine(text)
    }
}

/// The settings `lifeline` runs with, derived from the flags.
struct LifelineSettings {
    var gateway: GatewayConfiguration
    var demo: DemoSettings?
    /// `--admin-listen`, if set.
    var adminListen: GatewayConfiguration.ListenAddress?
    var drainWindow: TimeAmount = .seconds(10)
    var logLevel: String
    var logFormat: String
    /// Event loops to run (resolved: never 0).
    var threads: Int
    /// `--redis` and its companions, read and checked.
    var redis: RedisSettings?

    struct RedisSettings {
        var url: RedisURL
        var password: String?
        var keySecret: [UInt8]
        var caPath: String?
        var lease: TimeAmount
        var timeout: TimeAmount
        var instanceName: String
    }

    struct DemoSettings {
        var tick: TimeAmount
        var dropEvery: TimeAmount?
    }

    /// Checks what no single flag can and builds the configuration.
    static func from(_ flags: ParsedFlags) -> Result<LifelineSettings, FlagErrors> {
        typealias F = LifelineFlags
        var errors: [FlagError] = []
        var routes = flags[F.route]
        if let upstream = flags[F.upstream] {
            routes.insert(Route(prefix: "/", origin: upstream), at: 0)
        }
        let demo = flags[F.demo]
        if routes.isEmpty && !demo {
            errors.append(FlagError(
                location: nil, flag: "route",
                message: "no route: give --route=PREFIX=URL or --upstream=URL (or --demo for the built-in demo origin)"))
        }
        for prefix in flags[F.unsharedRoute] where !routes.contains(where: { $0.prefix == prefix }) {
            errors.append(flags.error(at: F.unsharedRoute, "\(prefix) is not the prefix of any --route"))
        }
        let certificates = flags[F.tlsCert]
        let keys = flags[F.tlsKey]
        if certificates.count != keys.count {
            errors.append(flags.error(
                at: certificates.count > keys.count ? F.tlsCert.name : F.tlsKey.name,
                "give --tls-cert and --tls-key in pairs (\(certificates.count) certificates, \(keys.count) keys)"))
        }
        if !flags[F.tlsListen].isEmpty && certificates.isEmpty {
            errors.append(flags.error(at: F.tlsListen, "needs --tls-cert and --tls-key"))
        }
        let reconnectMin = flags[F.reconnectMin]
        let reconnectMax = flags[F.reconnectMax]
        if reconnectMin > reconnectMax {
            errors.append(flags.error(at: F.reconnectMin, "must not be more than --reconnect-max (\(reconnectMax))"))
        }
        if reconnectMin == .zero {
            errors.append(flags.error(at: F.reconnectMin, "must be more than 0"))
        }
        if flags[F.clientRetryJitter] > .zero && flags[F.clientRetry] == nil {
            errors.append(flags.error(at: F.clientRetryJitter, "needs --client-retry"))
        }
        func time(_ duration: FlagDuration) -> TimeAmount { .nanoseconds(duration.nanoseconds) }
        let redis = Self.redisSettings(flags, errors: &errors)
        guard errors.isEmpty else { return .failure(FlagErrors(errors)) }

        func optionalTime(_ duration: FlagDuration) -> TimeAmount? { duration > .zero ? time(duration) : nil }

        var gateway = GatewayConfiguration(
            listen: flags[F.listen].map { .init(host: $0.isAnyHost ? "0.0.0.0" : $0.host, port: $0.port) },
            tlsListen: flags[F.tlsListen].map { .init(host: $0.isAnyHost ? "0.0.0.0" : $0.host, port: $0.port) },
            tlsCertificates: Array(zip(certificates, keys)).map { (certificate: $0.0, key: $0.1) },
            h2MaxStreams: flags[F.h2MaxStreams],
            upstreamCA: flags[F.upstreamCA],
            upstreamInsecure: flags[F.upstreamInsecure],
            routes: routes,
            sharePolicy: flags[F.shareBy],
            unsharedRoutes: Set(flags[F.unsharedRoute]),
            // The demo page's watchdog notices a cut within 2.5 heartbeats: seconds, not a minute.
            heartbeat: demo && !flags.isSet(F.heartbeat.name) ? .seconds(2) : optionalTime(flags[F.heartbeat]),
            heartbeatComment: flags[F.heartbeatComment],
            heartbeatEvent: flags[F.heartbeatEvent],
            openingComment: flags[F.openingComment],
            clientRetry: flags[F.clientRetry].map(time),
            clientRetryJitter: time(flags[F.clientRetryJitter]),
            clientBuffer: flags[F.clientBuffer],
            lastEventIDParameter: flags[F.lastEventIDParam],
            clientScriptPath: flags[F.clientScriptPath].isEmpty ? nil : flags[F.clientScriptPath],
            stream: StreamConfiguration(
                replayLimits: .init(
                    events: flags[F.replayEvents],
                    bytes: flags[F.replayBytes],
                    age: time(flags[F.replayAge])
                ),
                linger: time(flags[F.streamLinger]),
                replayMiss: flags[F.replayMiss],
                gapEvent: flags[F.gapEvent],
                assignIDs: flags[F.assignIDs],
                forwardOriginRetry: flags[F.clientRetry] == nil,
                resumeWait: time(flags[F.resumeWait])
            ),
            upstream: UpstreamSession.Configuration(
                reconnectMin: time(reconnectMin),
                reconnectMax: time(reconnectMax),
                idleTimeout: optionalTime(flags[F.upstreamIdleTimeout]),
                giveUp: optionalTime(flags[F.upstreamGiveUp]),
                maxEventSize: flags[F.maxEventSize],
                connectTimeout: time(flags[F.upstreamConnectTimeout]),
                headTimeout: time(flags[F.upstreamHeadTimeout])
            ),
            maxClients: flags[F.maxClients] > 0 ? flags[F.maxClients] : nil,
            maxClientsPerIP: flags[F.maxClientsPerIP] > 0 ? flags[F.maxClientsPerIP] : nil,
            maxRequestHeadSize: flags[F.maxRequestHead],
            requestHeadTimeout: time(flags[F.requestHeadTimeout])
        )
        gateway.stream.resumeWindow = time(flags[F.resumeWindow])
        gateway.stream.privateStreamBytes = flags[F.privateStreamBytes]
        gateway.privateStreamsMemory = flags[F.privateStreamsMemory]
        gateway.ioUring = flags[F.ioUring]
        return .success(LifelineSettings(
            gateway: gateway,
            demo: demo ? DemoSettings(tick: time(flags[F.demoTick]), dropEvery: optionalTime(flags[F.demoDropEvery])) : nil,
            adminListen: flags[F.adminListen].map { .init(host: $0.isAnyHost ? "0.0.0.0" : $0.host, port: $0.port) },
            drainWindow: time(flags[F.drainWindow]),
            logLevel: flags[F.logLevel],
            logFormat: flags[F.logFormat],
            threads: EventLoopCount.resolve(requested: flags[F.threads]),
            redis: redis
        ))
    }

    /// `--redis` and the files it needs, read now so that a bad file is a flag error.
    private static func redisSettings(_ flags: ParsedFlags, errors: inout [FlagError]) -> RedisSettings? {
        typealias F = LifelineFlags
        guard let url = flags[F.redis] else {
            for flag in [F.redisPasswordFile, F.redisKeySecretFile, F.redisCA, F.instanceName] where flags[flag] != nil {
                errors.append(flags.error(at: flag, "needs --redis"))
            }
            return nil
        }
        func read(_ path: String, for flag: OptionalFlag<String>) -> [UInt8]? {
            do {
                return try FileContents.read(path)
            } catch {
                errors.append(flags.error(at: flag, "cannot read \(path): \(error)"))
                return nil
            }
        }
        var password = url.password
        if let path = flags[F.redisPasswordFile], let bytes = read(path, for: F.redisPasswordFile) {
            let firstLine = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? []
            password = String(decoding: firstLine.filter { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
            if password?.isEmpty ?? true {
                errors.append(flags.error(at: F.redisPasswordFile, "\(path) holds no password on its first line"))
            }
        }
        var secret: [UInt8] = []
        if let path = flags[F.redisKeySecretFile] {
            if let bytes = read(path, for: F.redisKeySecretFile) {
                // A trailing newline from an editor or `echo` is not part of the secret.
                var trimmed = bytes[...]
                while let last = trimmed.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "\r") { trimmed = trimmed.dropLast() }
                secret = Array(trimmed)
                if secret.count < 16 {
                    errors.append(flags.error(at: F.redisKeySecretFile, "\(path) holds \(secret.count) bytes; the secret must be at least 16"))
                }
            }
        } else {
            errors.append(flags.error(at: F.redis, "needs --redis-key-secret-file (a secret every instance shares; Redis keys are a keyed hash with it)"))
        }
        if flags[F.redisCA] != nil && !url.usesTLS {
            errors.append(flags.error(at: F.redisCA, "needs a rediss:// URL"))
        }
        return RedisSettings(
            url: url, password: password, keySecret: secret, caPath: flags[F.redisCA],
            lease: time(flags[F.redisLease]), timeout: time(flags[F.redisTimeout]),
            instanceName: flags[F.instanceName] ?? InstanceName.default()
        )
        func time(_ duration: FlagDuration) -> TimeAmount { .nanoseconds(duration.nanoseconds) }
    }
}

/// Flags of `lifeline demo-origin`, which runs only the demo origin.
enum DemoOriginFlags {
    static let listen = Flag(
        "listen", .listenAddress, default: "127.0.0.1:3000", valueName: "HOST:PORT", section: "Demo origin",
        help: "Address to serve the demo origin on.")
    static let tick = Flag(
        "tick", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "1s", section: "Demo origin",
        help: "Time between events.")
    static let dropEvery = Flag(
        "drop-every", .duration, default: "20s", section: "Demo origin",
        help: "Drop each connection after about this long (0: never).")
    static let help = Flag<Bool>(boolean: "help", section: "Demo origin", help: "Show this help and exit.")

    static let set = FlagSet([listen, tick, dropEvery, help])
}
