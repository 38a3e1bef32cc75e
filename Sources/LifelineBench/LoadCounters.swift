import Histogram

/// Everything one event loop of the load tool counts. Each loop owns one (no locks, no atomics on
/// the per-event path); the runner copies them once a second for progress and merges them at the end.
struct LoadCounters: Sendable {
    /// Highest value the histograms track, in microseconds (1 h); larger samples are clamped to it.
    static let highestTrackable: UInt64 = 3_600_000_000

    // Subscriptions (an SSE request: one per connection over HTTP/1.1, several over HTTP/2).
    var held = 0
    var attempts = 0
    var connectErrors = 0
    var badStatus: [Int: Int] = [:]
    var notEventStream = 0
    var closedBeforeHead = 0
    var dropped = 0
    var reconnects = 0
    var protocolErrors = 0
    /// A few error descriptions with their counts, so a failed run says why.
    var errors: [String: Int] = [:]

    // Events.
    var events = 0
    var gaps = 0
    var missingEvents = 0
    var duplicates = 0
    var eventsWithoutID = 0
    var unstampedEvents = 0
    var comments = 0
    /// Named events without an id (`--heartbeat-event` heartbeats); not counted in `events`.
    var heartbeatEvents = 0
    var bytes = 0

    var latency = LoadCounters.makeHistogram()
    var timeToFirstByte = LoadCounters.makeHistogram()
    var connectTime = LoadCounters.makeHistogram()

    // The reconnect storm (`--storm-at`), per subscription.
    /// Streaming subscriptions whose connection the storm closed.
    var stormDropped = 0
    /// Subscriptions the storm found not streaming (connecting, waiting to reconnect, failed): not
    /// dropped, so not expected to resume.
    var stormNotStreaming = 0
    /// Dropped subscriptions that have received an event since (on a new connection).
    var resumed = 0
    /// Wall-clock moments (ns) of the storm's first and last close, over every loop and shard: how
    /// close together the drops really were.
    var stormFirstDropWall: Int64 = 0
    var stormLastDropWall: Int64 = 0
    /// Per resumed subscription: its drop to the first event after it, in microseconds.
    var resumeLatency = LoadCounters.makeHistogram()

    static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highestTrackable, numberOfSignificantValueDigits: .three)
    }

    @inline(__always)
    static func record(_ microseconds: Int64, in histogram: inout Histogram<UInt64>) {
        // A negative latency can only come from the wall clock stepping back; count it as 0.
        let value = UInt64(clamping: max(0, microseconds))
        histogram.record(min(value, Self.highestTrackable))
    }

    mutating func noteError(_ description: String) {
        if self.errors[description] != nil || self.errors.count < 20 {
            self.errors[description, default: 0] += 1
        } else {
            self.errors["(other errors)", default: 0] += 1
        }
    }

    mutating func merge(_ other: LoadCounters) {
        self.held += other.held
        self.attempts += other.attempts
        self.connectErrors += other.connectErrors
        self.badStatus.merge(other.badStatus, uniquingKeysWith: +)
        self.notEventStream += other.notEventStream
        self.closedBeforeHead += other.closedBeforeHead
        self.dropped += other.dropped
        self.reconnects += other.reconnects
        self.protocolErrors += other.protocolErrors
        for (description, count) in other.errors {
            self.errors[description, default: 0] += count
        }
        self.events += other.events
        self.gaps += other.gaps
        self.missingEvents += other.missingEvents
        self.duplicates += other.duplicates
        self.eventsWithoutID += other.eventsWithoutID
        self.unstampedEvents += other.unstampedEvents
        self.comments += other.comments
        self.heartbeatEvents += other.heartbeatEvents
        self.bytes += other.bytes
        self.latency.add(other.latency)
        self.timeToFirstByte.add(other.timeToFirstByte)
        self.connectTime.add(other.connectTime)
        self.stormDropped += other.stormDropped
        self.stormNotStreaming += other.stormNotStreaming
        self.resumed += other.resumed
        self.noteStormDrops(first: other.stormFirstDropWall, last: other.stormLastDropWall)
        self.resumeLatency.add(other.resumeLatency)
    }

    /// Widens the storm's span to include `first...last` (0: none yet).
    mutating func noteStormDrops(first: Int64, last: Int64) {
        guard first > 0 else { return }
        self.stormFirstDropWall = self.stormFirstDropWall == 0 ? first : min(self.stormFirstDropWall, first)
        self.stormLastDropWall = max(self.stormLastDropWall, last)
    }
}
