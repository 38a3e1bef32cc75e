import NIOCore
import XCTest

@testable import Server

/// The process lifecycle and the drain schedule, without processes or clocks.
final class GatewayLifecycleTests: XCTestCase {
    func testTerminateDrainsAndASecondOneStopsAtOnce() {
        var lifecycle = GatewayLifecycle()
        XCTAssertEqual(lifecycle.readiness, "ready")
        XCTAssertEqual(lifecycle.received(.terminate), .drain)
        XCTAssertEqual(lifecycle.readiness, "draining", "/readyz turns 503 at once")
        XCTAssertEqual(lifecycle.received(.upgrade), .ignored)
        XCTAssertEqual(lifecycle.received(.terminate), .stopNow)
        XCTAssertEqual(lifecycle.state, .stopping)
        XCTAssertEqual(lifecycle.received(.interrupt), .ignored)
    }

    func testInterruptStopsAtOnceFromAnyServingState() {
        var ready = GatewayLifecycle()
        XCTAssertEqual(ready.received(.interrupt), .stopNow)
        var draining = GatewayLifecycle()
        _ = draining.received(.terminate)
        XCTAssertEqual(draining.received(.interrupt), .stopNow)
    }

    func testDrainEndsInStop() {
        var lifecycle = GatewayLifecycle()
        XCTAssertEqual(lifecycle.drainFinished(), .none, "no drain to finish")
        _ = lifecycle.received(.terminate)
        XCTAssertEqual(lifecycle.drainFinished(), .stopNow)
        lifecycle.stopped()
        XCTAssertEqual(lifecycle.state, .stopped)
    }

    func testUpgradeHandsOverOrGoesOnServing() {
        var lifecycle = GatewayLifecycle()
        XCTAssertEqual(lifecycle.received(.upgrade), .startUpgrade)
        XCTAssertEqual(lifecycle.readiness, "ready", "still serving while the new process starts")
        XCTAssertEqual(lifecycle.received(.upgrade), .ignored, "one upgrade at a time")
        XCTAssertEqual(lifecycle.upgradeFailed(), .none)
        XCTAssertEqual(lifecycle.state, .ready)
        XCTAssertEqual(lifecycle.received(.upgrade), .startUpgrade, "and may try again")
        XCTAssertEqual(lifecycle.upgradeSucceeded(), .drain)
        XCTAssertEqual(lifecycle.state, .draining)
        XCTAssertEqual(lifecycle.upgradeFailed(), .none, "too late to matter")
    }

    func testDrainScheduleStaysInsideTheWindowAndTheRetryRange() {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let schedule = DrainSchedule(deadline: now + .seconds(6), retryRange: 500...1500)
        XCTAssertEqual(schedule.closeTime(now: now, unit: 0), now)
        XCTAssertEqual(schedule.closeTime(now: now, unit: 0.5), now + .seconds(3))
        XCTAssertLessThan(schedule.closeTime(now: now, unit: 1), now + .seconds(6))
        XCTAssertEqual(schedule.closeTime(now: now + .seconds(7), unit: 0.5), now + .seconds(7), "past the window: now")
        XCTAssertEqual(schedule.closeTime(now: now + .seconds(4), unit: 0.5), now + .seconds(5), "within what is left")
        XCTAssertEqual(schedule.retryMilliseconds(unit: 0), 500)
        XCTAssertEqual(schedule.retryMilliseconds(unit: 0.5), 1000)
        XCTAssertLessThanOrEqual(schedule.retryMilliseconds(unit: 1), 1500)
    }
}
