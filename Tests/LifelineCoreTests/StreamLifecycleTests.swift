import NIOCore
import XCTest

@testable import LifelineCore

final class StreamLifecycleTests: XCTestCase {
    func testStartWaitsForTheFirstSubscriberAtLeastTheGrace() {
        var short = StreamLifecycle(linger: .seconds(1))
        XCTAssertEqual(short.started(), .startLinger(StreamLifecycle.firstSubscriberGrace))
        XCTAssertEqual(short.state, .awaitingFirst)
        var long = StreamLifecycle(linger: .seconds(60))
        XCTAssertEqual(long.started(), .startLinger(.seconds(60)))
        var zero = StreamLifecycle(linger: .zero)
        XCTAssertEqual(zero.started(), .startLinger(StreamLifecycle.firstSubscriberGrace), "private streams wait too")
        XCTAssertEqual(zero.started(), .startLinger(StreamLifecycle.firstSubscriberGrace), "idempotent while awaiting")
    }

    func testNoSubscriberWithinTheGraceEnds() {
        var lifecycle = StreamLifecycle(linger: .seconds(30))
        _ = lifecycle.started()
        XCTAssertEqual(lifecycle.lingerExpired(), .end)
        XCTAssertTrue(lifecycle.end())
        XCTAssertTrue(lifecycle.isEnded)
        XCTAssertFalse(lifecycle.end(), "ends once")
    }

    func testFirstSubscriberCancelsTheWait() {
        var lifecycle = StreamLifecycle(linger: .seconds(30))
        _ = lifecycle.started()
        XCTAssertEqual(lifecycle.subscriberJoined(), .cancelLinger)
        XCTAssertEqual(lifecycle.state, .active)
        XCTAssertEqual(lifecycle.subscribers, 1)
        XCTAssertEqual(lifecycle.lingerExpired(), .none, "a timer that fires late does nothing while active")
        XCTAssertEqual(lifecycle.subscriberJoined(), .none)
        XCTAssertEqual(lifecycle.subscribers, 2)
    }

    func testLastSubscriberLeavingStartsLinger() {
        var lifecycle = StreamLifecycle(linger: .seconds(30))
        _ = lifecycle.started()
        _ = lifecycle.subscriberJoined()
        _ = lifecycle.subscriberJoined()
        XCTAssertEqual(lifecycle.subscriberLeft(), .none)
        XCTAssertEqual(lifecycle.subscriberLeft(), .startLinger(.seconds(30)))
        XCTAssertEqual(lifecycle.state, .lingering)
        XCTAssertEqual(lifecycle.subscribers, 0)
        XCTAssertEqual(lifecycle.subscriberLeft(), .none, "no count below zero")
        XCTAssertEqual(lifecycle.subscribers, 0)
        XCTAssertEqual(lifecycle.lingerExpired(), .end)
    }

    func testJoinDuringLingerCancelsIt() {
        var lifecycle = StreamLifecycle(linger: .seconds(30))
        _ = lifecycle.started()
        _ = lifecycle.subscriberJoined()
        _ = lifecycle.subscriberLeft()
        XCTAssertEqual(lifecycle.subscriberJoined(), .cancelLinger)
        XCTAssertEqual(lifecycle.state, .active)
        XCTAssertEqual(lifecycle.subscribers, 1)
        XCTAssertEqual(lifecycle.lingerExpired(), .none)
    }

    func testZeroLingerEndsWithTheLastSubscriber() {
        var lifecycle = StreamLifecycle(linger: .zero)
        _ = lifecycle.started()
        _ = lifecycle.subscriberJoined()
        XCTAssertEqual(lifecycle.subscriberLeft(), .end)
    }

    func testNothingHappensAfterTheEnd() {
        var lifecycle = StreamLifecycle(linger: .seconds(30))
        _ = lifecycle.started()
        _ = lifecycle.subscriberJoined()
        XCTAssertTrue(lifecycle.end())
        XCTAssertEqual(lifecycle.subscribers, 0)
        XCTAssertEqual(lifecycle.subscriberJoined(), .none)
        XCTAssertEqual(lifecycle.subscribers, 0)
        XCTAssertEqual(lifecycle.subscriberLeft(), .none)
        XCTAssertEqual(lifecycle.lingerExpired(), .none)
        XCTAssertEqual(lifecycle.started(), .none)
    }
}
