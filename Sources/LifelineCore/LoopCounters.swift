import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One event loop's `GatewayCounters` and its recent notable events. Only code running on
/// `eventLoop` changes them (a plain increment on the data path); readers hop to the loop and
/// copy them, once per scrape.
public final class LoopCounters: @unchecked Sendable {  // confined to `eventLoop`
    public let eventLoop: EventLoop
    public var values = GatewayCounters()
    public private(set) var recent: RecentEvents

    public init(eventLoop: EventLoop, recentCapacity: Int = 64) {
        self.eventLoop = eventLoop
        self.recent = RecentEvents(capacity: recentCapacity)
    }

    /// Notes something an operator would want to see on the status page (an origin went down, a
    /// client was cut for being slow, a refusal). A repeat of the last note within a second is
    /// counted on it instead, so that a flood of refusals keeps the list readable.
    public func note(_ kind: RecentEvent.Kind, _ detail: String, stream: String? = nil) {
        self.recent.add(RecentEvent(at: WallClock.now(), kind: kind, stream: stream, detail: detail))
    }
}

/// Something that happened, for the status page's "recent events".
public struct RecentEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case originDown = "origin_down"
        case originUp = "origin_up"
        case originEnded = "origin_ended"
        case slowClient = "slow_client"
        case refused
        /// The shared store (Redis) could not be used; the stream reads the origin itself.
        case storeDown = "store_down"
    }

    /// Seconds since the Unix epoch.
    public var at: Double
    public var kind: Kind
    /// The stream it concerns, as `StreamKey.displayPath` shows it.
    public var stream: String?
    public var detail: String
    /// How many times it happened in a row (within a second of each other).
    public var count = 1

    public init(at: Double, kind: Kind, stream: String?, detail: String, count: Int = 1) {
        self.at = at
        self.kind = kind
        self.stream = stream
        self.detail = detail
        self.count = count
    }
}

/// The last `capacity` notable events of one loop, oldest first.
public struct RecentEvents: Sendable {
    public let capacity: Int
    private var ring: [RecentEvent] = []
    private var next = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    mutating func add(_ event: RecentEvent) {
        let last = self.ring.isEmpty ? nil : (self.next - 1 + self.ring.count) % self.ring.count
        if let last, self.ring[last].kind == event.kind, self.ring[last].stream == event.stream,
            self.ring[last].detail == event.detail, event.at - self.ring[last].at < 1
        {
            self.ring[last].count += 1
            self.ring[last].at = event.at
            return
        }
        if self.ring.count < self.capacity {
            self.ring.append(event)
            self.next = self.ring.count % self.capacity
        } else {
            self.ring[self.next] = event
            self.next = (self.next + 1) % self.capacity
        }
    }

    /// Oldest first.
    public var events: [RecentEvent] {
        guard self.ring.count == self.capacity else { return self.ring }
        return Array(self.ring[self.next...] + self.ring[..<self.next])
    }
}

/// Calendar time, for what people read (the status page), never for timers.
public enum WallClock {
    public static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
