import NIOCore

/// Runs callbacks at their deadlines from one timer per event loop, as `HeartbeatClock` sends
/// heartbeats: the loop's client connections waiting for a request head (`--request-head-timeout`:
/// slowloris, an idle keep-alive or HTTP/2 connection) each have an entry here instead of a
/// scheduled task of their own.
///
/// Entries sit in a list ordered by deadline. Nearly every entry is added with the loop's one
/// timeout, so it goes at the tail in O(1); after a reload that shortened the timeout, an entry
/// walks back past the later ones. Removing is O(1). The timer is set for the head's deadline
/// (or earlier: removing an entry leaves it); when it fires, the due entries are taken off the
/// list and told, in deadline order, and it is set again for the new head.
///
/// An entry exists only while armed: a connection that got its request holds none. A removed or
/// fired entry lets go of its callback, so a callback may hold its connection strongly: the
/// reference lasts until the entry fires or is removed, no longer. Confined to `eventLoop`.
public final class DeadlineList {
    public let eventLoop: EventLoop
    private var head: Entry?
    private var tail: Entry?
    private var timer: EarliestDeadlineTimer!
    public private(set) var count = 0

    public init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.timer = EarliestDeadlineTimer(eventLoop: eventLoop) { [weak self] in self?.fire() }
    }

    /// One armed deadline; kept by its owner to `remove` it.
    public final class Entry {
        // Unowned: a linked entry is kept alive by its predecessor's `next` (or the list head).
        fileprivate unowned(unsafe) var previous: Entry?
        fileprivate var next: Entry?
        public let deadline: NIODeadline
        /// Set while linked; nil once fired or removed.
        fileprivate var onExpiry: (() -> Void)?

        fileprivate init(deadline: NIODeadline, onExpiry: @escaping () -> Void) {
            self.deadline = deadline
            self.onExpiry = onExpiry
        }

        /// Waiting for its deadline (not fired, not removed).
        public var isArmed: Bool { self.onExpiry != nil }
    }

    /// Runs `onExpiry` on the loop at `deadline`, unless the entry is removed first.
    public func add(deadline: NIODeadline, _ onExpiry: @escaping () -> Void) -> Entry {
        self.eventLoop.preconditionInEventLoop()
        let entry = Entry(deadline: deadline, onExpiry: onExpiry)
        // From the tail back to the last entry due no later: equal deadlines fire in order added.
        var after = self.tail
        while let candidate = after, candidate.deadline > deadline {
            after = candidate.previous
        }
        entry.previous = after
        if let after {
            entry.next = after.next
            after.next = entry
        } else {
            entry.next = self.head
            self.head = entry
        }
        if let next = entry.next {
            next.previous = entry
        } else {
            self.tail = entry
        }
        self.count += 1
        if entry === self.head {
            self.timer.schedule(at: deadline)
        }
        return entry
    }

    /// Takes `entry` off the list without running it; nothing if it fired or was removed.
    ///
    /// The timer stays as it is, even for an empty list: it then fires once with nothing due.
    /// Cancelling it would cost every connection that sends its request in time a scheduled
    /// task removed and another added (SwiftNIO's cancel searches its whole queue of scheduled
    /// tasks), and in a reconnect storm that is every connection.
    public func remove(_ entry: Entry) {
        guard entry.isArmed else { return }
        self.unlink(entry)
    }

    /// When the timer fires next (nil: not set); it may be set for an entry since removed.
    public var timerDeadline: NIODeadline? { self.timer.deadline }

    private func unlink(_ entry: Entry) {
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
        entry.onExpiry = nil
        self.count -= 1
    }

    private func fire() {
        let now = self.eventLoop.now
        // One at a time, each taken off before it runs: a callback may remove entries due now
        // too (closing another connection), and those then do not run.
        while let entry = self.head, entry.deadline <= now {
            let onExpiry = entry.onExpiry
            self.unlink(entry)
            onExpiry?()
        }
        if let head = self.head {
            self.timer.schedule(at: head.deadline)
        }
    }
}
