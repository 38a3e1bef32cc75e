import Histogram

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The JSON a load run prints at the end, and what `merge` reads back.
///
/// Counts are per subscription (an SSE request: one per connection over HTTP/1.1). Latency, time
/// to first byte and connect time are in microseconds. `histograms` carries every recorded value
/// as `value:count` pairs, so runs split over processes merge exactly (percentiles cannot be
/// averaged).
struct LoadSummary: Codable {
    struct Percentiles: Codable {
        var count: UInt64
        var min: UInt64
        var p50: UInt64
        var p90: UInt64
        var p99: UInt64
        var p999: UInt64
        var max: UInt64
        var mean: Double

        init(_ histogram: Histogram<UInt64>) {
            self.count = histogram.totalCount
            let empty = histogram.totalCount == 0
            self.min = empty ? 0 : histogram.min
            self.p50 = histogram.valueAtPercentile(50)
            self.p90 = histogram.valueAtPercentile(90)
            self.p99 = histogram.valueAtPercentile(99)
            self.p999 = histogram.valueAtPercentile(99.9)
            self.max = empty ? 0 : histogram.maxRecorded
            self.mean = (histogram.mean * 10).rounded() / 10
        }
    }

    struct Histograms: Codable {
        var latencyUs: String
        var timeToFirstByteUs: String
        var connectUs: String
        /// The storm's resume times; absent without a storm (and in summaries from before it).
        var resumeUs: String?
    }

    /// The reconnect storm (`--storm-at`, `--storm-at-epoch`); present only for a run with one.
    struct Storm: Codable {
        /// The moment asked for, ms since the epoch (the first shard's, after a merge).
        var atEpochMs: Int64?
        /// The first and the last close the storm made, µs since the epoch (0: none), and the
        /// spread between them in ms: how much "at the same moment" the drops really were.
        var firstDropEpochUs: Int64
        var lastDropEpochUs: Int64
        var dropSpreadMs: Double
        /// Streaming subscriptions whose connection the storm closed.
        var dropped: Int
        /// Subscriptions that were not streaming at the storm (so not dropped).
        var notStreaming: Int
        /// Dropped subscriptions that got an event after the drop; `notResumed` the others.
        var resumed: Int
        var notResumed: Int
        /// Per resumed subscription: from its drop to the first event on its new connection.
        var resumeUs: Percentiles
    }

    var tool = "lifeline-bench load"
    var url: String
    var `protocol`: String
    /// `I/N` for one process, `merged N` for `lifeline-bench merge` output.
    var shard: String
    var connections: Int
    var subscriptions: Int
    var streams: Int
    var multiplex: Int
    var durationS: Double
    var rampS: Double
    var elapsedS: Double
    var sourceAddresses: Int
    var lastEventId: Bool

    /// Subscriptions streaming (200 + text/event-stream) when the run ended.
    var held: Int
    /// Subscriptions not held at the end: `subscriptions - held`.
    var failed: Int
    var attempts: Int
    var connectErrors: Int
    var badStatus: [String: Int]
    var notEventStream: Int
    var closedBeforeHead: Int
    /// Streams that ended (server close, reset, end of body) before the run did.
    var dropped: Int
    var reconnects: Int
    var protocolErrors: Int

    var events: Int
    var eventsPerS: Double
    /// Times an id jumped by more than one; `missingEvents` is how many ids were skipped in all.
    var gaps: Int
    var missingEvents: Int
    /// Events whose id was not greater than the last one received on that subscription.
    var duplicates: Int
    var eventsWithoutId: Int
    var unstampedEvents: Int
    /// Comment lines (Lifeline's opening comment and heartbeats).
    var comments: Int
    /// Named events without an id (Lifeline's `--heartbeat-event`); not in `events`.
    var heartbeatEvents: Int
    var bytes: Int

    var latencyUs: Percentiles
    var timeToFirstByteUs: Percentiles
    var connectUs: Percentiles
    var errors: [String: Int]
    var storm: Storm?
    var histograms: Histograms

    init(plan: LoadPlan, url: String, counters: LoadCounters, elapsedSeconds: Double) {
        self.url = url
        self.protocol = plan.proto.rawValue
        self.shard = plan.shard.description
        self.connections = plan.shardConnectionCount
        self.subscriptions = plan.shardConnectionCount * plan.multiplex
        self.streams = plan.streams
        self.multiplex = plan.multiplex
        self.durationS = Double(plan.durationNanoseconds) / 1e9
        self.rampS = Double(plan.rampNanoseconds) / 1e9
        self.elapsedS = (elapsedSeconds * 1000).rounded() / 1000
        self.sourceAddresses = plan.sourceAddresses.count
        self.lastEventId = plan.reconnect
        self.held = 0
        self.failed = 0
        self.attempts = 0
        self.connectErrors = 0
        self.badStatus = [:]
        self.notEventStream = 0
        self.closedBeforeHead = 0
        self.dropped = 0
        self.reconnects = 0
        self.protocolErrors = 0
        self.events = 0
        self.eventsPerS = 0
        self.gaps = 0
        self.missingEvents = 0
        self.duplicates = 0
        self.eventsWithoutId = 0
        self.unstampedEvents = 0
        self.comments = 0
        self.heartbeatEvents = 0
        self.bytes = 0
        self.latencyUs = Percentiles(counters.latency)
        self.timeToFirstByteUs = Percentiles(counters.timeToFirstByte)
        self.connectUs = Percentiles(counters.connectTime)
        self.errors = [:]
        self.histograms = Histograms(latencyUs: "", timeToFirstByteUs: "", connectUs: "")
        if let stormAt = plan.stormAtWallNanoseconds {
            self.storm = Self.storm(counters, atEpochMs: stormAt / 1_000_000)
        }
        self.apply(counters)
    }

    /// Sets every count and distribution from `counters` (the run's identity fields stay).
    mutating func apply(_ counters: LoadCounters) {
        self.held = counters.held
        self.failed = max(0, self.subscriptions - counters.held)
        self.attempts = counters.attempts
        self.connectErrors = counters.connectErrors
        self.badStatus = Dictionary(uniqueKeysWithValues: counters.badStatus.map { (String($0.key), $0.value) })
        self.notEventStream = counters.notEventStream
        self.closedBeforeHead = counters.closedBeforeHead
        self.dropped = counters.dropped
        self.reconnects = counters.reconnects
        self.protocolErrors = counters.protocolErrors
        self.events = counters.events
        self.eventsPerS = self.elapsedS > 0 ? (Double(counters.events) / self.elapsedS * 10).rounded() / 10 : 0
        self.gaps = counters.gaps
        self.missingEvents = counters.missingEvents
        self.duplicates = counters.duplicates
        self.eventsWithoutId = counters.eventsWithoutID
        self.unstampedEvents = counters.unstampedEvents
        self.comments = counters.comments
        self.heartbeatEvents = counters.heartbeatEvents
        self.bytes = counters.bytes
        self.latencyUs = Percentiles(counters.latency)
        self.timeToFirstByteUs = Percentiles(counters.timeToFirstByte)
        self.connectUs = Percentiles(counters.connectTime)
        self.errors = counters.errors
        // A storm block for a run that planned one, or whose counts show one (a merge).
        let hasStorm = self.storm != nil || counters.stormDropped > 0 || counters.stormNotStreaming > 0
        if hasStorm {
            self.storm = Self.storm(counters, atEpochMs: self.storm?.atEpochMs)
        }
        self.histograms = Histograms(
            latencyUs: Self.encode(counters.latency),
            timeToFirstByteUs: Self.encode(counters.timeToFirstByte),
            connectUs: Self.encode(counters.connectTime),
            resumeUs: hasStorm ? Self.encode(counters.resumeLatency) : nil)
    }

    private static func storm(_ counters: LoadCounters, atEpochMs: Int64?) -> Storm {
        let spread = counters.stormFirstDropWall > 0 ? counters.stormLastDropWall - counters.stormFirstDropWall : 0
        return Storm(
            atEpochMs: atEpochMs,
            firstDropEpochUs: counters.stormFirstDropWall / 1_000, lastDropEpochUs: counters.stormLastDropWall / 1_000,
            dropSpreadMs: (Double(spread) / 1e5).rounded() / 10,
            dropped: counters.stormDropped, notStreaming: counters.stormNotStreaming, resumed: counters.resumed,
            notResumed: max(0, counters.stormDropped - counters.resumed),
            resumeUs: Percentiles(counters.resumeLatency))
    }

    /// The counts and histograms back, for merging.
    func counters() throws -> LoadCounters {
        var counters = LoadCounters()
        counters.held = self.held
        counters.attempts = self.attempts
        counters.connectErrors = self.connectErrors
        for (status, count) in self.badStatus {
            counters.badStatus[Int(status) ?? 0, default: 0] += count
        }
        counters.notEventStream = self.notEventStream
        counters.closedBeforeHead = self.closedBeforeHead
        counters.dropped = self.dropped
        counters.reconnects = self.reconnects
        counters.protocolErrors = self.protocolErrors
        counters.errors = self.errors
        counters.events = self.events
        counters.gaps = self.gaps
        counters.missingEvents = self.missingEvents
        counters.duplicates = self.duplicates
        counters.eventsWithoutID = self.eventsWithoutId
        counters.unstampedEvents = self.unstampedEvents
        counters.comments = self.comments
        counters.heartbeatEvents = self.heartbeatEvents
        counters.bytes = self.bytes
        try Self.decode(self.histograms.latencyUs, into: &counters.latency)
        try Self.decode(self.histograms.timeToFirstByteUs, into: &counters.timeToFirstByte)
        try Self.decode(self.histograms.connectUs, into: &counters.connectTime)
        if let storm = self.storm {
            counters.stormDropped = storm.dropped
            counters.stormNotStreaming = storm.notStreaming
            counters.resumed = storm.resumed
            counters.stormFirstDropWall = storm.firstDropEpochUs * 1_000
            counters.stormLastDropWall = storm.lastDropEpochUs * 1_000
            try Self.decode(self.histograms.resumeUs ?? "", into: &counters.resumeLatency)
        }
        return counters
    }

    func json() -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    static func read(json: [UInt8]) throws -> LoadSummary {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(LoadSummary.self, from: Data(json))
    }

    private static func encode(_ histogram: Histogram<UInt64>) -> String {
        var parts: [String] = []
        for bucket in histogram.recordedValues() {
            parts.append("\(bucket.value):\(bucket.count)")
        }
        return parts.joined(separator: " ")
    }

    private static func decode(_ text: String, into histogram: inout Histogram<UInt64>) throws {
        for part in text.split(separator: " ") {
            let pair = part.split(separator: ":")
            guard pair.count == 2, let value = UInt64(pair[0]), let count = UInt64(pair[1]) else {
                throw UsageError("bad histogram entry \"\(part)\"")
            }
            histogram.record(min(value, LoadCounters.highestTrackable), count: count)
        }
    }
}
