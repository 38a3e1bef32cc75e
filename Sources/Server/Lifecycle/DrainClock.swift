import LifelineCore
import NIOCore

/// A streaming client that a drain lets go at its moment.
protocol DrainTarget: AnyObject {
    func drainNow()
}

/// Lets the streaming clients of one event loop go during a drain, each at its own moment
/// (`DrainSchedule`), from a single timer: the clients wait in a heap ordered by their moment
/// and the timer is set for the earliest. Confined to the loop.
final class DrainClock: @unchecked Sendable {  // confined to `eventLoop`
    private struct Due {
        var at: NIODeadline
        weak var target: DrainTarget?
    }

    let eventLoop: EventLoop
    private(set) var schedule: DrainSchedule?
    private var heap: [Due] = []
    private var timer: EarliestDeadlineTimer!
    /// Draws in [0, 1); replaceable so that tests can fix the spread.
    var random: () -> Double = { Double.random(in: 0..<1) }

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
        self.timer = EarliestDeadlineTimer(eventLoop: eventLoop) { [weak self] in self?.fire() }
    }

    var isDraining: Bool { self.schedule != nil }
    var pending: Int { self.heap.count }

    func begin(_ schedule: DrainSchedule) {
        self.schedule = schedule
    }

    /// Gives `target` its moment, within what is left of the window.
    func add(_ target: DrainTarget) {
        guard let schedule = self.schedule else { return }
        let at = schedule.closeTime(now: self.eventLoop.now, unit: self.random())
        self.push(Due(at: at, target: target))
        self.arm()
    }

    /// The `retry:` for the next client let go.
    func retryMilliseconds() -> Int64 {
        (self.schedule ?? DrainSchedule(deadline: self.eventLoop.now)).retryMilliseconds(unit: self.random())
    }

    private func arm() {
        self.timer.schedule(at: self.heap.first?.at)
    }

    private func fire() {
        let now = self.eventLoop.now
        while let first = self.heap.first, first.at <= now {
            let due = self.pop()
            due.target?.drainNow()
        }
        self.arm()
    }

    // MARK: The heap (earliest first)

    private func push(_ due: Due) {
        self.heap.append(due)
        var child = self.heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.heap[child].at < self.heap[parent].at else { break }
            self.heap.swapAt(child, parent)
            child = parent
        }
    }

    private func pop() -> Due {
        let first = self.heap[0]
        let last = self.heap.removeLast()
        if !self.heap.isEmpty {
            self.heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < self.heap.count, self.heap[left].at < self.heap[smallest].at { smallest = left }
                if right < self.heap.count, self.heap[right].at < self.heap[smallest].at { smallest = right }
                if smallest == parent { break }
                self.heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}

/// Tells a connection that the gateway drains: close when idle, close after a plain response,
/// and let each stream go at its moment (`DrainClock`).
struct GatewayDrain: Sendable {}
