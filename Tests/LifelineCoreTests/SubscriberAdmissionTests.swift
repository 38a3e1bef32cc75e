import NIOCore
import XCTest

@testable import LifelineCore

/// The attach decision alone: no loops, no subscribers; waiters are plain strings.
final class SubscriberAdmissionTests: XCTestCase {
    private typealias Admission = SubscriberAdmission<String>

    private func admission(
        replayMiss: StreamConfiguration.ReplayMissPolicy = .upstream,
        resumeWait: TimeAmount = .seconds(2),
        isShared: Bool = true,
        backlogBytes: Int = 1 << 20
    ) -> Admission {
        Admission(policy: .init(replayMiss: replayMiss, resumeWait: resumeWait, isShared: isShared), backlogByteLimit: backlogBytes)
    }

    private func buffer(_ ids: ClosedRange<Int>, limit: Int = 100, baseID: String? = nil) -> ReplayBuffer {
        var replay = ReplayBuffer(limits: .init(events: limit), baseID: baseID)
        for id in ids { replay.append(encoded(UInt64(id), id: "\(id)"), now: t0) }
        return replay
    }

    private func describe(_ decision: Admission.Decision) -> String {
        switch decision {
        case .wait: return "wait"
        case .refuse(let refusal): return "refuse \(refusal)"
        case .attach(let status, let events): return "attach \(status) \(events.compactMap(\.id))"
        }
    }

    private func admit(_ admission: inout Admission, _ id: String?, creator: Bool = false, fromStart: Bool = false,
                       replay: inout ReplayBuffer, ended: Bool = false, now: NIODeadline = t0, name: String = "w") -> String {
        describe(admission.admit(name, .init(lastEventID: id, isCreator: creator, fromStart: fromStart || creator),
                                 replay: &replay, isEnded: ended, now: now))
    }

    func testNoIDJoinsLiveAndAKnownIDGetsExactlyWhatFollowed() {
        var admission = self.admission()
        var replay = self.buffer(1...5)
        XCTAssertEqual(admit(&admission, nil, replay: &replay), "attach none []")
        XCTAssertEqual(admit(&admission, "", replay: &replay), "attach none []", "an empty id is none")
        XCTAssertEqual(admit(&admission, "3", replay: &replay), "attach hit [\"4\", \"5\"]")
        XCTAssertEqual(admit(&admission, "5", replay: &replay), "attach hit []")
    }

    func testAnUnknownIDWaitsWhileNothingWasEvictedThenHitsWhenItArrives() {
        var admission = self.admission()
        var replay = self.buffer(1...2)
        XCTAssertEqual(admit(&admission, "4", replay: &replay), "wait")
        XCTAssertEqual(admission.nextDeadline, t0 + .seconds(2))
        replay.append(encoded(3, id: "3"), now: t0)
        XCTAssertTrue(admission.eventsArrived(replay: &replay, now: t0).isEmpty, "3 is not its id")
        replay.append(encoded(4, id: "4"), now: t0)
        replay.append(encoded(5, id: "5"), now: t0)
        let arrived = admission.eventsArrived(replay: &replay, now: t0)
        XCTAssertEqual(arrived.map { "\($0.0): \(describe($0.1))" }, ["w: attach hit [\"5\"]"])
        XCTAssertNil(admission.nextDeadline)
    }

    func testAWaiterWhoseIDNeverComesMissesAtItsDeadline() {
        var admission = self.admission()
        var replay = self.buffer(1...2)
        XCTAssertEqual(admit(&admission, "9", replay: &replay, name: "early"), "wait")
        XCTAssertEqual(admit(&admission, "8", replay: &replay, now: t0 + .seconds(1), name: "late"), "wait")
        XCTAssertTrue(admission.deadlinesPassed(replay: &replay, now: t0 + .milliseconds(1999)).isEmpty)
        let expired = admission.deadlinesPassed(replay: &replay, now: t0 + .seconds(2))
        XCTAssertEqual(expired.map { "\($0.0): \(describe($0.1))" }, ["early: refuse needsCatchUp(lastEventID: \"9\")"])
        XCTAssertEqual(admission.nextDeadline, t0 + .seconds(3))
    }

    func testAfterAnEvictionAnUnknownIDMissesAtOnce() {
        var admission = self.admission()
        var replay = self.buffer(1...5, limit: 3)
        XCTAssertTrue(replay.evictedAny)
        XCTAssertEqual(admit(&admission, "1", replay: &replay), "refuse needsCatchUp(lastEventID: \"1\")")
        var live = self.admission(replayMiss: .live)
        XCTAssertEqual(admit(&live, "1", replay: &replay), "attach miss []", "--replay-miss=live joins live")
    }

    func testAStreamOfTheClientsOwnNeitherWaitsNorSendsElsewhere() {
        var admission = self.admission(isShared: false)
        var replay = self.buffer(1...2)
        XCTAssertEqual(admit(&admission, "7", replay: &replay), "attach miss []")
        XCTAssertEqual(admission.waiterCount, 0)
    }

    func testTheCreatorMissesWithEverythingSinceTheStartEvenPastTheBuffer() {
        var admission = self.admission()
        admission.expectOpeners(2)
        var replay = ReplayBuffer(limits: .init(events: 2), baseID: "0")
        for id in 1...4 {
            let event = encoded(UInt64(id), id: "\(id)")
            replay.append(event, now: t0)
            admission.record(event)
        }
        XCTAssertEqual(admit(&admission, "0", creator: true, replay: &replay), "attach miss [\"1\", \"2\", \"3\", \"4\"]")
        XCTAssertEqual(admission.openersOwed, 1)
        XCTAssertEqual(admit(&admission, nil, fromStart: true, replay: &replay), "attach none [\"1\", \"2\", \"3\", \"4\"]")
        XCTAssertEqual(admission.openersOwed, 0, "the last opener frees the backlog")
        XCTAssertEqual(admit(&admission, nil, fromStart: true, replay: &replay), "attach none [\"3\", \"4\"]",
                       "with no backlog, what the buffer holds")
    }

    func testAnOpenerThatWaitsForItsIDKeepsItsClaimUntilDecided() {
        var admission = self.admission()
        admission.expectOpeners(1)
        var replay = self.buffer(1...1)
        XCTAssertEqual(admit(&admission, "3", fromStart: true, replay: &replay), "wait")
        XCTAssertEqual(admission.openersOwed, 1)
        _ = admission.deadlinesPassed(replay: &replay, now: t0 + .seconds(5))
        XCTAssertEqual(admission.openersOwed, 0)
    }

    func testAnEndedStreamRefusesAndHandsBackItsWaiters() {
        var admission = self.admission()
        var replay = self.buffer(1...1)
        XCTAssertEqual(admit(&admission, "5", replay: &replay, name: "a"), "wait")
        XCTAssertEqual(admit(&admission, nil, replay: &replay, ended: true), "refuse ended")
        XCTAssertEqual(admission.streamEnded(), ["a"])
        XCTAssertEqual(admission.waiterCount, 0)
    }

    func testAContinuationIsAnExactHitOrNothing() {
        var admission = self.admission()
        var replay = self.buffer(3...6)
        XCTAssertEqual(describe(admission.continuation(after: "4", replay: &replay, isEnded: false, now: t0)), "attach hit [\"5\", \"6\"]")
        XCTAssertEqual(describe(admission.continuation(after: "6", replay: &replay, isEnded: false, now: t0)), "attach hit []")
        XCTAssertEqual(describe(admission.continuation(after: "7", replay: &replay, isEnded: false, now: t0)), "refuse notHeld",
                       "never waits: the catching-up stream asks again later")
        XCTAssertEqual(describe(admission.continuation(after: "4", replay: &replay, isEnded: true, now: t0)), "refuse ended")
        XCTAssertEqual(admission.waiterCount, 0)
    }
}
