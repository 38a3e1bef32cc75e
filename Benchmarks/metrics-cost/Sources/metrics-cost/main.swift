import Dispatch
import Foundation
import Metrics
import Prometheus

// Each thread stands for an event loop counting deliveries: `increments` per thread.
let threads = max(2, ProcessInfo.processInfo.activeProcessorCount)
let increments = 20_000_000

func timed(_ name: String, _ body: @escaping @Sendable (Int) -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    DispatchQueue.concurrentPerform(iterations: threads) { body($0) }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    print("\(name): \(String(format: "%.3f", seconds)) s, \(String(format: "%.2f", seconds * 1e9 / Double(threads * increments))) ns per increment")
    return seconds
}

// Lifeline's way: each loop has its own counters (padded apart so threads do not share a line).
final class LoopCounters: @unchecked Sendable {
    var eventsSent = 0
    var padding = (0, 0, 0, 0, 0, 0, 0, 0)
}
// Not inlined, as on the data path (the count sits behind a call), so the loop is not folded.
@inline(never) func record(_ counters: LoopCounters, _ events: Int) { counters.eventsSent &+= events }
@inline(never) func record(_ counter: Metrics.Counter, _ events: Int) { counter.increment(by: events) }

let loops = (0..<threads).map { _ in LoopCounters() }
let plain = timed("per-loop Int") { index in
    let counters = loops[index]
    for _ in 0..<increments { record(counters, 1) }
}

// swift-metrics over swift-prometheus: one Counter shared by every loop (an atomic add each).
let registry = PrometheusCollectorRegistry()
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
let counter = Metrics.Counter(label: "lifeline_events_sent_total")
let shared = timed("swift-metrics Counter") { _ in
    for _ in 0..<increments { record(counter, 1) }
}
let total = loops.reduce(0) { $0 + $1.eventsSent }
precondition(total == threads * increments)
print("threads: \(threads); swift-metrics / per-loop: \(String(format: "%.1f", shared / plain))x")
