import NIOCore
import NIOEmbedded
import XCTest

@testable import LifelineCore

final class EarliestDeadlineTimerTests: XCTestCase {
    func testFiresOnceAtTheEarliestDeadlineItWasGiven() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        var fired: [NIODeadline] = []
        let timer = EarliestDeadlineTimer(eventLoop: loop) { fired.append(loop.now) }
        let start = loop.now
        timer.schedule(at: start + .seconds(5))
        timer.schedule(at: start + .seconds(9))  // later: ignored
        timer.schedule(at: start + .seconds(3))  // earlier: moves it
        XCTAssertEqual(timer.deadline, start + .seconds(3))
        loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(fired, [start + .seconds(3)], "one task, at the earliest")
        XCTAssertNil(timer.deadline)
        timer.schedule(at: start + .seconds(12))
        timer.reschedule(at: start + .seconds(15))
        loop.advanceTime(by: .seconds(3))
        XCTAssertEqual(fired.count, 1, "rescheduled later")
        loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(fired.count, 2)
        timer.schedule(at: start + .seconds(20))
        timer.schedule(at: nil)
        loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(fired.count, 2, "nil cancels")
    }
}
