import LifelineCore
import NIOCore

/// The gateway's counters: one `LoopCounters` per event loop, changed only on its loop, summed
/// when someone reads them. A request or an event costs a plain increment, never a lock: a
/// reconnect storm on one loop does not contend with the others.
public final class GatewayMetrics: Sendable {
    private let loops: [ObjectIdentifier: LoopCounters]
    private let order: [LoopCounters]

    init(eventLoops: [EventLoop]) {
        var loops: [ObjectIdentifier: LoopCounters] = [:]
        var order: [LoopCounters] = []
        for loop in eventLoops where loops[ObjectIdentifier(loop)] == nil {
            let counters = LoopCounters(eventLoop: loop)
            loops[ObjectIdentifier(loop)] = counters
            order.append(counters)
        }
        self.loops = loops
        self.order = order
    }

    /// The counters of `eventLoop`, for code running on it.
    func counters(for eventLoop: EventLoop) -> LoopCounters {
        guard let counters = self.loops[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("no counters for event loop \(eventLoop): not one of the gateway's loops")
        }
        return counters
    }

    /// The sum over every loop, each copied on its own loop.
    public func snapshot() async -> GatewayCounters {
        var sum = GatewayCounters()
        for counters in self.order {
            if let values = try? await counters.eventLoop.submit({ counters.values }).get() {
                sum = sum + values
            }
        }
        return sum
    }

    /// Every loop's recent notable events, oldest first.
    public func recentEvents() async -> [RecentEvent] {
        var all: [RecentEvent] = []
        for counters in self.order {
            all += (try? await counters.eventLoop.submit({ counters.recent.events }).get()) ?? []
        }
        return all.sorted { $0.at < $1.at }
    }
}
