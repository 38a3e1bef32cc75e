import NIOCore
import XCTest

@testable import LifelineCore

final class CatchUpSpliceTests: XCTestCase {
    private func bytes(_ text: String) -> [ByteBuffer] { [ByteBuffer(string: text)] }

    func testAsksAtAnEventWithAnIDAndHoldsWhatComesMeanwhile() {
        var splice = CatchUpSplice(enabled: true, holdLimit: 1000)
        XCTAssertEqual(splice.delivered(lastEventID: nil), .none, "no id: no place to splice at")
        XCTAssertEqual(splice.delivered(lastEventID: "4"), .ask("4"))
        XCTAssertEqual(splice.state, .asking)
        XCTAssertEqual(splice.batchArrived(self.bytes("e5"), eventCount: 1, lastEventID: "5"), .hold)
        XCTAssertEqual(splice.delivered(lastEventID: "5"), .none, "one question at a time")
    }

    func testAJoinDropsWhatWasHeldAndEverythingAfter() {
        var splice = CatchUpSplice(enabled: true, holdLimit: 1000)
        _ = splice.delivered(lastEventID: "4")
        _ = splice.batchArrived(self.bytes("e5"), eventCount: 1, lastEventID: "5")
        guard case .none = splice.answered(joined: true) else { return XCTFail("a join releases nothing") }
        XCTAssertTrue(splice.isJoined)
        XCTAssertEqual(splice.batchArrived(self.bytes("e6"), eventCount: 1, lastEventID: "6"), .drop)
    }

    func testANotHeldReleasesInOrderAndAsksAgainWithBackoff() {
        var splice = CatchUpSplice(enabled: true, holdLimit: 1000)
        _ = splice.delivered(lastEventID: "4")
        _ = splice.batchArrived(self.bytes("e5"), eventCount: 1, lastEventID: "5")
        _ = splice.batchArrived(self.bytes("e6"), eventCount: 1, lastEventID: "6")
        guard case .release(let held, let count, let again) = splice.answered(joined: false) else { return XCTFail() }
        XCTAssertEqual(held.map { String(buffer: $0) }, ["e5", "e6"])
        XCTAssertEqual(count, 2)
        XCTAssertEqual(again, "6", "the first miss asks again at once about the last held event")
        // Second miss: the next batch with an id is skipped, the one after asks.
        guard case .release(_, _, let again2) = splice.answered(joined: false) else { return XCTFail() }
        XCTAssertNil(again2)
        XCTAssertEqual(splice.delivered(lastEventID: "7"), .none)
        XCTAssertEqual(splice.delivered(lastEventID: "8"), .ask("8"))
    }

    func testBackoffIsBounded() {
        var splice = CatchUpSplice(enabled: true, holdLimit: 1000)
        for _ in 0..<200 {
            var asked = false
            for id in 0..<(CatchUpSplice.maxSkip + 1) where !asked {
                if case .ask = splice.delivered(lastEventID: "\(id)") { asked = true }
            }
            XCTAssertTrue(asked, "asks at least once every \(CatchUpSplice.maxSkip + 1) batches")
            _ = splice.answered(joined: false)
        }
    }

    func testHoldingMoreThanTheLimitOverflows() {
        var splice = CatchUpSplice(enabled: true, holdLimit: 10)
        _ = splice.delivered(lastEventID: "1")
        XCTAssertEqual(splice.batchArrived(self.bytes("123456"), eventCount: 1, lastEventID: "2"), .hold)
        XCTAssertEqual(splice.batchArrived(self.bytes("123456"), eventCount: 1, lastEventID: "3"), .overflow)
        XCTAssertEqual(splice.state, .overflowed)
        guard case .none = splice.answered(joined: true) else { return XCTFail("a late answer changes nothing") }
    }

    func testDisabledNeverAsks() {
        var splice = CatchUpSplice(enabled: false, holdLimit: 10)
        XCTAssertEqual(splice.delivered(lastEventID: "1"), .none)
        XCTAssertEqual(splice.batchArrived(self.bytes("x"), eventCount: 1, lastEventID: "1"), .deliver)
    }
}
