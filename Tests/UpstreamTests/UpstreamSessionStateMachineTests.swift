import LifelineCore
import NIOCore
import XCTest

@testable import Upstream

final class UpstreamSessionStateMachineTests: XCTestCase {
    private let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    private func machine(giveUp: TimeAmount? = nil) -> UpstreamSessionStateMachine {
        UpstreamSessionStateMachine(
            backoff: ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10)),
            giveUp: giveUp
        )
    }

    func testAdoptedStartIsConnectedAndNotAReconnect() {
        var machine = self.machine()
        XCTAssertEqual(machine.start(adopted: true, now: self.t0, random: 0), .notifyConnected(isReconnect: false))
        XCTAssertEqual(machine.state, .streaming(since: self.t0))
        XCTAssertEqual(machine.start(adopted: true, now: self.t0, random: 0), .none, "starts once")
    }

    func testFailedFirstRequestStartsWithAScheduledReconnect() {
        var machine = self.machine()
        XCTAssertEqual(machine.start(adopted: false, now: self.t0, random: 0), .scheduleReconnect(.milliseconds(100)))
        XCTAssertEqual(machine.state, .waiting)
        XCTAssertEqual(machine.reconnectDue(), .connect)
        XCTAssertEqual(machine.state, .connecting)
        // Its first success is the stream's first connection, not a reconnect.
        XCTAssertEqual(machine.responseHead(status: 200, isEventStream: true, now: self.t0), .notifyConnected(isReconnect: false))
    }

    func testReconnectAfterAStreamingConnectionIsAReconnect() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
        XCTAssertEqual(machine.reconnectDue(), .connect)
        XCTAssertEqual(machine.responseHead(status: 200, isEventStream: true, now: self.t0), .notifyConnected(isReconnect: true))
        XCTAssertEqual(machine.state, .streaming(since: self.t0))
    }

    func testNoContentEndsTheStream() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        _ = machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false)
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.responseHead(status: 204, isEventStream: false, now: self.t0), .end(.originNoContent))
        XCTAssertEqual(machine.state, .stopped)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .none, "the closed connection's end is ignored")
        XCTAssertEqual(machine.reconnectDue(), .none)
    }

    func testOtherAnswersCloseTheConnectionAndAreRetried() {
        for (status, isEventStream) in [(503, false), (500, true), (404, false), (200, false), (301, false)] {
            var machine = self.machine()
            _ = machine.start(adopted: true, now: self.t0, random: 0)
            _ = machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false)
            _ = machine.reconnectDue()
            XCTAssertEqual(machine.responseHead(status: status, isEventStream: isEventStream, now: self.t0), .closeConnection, "\(status)")
            XCTAssertEqual(machine.state, .connecting)
            // Second failure in a row: attempt 1, up to 200 ms.
            XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 1, cleanEnd: false), .scheduleReconnect(.milliseconds(200)), "\(status)")
            XCTAssertEqual(machine.state, .waiting)
        }
    }

    func testBackoffGrowsWithShortConnectionsAndResetsOnlyAfterAStableOne() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 1)
        var delays: [TimeAmount] = []
        for _ in 0..<4 {
            guard case .scheduleReconnect(let delay) = machine.connectionEnded(now: self.t0, random: 1, cleanEnd: false) else {
                return XCTFail("expected a reconnect")
            }
            delays.append(delay)
            _ = machine.reconnectDue()
        }
        XCTAssertEqual(delays, [200, 200, 400, 800].map { .milliseconds($0) })
        // Connected again, with events, but dropped before it was stable: still failing (an
        // origin that answers 200 and resets at once must back off, not be hit in a loop).
        _ = machine.responseHead(status: 200, isEventStream: true, now: self.t0)
        XCTAssertEqual(
            machine.connectionEnded(now: self.t0 + .seconds(9), random: 1, cleanEnd: false),
            .scheduleReconnect(.milliseconds(1600))
        )
        _ = machine.reconnectDue()
        // Up for 10 s: the backoff starts over.
        _ = machine.responseHead(status: 200, isEventStream: true, now: self.t0 + .seconds(10))
        XCTAssertEqual(
            machine.connectionEnded(now: self.t0 + .seconds(20), random: 1, cleanEnd: false),
            .scheduleReconnect(.milliseconds(200))
        )
        XCTAssertEqual(machine.attempt, 1)
    }

    func testCleanEndWaitsTheReconnectionTimeLikeABrowser() {
        // The PHP/CGI "send one event and exit" origin: each response ends cleanly at once.
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: true), .scheduleReconnect(.seconds(3)))
        // Polled every ~3 s, never faster, whatever the jitter draws.
        var now = self.t0
        for _ in 0..<20 {
            _ = machine.reconnectDue()
            _ = machine.responseHead(status: 200, isEventStream: true, now: now)
            guard case .scheduleReconnect(let delay) = machine.connectionEnded(now: now, random: 0, cleanEnd: true) else {
                return XCTFail("expected a reconnect")
            }
            XCTAssertGreaterThanOrEqual(delay, .seconds(3))
            XCTAssertLessThanOrEqual(delay, .seconds(10))
            now = now + delay
        }
        // An error (reset, refused) right after is retried on the backoff, not the reconnection time.
        var failing = self.machine()
        _ = failing.start(adopted: true, now: self.t0, random: 0)
        XCTAssertEqual(failing.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
    }

    func testOriginRetryIsHonouredButClamped() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        machine.originRetry(milliseconds: 0)
        XCTAssertEqual(machine.reconnectionTime, .seconds(1), "retry: 0 is clamped to the minimum")
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: true), .scheduleReconnect(.seconds(1)))
        machine.originRetry(milliseconds: 5000)
        XCTAssertEqual(machine.reconnectionTime, .seconds(5))
        machine.originRetry(milliseconds: Int.max)
        XCTAssertEqual(machine.reconnectionTime, .seconds(10), "at most the backoff's cap")
    }

    func testOriginRetrySetsTheBase() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 1)
        machine.originRetry(milliseconds: 3000)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 1, cleanEnd: false), .scheduleReconnect(.seconds(3)))
        machine.originRetry(milliseconds: Int.max)
        XCTAssertEqual(machine.backoff.delay(attempt: 0, random: 1), .seconds(10), "clamped, no overflow")
    }

    func testGiveUpOnlyAfterTheGiveUpTimeFromTheFirstFailure() {
        var machine = self.machine(giveUp: .seconds(1))
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        // The streaming connection drops at t0: the give-up clock starts.
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
        var now = self.t0
        var lastDelay: TimeAmount = .zero
        var attempts = 0
        while true {
            guard case .scheduleReconnect(let delay) = self.failOnce(&machine, after: lastDelay, now: &now) else { break }
            lastDelay = delay
            attempts += 1
            XCTAssertLessThan(now, self.t0 + .seconds(1), "gives up only once the time has passed")
            XCTAssertLessThanOrEqual(now + delay, self.t0 + .seconds(1), "never waits past the deadline")
        }
        XCTAssertEqual(now, self.t0 + .seconds(1), "the last attempt was right at the deadline")
        XCTAssertEqual(machine.state, .stopped)
        XCTAssertGreaterThan(attempts, 2)
    }

    /// Waits `delay`, connects, and the attempt fails at once.
    private func failOnce(
        _ machine: inout UpstreamSessionStateMachine,
        after delay: TimeAmount,
        now: inout NIODeadline
    ) -> UpstreamSessionStateMachine.Action {
        now = now + (delay == .zero ? .milliseconds(100) : delay)
        XCTAssertEqual(machine.reconnectDue(), .connect)
        let action = machine.connectionEnded(now: now, random: 1, cleanEnd: false)
        if case .end(let reason) = action {
            XCTAssertEqual(reason, .originGaveUp)
        }
        return action
    }

    func testLastDelayIsClippedToTheDeadline() {
        var machine = self.machine(giveUp: .milliseconds(150))
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
        _ = machine.reconnectDue()
        // Attempt 1 would wait up to 200 ms; only 50 ms are left.
        XCTAssertEqual(
            machine.connectionEnded(now: self.t0 + .milliseconds(100), random: 1, cleanEnd: false),
            .scheduleReconnect(.milliseconds(50))
        )
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.connectionEnded(now: self.t0 + .milliseconds(150), random: 1, cleanEnd: false), .end(.originGaveUp))
    }

    func testGiveUpClockRestartsAfterASuccessfulConnection() {
        var machine = self.machine(giveUp: .seconds(1))
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        _ = machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false)
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.responseHead(status: 200, isEventStream: true, now: self.t0), .notifyConnected(isReconnect: true))
        // Streams for 10 s, then drops: a new failure, a new clock.
        let later = self.t0 + .seconds(10)
        XCTAssertEqual(machine.connectionEnded(now: later, random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.connectionEnded(now: later + .milliseconds(900), random: 0, cleanEnd: false), .scheduleReconnect(.milliseconds(100)))
    }

    func testFailedFirstRequestStartsTheGiveUpClock() {
        var machine = self.machine(giveUp: .milliseconds(250))
        XCTAssertEqual(machine.start(adopted: false, now: self.t0, random: 0), .scheduleReconnect(.milliseconds(100)))
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.connectionEnded(now: self.t0 + .milliseconds(100), random: 1, cleanEnd: false), .scheduleReconnect(.milliseconds(150)))
        _ = machine.reconnectDue()
        XCTAssertEqual(machine.connectionEnded(now: self.t0 + .milliseconds(250), random: 1, cleanEnd: false), .end(.originGaveUp))
    }

    func testWithoutGiveUpItRetriesForever() {
        for giveUp in [nil, TimeAmount.zero] {
            var machine = self.machine(giveUp: giveUp)
            _ = machine.start(adopted: true, now: self.t0, random: 0)
            for hour in 0..<100 {
                guard case .scheduleReconnect = machine.connectionEnded(now: self.t0 + .hours(Int64(hour)), random: 0, cleanEnd: false) else {
                    return XCTFail("gave up with giveUp \(String(describing: giveUp))")
                }
                _ = machine.reconnectDue()
            }
        }
    }

    func testStop() {
        var machine = self.machine()
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        machine.stop()
        XCTAssertEqual(machine.state, .stopped)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .none)
        XCTAssertEqual(machine.reconnectDue(), .none)
        XCTAssertEqual(machine.responseHead(status: 200, isEventStream: true, now: self.t0), .none)
        XCTAssertEqual(machine.start(adopted: true, now: self.t0, random: 0), .none)
    }

    func testEventsAndHeadsOutsideTheirStateAreIgnored() {
        var machine = self.machine()
        XCTAssertEqual(machine.responseHead(status: 200, isEventStream: true, now: self.t0), .none, "idle")
        XCTAssertEqual(machine.reconnectDue(), .none, "idle")
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .none, "idle")
        _ = machine.start(adopted: true, now: self.t0, random: 0)
        XCTAssertEqual(machine.responseHead(status: 204, isEventStream: false, now: self.t0), .none, "already streaming")
        XCTAssertEqual(machine.reconnectDue(), .none, "not waiting")
        _ = machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false)
        XCTAssertEqual(machine.connectionEnded(now: self.t0, random: 0, cleanEnd: false), .none, "already waiting")
    }
}
