import NIOCore

/// One scheduled task for the earliest of many deadlines, moved only when an earlier deadline
/// comes: how a loop's heartbeats, a loop's drain moments and a stream's resume waiters each run
/// from a single timer instead of one per client. Confined to `eventLoop`; the owner calls
/// `schedule` with its earliest deadline after every change, and re-schedules when it fires.
public final class EarliestDeadlineTimer {
    public let eventLoop: EventLoop
    private var task: Scheduled<Void>?
    /// When the task fires; nil when none is scheduled.
    public private(set) var deadline: NIODeadline?
    private let fire: () -> Void

    /// - Parameter fire: runs on the loop at the deadline (the timer is clear by then).
    public init(eventLoop: EventLoop, fire: @escaping () -> Void) {
        self.eventLoop = eventLoop
        self.fire = fire
    }

    deinit {
        self.task?.cancel()
    }

    /// Fires at `deadline` unless it is already set to fire at or before it. Nil: nothing is due.
    public func schedule(at deadline: NIODeadline?) {
        guard let deadline else { return self.cancel() }
        if let current = self.deadline, current <= deadline { return }
        self.task?.cancel()
        self.deadline = deadline
        self.task = self.eventLoop.scheduleTask(deadline: deadline) { [weak self] in
            guard let self else { return }
            self.task = nil
            self.deadline = nil
            self.fire()
        }
    }

    /// Fires at exactly `deadline` (earlier or later than now set), or not at all for nil.
    public func reschedule(at deadline: NIODeadline?) {
        self.cancel()
        self.schedule(at: deadline)
    }

    public func cancel() {
        self.task?.cancel()
        self.task = nil
        self.deadline = nil
    }
}
