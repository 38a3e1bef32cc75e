#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import NIOConcurrencyHelpers
import Server

/// Gathers what the admin endpoints show from a running gateway, and remembers the last
/// samples for rates and sparklines. Gathering hops to each event loop once (counters, stream
/// statuses): it never takes a lock that the data path takes.
final class StatusSampler: Sendable {
    /// One look at the gateway.
    struct Gathered: Sendable {
        var at: Double
        var counters: GatewayCounters
        var streams: [StreamStatus]
        var recent: [RecentEvent]
        var process: ProcessFigures
        var tlsHandshakeFailures: Int
        var state: String
        /// With `--redis`: this instance's name and whether the store answers.
        var sharedStore: StatusReport.SharedStore?
    }

    private struct StreamMemory {
        var at: Double
        var received: Int
        var sent: Int
        var receivedPerSecond = 0.0
        var sentPerSecond = 0.0
        var history: [Double] = []
    }

    private struct Memory {
        var streams: [String: StreamMemory] = [:]
        var previous: (at: Double, counters: GatewayCounters)?
        var eventsReceivedPerSecond = 0.0
        var eventsSentPerSecond = 0.0
        var bytesSentPerSecond = 0.0
    }

    static let historyLength = 60

    private let gateway: GatewayServer
    private let state: @Sendable () -> String
    private let memory = NIOLockedValueBox(Memory())

    init(gateway: GatewayServer, state: @escaping @Sendable () -> String) {
        self.gateway = gateway
        self.state = state
    }

    /// The process's lifecycle state now (`ready`, `draining`, ...).
    var currentState: String { self.state() }

    /// With `--redis`: this instance's name and whether the store answers its probe.
    var sharedStore: StatusReport.SharedStore? {
        self.gateway.configuration.sharedGateway.map { .init(instance: $0.store.instanceName, reachable: $0.store.isReachable) }
    }

    /// - Parameter countingOpenFiles: see `ProcessFigures.read`; without it `openFiles` is 0.
    func gather(countingOpenFiles: Bool = true) async -> Gathered {
        let counters = await self.gateway.metrics.snapshot()
        let streams = await self.gateway.hub.statuses()
        let recent = await self.gateway.metrics.recentEvents()
        return Gathered(
            at: WallClock.now(),
            counters: counters,
            streams: streams,
            recent: recent,
            process: ProcessFigures.read(countingOpenFiles: countingOpenFiles),
            tlsHandshakeFailures: self.gateway.tlsMetrics.snapshot.handshakesFailed,
            state: self.state(),
            sharedStore: self.sharedStore
        )
    }

    /// Gathers and moves the rates and histories on (about once a second).
    func sample(countingOpenFiles: Bool = true) async -> Gathered {
        let gathered = await self.gather(countingOpenFiles: countingOpenFiles)
        self.memory.withLockedValue { memory in
            if let previous = memory.previous, gathered.at > previous.at {
                let seconds = gathered.at - previous.at
                memory.eventsReceivedPerSecond = Double(gathered.counters.eventsReceived - previous.counters.eventsReceived) / seconds
                memory.eventsSentPerSecond = Double(gathered.counters.eventsSent - previous.counters.eventsSent) / seconds
                memory.bytesSentPerSecond = Double(gathered.counters.bytesSent - previous.counters.bytesSent) / seconds
            }
            memory.previous = (gathered.at, gathered.counters)
            var streams: [String: StreamMemory] = [:]
            streams.reserveCapacity(gathered.streams.count)
            for status in gathered.streams {
                var entry = memory.streams[status.id]
                    ?? StreamMemory(at: gathered.at - status.ageSeconds, received: 0, sent: 0)
                let seconds = gathered.at - entry.at
                if seconds > 0 {
                    entry.receivedPerSecond = max(0, Double(status.eventsReceived - entry.received) / seconds)
                    entry.sentPerSecond = max(0, Double(status.eventsSent - entry.sent) / seconds)
                }
                entry.history.append(entry.receivedPerSecond)
                if entry.history.count > Self.historyLength {
                    entry.history.removeFirst(entry.history.count - Self.historyLength)
                }
                entry.at = gathered.at
                entry.received = status.eventsReceived
                entry.sent = status.eventsSent
                streams[status.id] = entry
            }
            memory.streams = streams  // ended streams are forgotten
        }
        return gathered
    }

    /// The report for `gathered`, its streams cut to the first `top` matching `filter`.
    func report(_ gathered: Gathered, top: Int, filter: String) -> StatusReport {
        let memory = self.memory.withLockedValue { $0 }
        let counters = gathered.counters
        let needle = filter.lowercased()
        let matching = needle.isEmpty
            ? gathered.streams
            : gathered.streams.filter { $0.path.lowercased().contains(needle) || $0.origin.lowercased().contains(needle) }
        let shown = matching.sorted {
            ($0.subscribers, $0.eventsReceived, $1.path) > ($1.subscribers, $1.eventsReceived, $0.path)
        }.prefix(top)
        return StatusReport(
            at: gathered.at,
            process: .init(
                version: LifelineVersion.current,
                pid: Int(getpid()),
                uptimeSeconds: gathered.process.startTime > 0 ? max(0, gathered.at - gathered.process.startTime) : 0,
                residentBytes: gathered.process.residentBytes,
                openFiles: gathered.process.openFiles,
                maxFiles: gathered.process.maxFiles,
                cpuSeconds: gathered.process.cpuSeconds,
                threads: gathered.process.threads,
                state: gathered.state
            ),
            connections: .init(
                http1: counters.connectionsOpen.http1,
                http1TLS: counters.connectionsOpen.http1TLS,
                h2: counters.connectionsOpen.h2,
                h2TLS: counters.connectionsOpen.h2TLS,
                total: counters.connectionsOpen.total
            ),
            subscribers: counters.subscribers,
            totals: .init(
                eventsReceived: counters.eventsReceived,
                eventsSent: counters.eventsSent,
                heartbeatsSent: counters.heartbeatsSent,
                bytesSent: counters.bytesSent,
                replayHits: counters.replayHits,
                replayMisses: counters.replayMisses,
                upstreamReconnects: counters.upstreamReconnects.total,
                slowClientDisconnects: counters.slowClientDisconnects,
                requestsRefused: counters.refused.total,
                tlsHandshakeFailures: gathered.tlsHandshakeFailures,
                eventsReceivedPerSecond: memory.eventsReceivedPerSecond,
                eventsSentPerSecond: memory.eventsSentPerSecond,
                bytesSentPerSecond: memory.bytesSentPerSecond
            ),
            streamCount: gathered.streams.count,
            upstreamConnected: gathered.streams.count { $0.upstreamState == "connected" || $0.upstreamState == "following" },
            filter: filter,
            top: top,
            matching: matching.count,
            streams: shown.map { status in
                let rates = memory.streams[status.id]
                return StatusReport.Stream(
                    id: status.id,
                    path: status.path,
                    origin: status.origin,
                    shared: status.sharing.isShared,
                    role: status.role.rawValue,
                    owner: status.owner == "self" ? gathered.sharedStore?.instance : status.owner,
                    subscribers: status.subscribers,
                    ageSeconds: status.ageSeconds,
                    upstream: .init(
                        state: status.upstreamState,
                        sinceSeconds: status.upstreamStateSeconds,
                        reconnects: status.reconnects,
                        lastError: status.lastError
                    ),
                    events: .init(
                        received: status.eventsReceived,
                        sent: status.eventsSent,
                        receivedPerSecond: rates?.receivedPerSecond ?? 0,
                        sentPerSecond: rates?.sentPerSecond ?? 0,
                        history: rates?.history ?? []
                    ),
                    replay: .init(
                        events: status.replayEvents,
                        bytes: status.replayBytes,
                        ageSeconds: status.replayAgeSeconds,
                        maxEvents: status.replayEventLimit,
                        maxBytes: status.replayByteLimit,
                        maxAgeSeconds: status.replayAgeLimitSeconds
                    )
                )
            },
            sharedStore: gathered.sharedStore,
            recent: gathered.recent.suffix(100).map {
                .init(at: $0.at, kind: $0.kind.rawValue, stream: $0.stream, detail: $0.detail, count: $0.count)
            }
        )
    }
}
