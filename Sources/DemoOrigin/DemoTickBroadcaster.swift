import NIOCore

/// A connection that receives ticks from a ``DemoTickBroadcaster``.
///
/// Implementations are confined to the broadcaster's event loop.
protocol DemoTickSubscriber: AnyObject {
    /// When this connection should be dropped, if ever; the broadcaster wakes up for it.
    var dropDeadline: NIODeadline? { get }

    /// Write every event after the last one this connection has sent, up to and including `tick`.
    func deliverTicks(through tick: Int64)

    /// End the response and close the connection; the subscriber unsubscribes itself.
    func drop()
}

/// Drives every streaming connection of one event loop from a single timer.
///
/// With thousands of connections, a timer per connection would mean thousands of wake-ups per
/// tick; one timer per loop wakes once and writes to all of them. The timer is re-armed after each
/// firing for the next tick boundary of the *wall* clock (not with a fixed period, which would drift
/// away from the boundaries that define tick numbers), or for the earliest pending drop if that
/// comes first. It runs only while the loop has subscribers.
///
/// `@unchecked Sendable`: all state is confined to `eventLoop` (every entry point checks that).
/// The type is shared across threads only so that the server can keep one per loop in a locked
/// table and hand it to child channel initializers.
final class DemoTickBroadcaster: @unchecked Sendable {
    let eventLoop: EventLoop
    private let tickMillis: Int64
    private var subscribers: [ObjectIdentifier: DemoTickSubscriber] = [:]
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    /// Wall-clock and monotonic clocks disagree by a little; waking slightly after a boundary
    /// makes sure the new tick number is visible when the timer fires.
    private static let boundarySlack: Int64 = 1

    init(eventLoop: EventLoop, tickMillis: Int64) {
        self.eventLoop = eventLoop
        self.tickMillis = tickMillis
    }

    var subscriberCount: Int {
        self.eventLoop.preconditionInEventLoop()
        return self.subscribers.count
    }

    func subscribe(_ subscriber: DemoTickSubscriber) {
        self.eventLoop.preconditionInEventLoop()
        self.subscribers[ObjectIdentifier(subscriber)] = subscriber
        self.armTimer()
    }

    func unsubscribe(_ subscriber: DemoTickSubscriber) {
        self.eventLoop.preconditionInEventLoop()
        self.subscribers.removeValue(forKey: ObjectIdentifier(subscriber))
        if self.subscribers.isEmpty {
            self.timer?.cancel()
            self.timer = nil
            self.timerDeadline = nil
        }
    }

    /// Arms the timer for the next wake-up, unless it is already armed for that time or earlier.
    private func armTimer() {
        guard !self.subscribers.isEmpty else { return }
        let nowMillis = DemoTicks.wallClockMillis()
        let nextBoundary = (DemoTicks.tick(atMillis: nowMillis, tickMillis: self.tickMillis) + 1) * self.tickMillis
        var deadline = NIODeadline.now() + .milliseconds(nextBoundary - nowMillis + Self.boundarySlack)
        if let earliestDrop = self.subscribers.values.lazy.compactMap(\.dropDeadline).min(), earliestDrop < deadline {
            deadline = earliestDrop
        }
        if self.timer != nil, let current = self.timerDeadline, current <= deadline {
            return
        }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = self.eventLoop.scheduleTask(deadline: deadline) {
            self.timerFired()
        }
    }

    private func timerFired() {
        self.timer = nil
        self.timerDeadline = nil

        // Snapshot: delivering or dropping can close a channel, which unsubscribes synchronously.
        let current = Array(self.subscribers.values)
        let tick = DemoTicks.tick(atMillis: DemoTicks.wallClockMillis(), tickMillis: self.tickMillis)
        for subscriber in current {
            subscriber.deliverTicks(through: tick)
        }
        let now = NIODeadline.now()
        for subscriber in current {
            if let dropDeadline = subscriber.dropDeadline, dropDeadline <= now {
                subscriber.drop()
            }
        }
        self.armTimer()
    }
}
