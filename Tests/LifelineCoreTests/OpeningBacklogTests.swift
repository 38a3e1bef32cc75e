import NIOCore
import XCTest

@testable import LifelineCore

final class OpeningBacklogTests: XCTestCase {
    private func event(_ n: Int, size: Int = 10) -> EncodedEvent {
        EncodedEvent(
            sequence: UInt64(n),
            id: String(n),
            bytes: ByteBuffer(repeating: UInt8(ascii: "x"), count: size),
            receivedAt: .uptimeNanoseconds(0)
        )
    }

    func testKeepsEverythingWhileAnOpenerIsOwedItAndLetsGoAfterTheLast() {
        var backlog = OpeningBacklog(byteLimit: 1000)
        backlog.expect(2)
        for n in 1...5 { backlog.record(self.event(n)) }
        XCTAssertEqual(backlog.eventsSinceStart?.map(\.id), ["1", "2", "3", "4", "5"])
        backlog.settle()
        XCTAssertEqual(backlog.eventsSinceStart?.count, 5, "one opener is still owed them")
        backlog.settle()
        XCTAssertNil(backlog.eventsSinceStart)
        backlog.record(self.event(6))
        XCTAssertEqual(backlog.owed, 0)
        XCTAssertNil(backlog.eventsSinceStart, "nothing is kept once no one is owed it")
    }

    func testKeepsNothingWhenNoOneIsOwed() {
        var backlog = OpeningBacklog(byteLimit: 1000)
        backlog.record(self.event(1))
        backlog.expect(1)
        XCTAssertEqual(backlog.eventsSinceStart?.count, 0)
        backlog.settle()
        backlog.settle()  // an extra settle is harmless
        XCTAssertEqual(backlog.owed, 0)
    }

    func testGivesUpPastItsByteBound() {
        var backlog = OpeningBacklog(byteLimit: 25)
        backlog.expect(1)
        backlog.record(self.event(1))
        backlog.record(self.event(2))
        XCTAssertEqual(backlog.eventsSinceStart?.count, 2)
        backlog.record(self.event(3))
        XCTAssertNil(backlog.eventsSinceStart, "over its bound: the openers get what the replay buffer has")
        backlog.record(self.event(4))
        XCTAssertNil(backlog.eventsSinceStart)
        backlog.settle()
        // A later opening starts afresh.
        backlog.expect(1)
        backlog.record(self.event(5))
        XCTAssertEqual(backlog.eventsSinceStart?.map(\.id), ["5"])
    }
}
