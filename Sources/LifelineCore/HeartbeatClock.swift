import NIOCore

/// Sends heartbeats to the idle subscribers of one event loop from a single timer.
///
/// Subscribers sit in a list ordered by when they were last written to: a write moves a
/// subscriber to the tail, so the head is always the one idle longest. The timer is set for the
/// head's deadline; when it fires, the due subscribers at the head get their heartbeat and move to
/// the tail. Cost per write is O(1), per heartbeat O(1), and a busy loop wakes at most once per
/// interval. A write does not reschedule the timer: if the head was written to, the timer finds
/// nothing due and is set again for the new head.
public final class HeartbeatClock: @unchecked Sendable {  // confined to `eventLoop`
    public let eventLoop: EventLoop
    /// nil when heartbeats are off: then nothing is tracked.
    public private(set) var interval: TimeAmount?
    private var head: HeartbeatEntry?
    private var tail: HeartbeatEntry?
    private var timer: EarliestDeadlineTimer!
    public private(set) var count = 0
    public private(set) var heartbeatsSent = 0

    public init(eventLoop: EventLoop, interval: TimeAmount?) {
        self.eventLoop = eventLoop
        self.interval = (interval.map { $0 > .zero } ?? false) ? interval : nil
        self.timer = EarliestDeadlineTimer(eventLoop: eventLoop) { [weak self] in self?.fire() }
    }

    /// A new interval (a configuration reload): the tracked subscribers get it from now on; with
    /// nil no heartbeats are sent and no new subscriber is tracked.
    public func updateInterval(_ interval: TimeAmount?) {
        self.eventLoop.preconditionInEventLoop()
        self.interval = (interval.map { $0 > .zero } ?? false) ? interval : nil
        self.timer.cancel()
        self.scheduleIfNeeded()
    }

    /// Starts tracking `target`, counting it as written to now.
    public func register(_ target: HeartbeatTarget) -> HeartbeatEntry {
        let entry = TargetEntry(target: target)
        self.register(entry)
        return entry
    }

    /// Starts tracking an entry that exists already (a subscriber's `StreamMembership`, which is
    /// its heartbeat entry too, so that a subscriber costs one object less).
    public func register(_ entry: HeartbeatEntry) {
        self.eventLoop.preconditionInEventLoop()
        guard self.interval != nil, !entry.isLinked else { return }
        entry.lastWrite = self.eventLoop.now
        self.append(entry)
        self.count += 1
        self.scheduleIfNeeded()
    }

    /// Records a write to the entry's subscriber.
    @inline(__always)
    public func touch(_ entry: HeartbeatEntry, now: NIODeadline) {
        guard entry.isLinked else { return }
        entry.lastWrite = now
        if entry !== self.tail {
            self.unlink(entry)
            self.append(entry)
        }
    }

    public func remove(_ entry: HeartbeatEntry) {
        guard entry.isLinked else { return }
        self.unlink(entry)
        self.count -= 1
        if self.head == nil {
            self.timer.cancel()
        }
    }

    private func append(_ entry: HeartbeatEntry) {
        entry.previous = self.tail
        entry.next = nil
        entry.isLinked = true
        if let tail = self.tail {
            tail.next = entry
        } else {
            self.head = entry
        }
        self.tail = entry
    }

    private func unlink(_ entry: HeartbeatEntry) {
        if let previous = entry.previous {
            previous.next = entry.next
        } else {
            self.head = entry.next
        }
        if let next = entry.next {
            next.previous = entry.previous
        } else {
            self.tail = entry.previous
        }
        entry.previous = nil
        entry.next = nil
        entry.isLinked = false
    }

    private func scheduleIfNeeded() {
        guard let interval = self.interval, let head = self.head else { return }
        self.timer.schedule(at: head.lastWrite + interval)
    }

    private func fire() {
        guard let interval = self.interval else { return }
        let now = self.eventLoop.now
        // Each due entry is moved to the tail with a fresh time, so this visits each at most once.
        while let entry = self.head, entry.lastWrite + interval <= now {
            guard let target = entry.heartbeatTarget else {
                self.remove(entry)  // its subscriber is gone without removing itself
                continue
            }
            self.touch(entry, now: now)
            self.heartbeatsSent += 1
            target.heartbeatDue()
        }
        self.scheduleIfNeeded()
    }
}

/// A subscriber that can be sent a heartbeat.
public protocol HeartbeatTarget: AnyObject {
    /// Write the heartbeat and flush. Called on the clock's event loop, only between events.
    func heartbeatDue()
}

/// One subscriber's place in its loop's heartbeat list. Not final: `StreamMembership` is one,
/// since every subscriber that gets heartbeats is in a stream; it names its subscriber as the
/// target, so the entry does not hold a second reference to it.
public class HeartbeatEntry {
    // Unowned: a linked entry is kept alive by its predecessor's `next` (or the list head).
    fileprivate unowned(unsafe) var previous: HeartbeatEntry?
    fileprivate var next: HeartbeatEntry?
    fileprivate var isLinked = false
    fileprivate(set) public var lastWrite: NIODeadline = .uptimeNanoseconds(0)

    init() {}

    /// Who gets this entry's heartbeats; nil once it is gone.
    var heartbeatTarget: HeartbeatTarget? { nil }
}

/// An entry for a target that is nothing else (`register(_ target:)`).
private final class TargetEntry: HeartbeatEntry {
    weak var target: HeartbeatTarget?

    init(target: HeartbeatTarget) {
        self.target = target
    }

    override var heartbeatTarget: HeartbeatTarget? { self.target }
}
