import NIOCore
import NIOEmbedded
import XCTest

@testable import LifelineCore

/// A subscriber that records when it was sent heartbeats.
private final class FakeTarget: HeartbeatTarget {
    let loop: EmbeddedEventLoop
    var beats: [NIODeadline] = []
    var onBeat: (() -> Void)?
    init(loop: EmbeddedEventLoop) { self.loop = loop }
    func heartbeatDue() {
        self.beats.append(self.loop.now)
        self.onBeat?()
    }
}

final class HeartbeatClockTests: XCTestCase {
    private var loop: EmbeddedEventLoop!

    override func setUp() {
        self.loop = EmbeddedEventLoop()
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
    }

    private func time(_ seconds: Int64) -> NIODeadline {
        .uptimeNanoseconds(0) + .seconds(seconds)
    }

    func testHeartbeatExactlyWhenIdleForTheInterval() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let target = FakeTarget(loop: self.loop)
        let entry = clock.register(target)
        XCTAssertEqual(entry.lastWrite, self.loop.now)
        self.loop.advanceTime(by: .seconds(15) - .nanoseconds(1))
        XCTAssertEqual(target.beats, [], "not before the interval")
        self.loop.advanceTime(by: .nanoseconds(1))
        XCTAssertEqual(target.beats, [self.time(15)])
        // Idle on: one every interval, counting from the heartbeat itself.
        self.loop.advanceTime(by: .seconds(30))
        XCTAssertEqual(target.beats, [self.time(15), self.time(30), self.time(45)])
        XCTAssertEqual(clock.heartbeatsSent, 3)
    }

    func testAReloadedIntervalAppliesToTrackedTargets() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let target = FakeTarget(loop: self.loop)
        _ = clock.register(target)
        self.loop.advanceTime(by: .seconds(4))
        clock.updateInterval(.seconds(5))
        self.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(target.beats, [self.time(5)], "idle 5 s under the new interval")
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(target.beats, [self.time(5), self.time(10)])
        clock.updateInterval(nil)
        self.loop.advanceTime(by: .seconds(60))
        XCTAssertEqual(target.beats.count, 2, "heartbeats off")
        XCTAssertNil(clock.interval)
    }

    func testTouchPostponesTheHeartbeat() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let target = FakeTarget(loop: self.loop)
        let entry = clock.register(target)
        self.loop.advanceTime(by: .seconds(10))
        clock.touch(entry, now: self.loop.now)
        self.loop.advanceTime(by: .seconds(14))  // t = 24: 14 s after the write
        XCTAssertEqual(target.beats, [])
        self.loop.advanceTime(by: .seconds(1))  // t = 25
        XCTAssertEqual(target.beats, [self.time(25)])
    }

    func testTargetWrittenToContinuouslyNeverGetsOne() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let busy = FakeTarget(loop: self.loop)
        let idle = FakeTarget(loop: self.loop)
        let busyEntry = clock.register(busy)
        _ = clock.register(idle)
        for _ in 0..<100 {
            self.loop.advanceTime(by: .seconds(5))
            clock.touch(busyEntry, now: self.loop.now)
        }
        XCTAssertEqual(busy.beats, [], "a busy stream sends none")
        XCTAssertEqual(idle.beats.count, 500 / 15, "the idle one beside it still gets them")
    }

    func testManyTargetsFireFromOneTimer() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        var targets: [FakeTarget] = []
        var entries: [HeartbeatEntry] = []
        // Registered one second apart: each fires 15 s after its own registration.
        for _ in 0..<5 {
            let target = FakeTarget(loop: self.loop)
            targets.append(target)
            entries.append(clock.register(target))
            self.loop.advanceTime(by: .seconds(1))
        }
        XCTAssertEqual(clock.count, 5)
        self.loop.advanceTime(to: self.time(15))
        XCTAssertEqual(targets.map(\.beats.count), [1, 0, 0, 0, 0])
        self.loop.advanceTime(to: self.time(19))
        XCTAssertEqual(targets.map { $0.beats }, (0..<5).map { [self.time(15 + Int64($0))] })
        // Same registration time: all due at once fire together.
        let loop2 = EmbeddedEventLoop()
        let clock2 = HeartbeatClock(eventLoop: loop2, interval: .seconds(1))
        let together = (0..<1000).map { _ in FakeTarget(loop: loop2) }
        let keep = together.map { clock2.register($0) }
        loop2.advanceTime(by: .seconds(1))
        XCTAssertTrue(together.allSatisfy { $0.beats.count == 1 })
        XCTAssertEqual(clock2.heartbeatsSent, 1000)
        XCTAssertEqual(keep.count, 1000)
        try? loop2.syncShutdownGracefully()
        _ = entries
    }

    func testRemovedTargetGetsNoHeartbeat() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let removed = FakeTarget(loop: self.loop)
        let kept = FakeTarget(loop: self.loop)
        let removedEntry = clock.register(removed)
        _ = clock.register(kept)
        clock.remove(removedEntry)
        clock.remove(removedEntry)  // twice is harmless
        XCTAssertEqual(clock.count, 1)
        self.loop.advanceTime(by: .seconds(15))
        XCTAssertEqual(removed.beats, [])
        XCTAssertEqual(kept.beats.count, 1)
        clock.touch(removedEntry, now: self.loop.now)  // a write after leaving: ignored
        XCTAssertEqual(clock.count, 1)
    }

    func testRemovingTheLastTargetStopsTheTimerAndRegisteringRestartsIt() {
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(15))
        let first = FakeTarget(loop: self.loop)
        clock.remove(clock.register(first))
        XCTAssertEqual(clock.count, 0)
        self.loop.advanceTime(by: .seconds(5))
        let second = FakeTarget(loop: self.loop)
        _ = clock.register(second)  // at t = 5
        self.loop.advanceTime(to: self.time(19))
        XCTAssertEqual(second.beats, [])
        self.loop.advanceTime(to: self.time(20))
        XCTAssertEqual(second.beats, [self.time(20)])
        XCTAssertEqual(first.beats, [])
    }

    func testRemoveInsideHeartbeatDue() {
        // A heartbeat write that fails closes the subscriber, which leaves the clock.
        let clock = HeartbeatClock(eventLoop: self.loop, interval: .seconds(1))
        let a = FakeTarget(loop: self.loop)
        let b = FakeTarget(loop: self.loop)
        let aEntry = clock.register(a)
        let bEntry = clock.register(b)
        a.onBeat = { clock.remove(aEntry) }
        b.onBeat = { clock.remove(bEntry) }
        self.loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(a.beats.count, 1)
        XCTAssertEqual(b.beats.count, 1)
        XCTAssertEqual(clock.count, 0)
    }

    func testNilOrZeroIntervalTracksNothing() {
        for interval in [nil, TimeAmount.zero] {
            let clock = HeartbeatClock(eventLoop: self.loop, interval: interval)
            XCTAssertNil(clock.interval)
            let target = FakeTarget(loop: self.loop)
            let entry = clock.register(target)
            clock.touch(entry, now: self.loop.now)
            XCTAssertEqual(clock.count, 0)
            self.loop.advanceTime(by: .hours(1))
            XCTAssertEqual(target.beats, [])
            clock.remove(entry)
            XCTAssertEqual(clock.count, 0)
        }
    }
}
