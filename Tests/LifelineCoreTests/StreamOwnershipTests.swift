import NIOCore
import XCTest

@testable import LifelineCore

/// The pure ownership machine: what a stream of a shared gateway does on each answer from the
/// store, with no loop and no store.
final class StreamOwnershipTests: XCTestCase {
    private let timing = StreamOwnership.Timing(lease: .seconds(3))

    private func local(_ last: UInt64, id: String? = nil, first: UInt64? = nil) -> StreamOwnership.Local {
        .init(lastSequence: last, lastEventID: id ?? (last > 0 ? "\(last)" : nil), firstHeldSequence: first ?? (last > 0 ? 1 : nil))
    }

    private func position(_ epoch: String, _ last: UInt64, id: String? = nil) -> HistoryPosition {
        HistoryPosition(epoch: epoch, lastSequence: last, lastEventID: id ?? (last > 0 ? "\(last)" : nil))
    }

    func testWithoutAStoreNothingHappens() {
        var machine = StreamOwnership(shared: false, timing: self.timing)
        XCTAssertEqual(machine.role, .standalone)
        XCTAssertTrue(machine.originBatchArrived(now: t0, local: self.local(0)).accept)
        XCTAssertEqual(machine.eventsArrived(local: self.local(3)), [])
        XCTAssertEqual(machine.checkTimerFired(now: t0, local: self.local(3)), [])
    }

    func testANewOwnerOpensTheOriginFromTheHistorysLastIDElseTheOpenersID() {
        var fresh = StreamOwnership(shared: true, timing: self.timing)
        XCTAssertEqual(
            fresh.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: "41"),
            [.openOrigin(resumeID: "41", nextSequence: 1, epoch: "e"), .note(.becameOwner)])
        var existing = StreamOwnership(shared: true, timing: self.timing)
        XCTAssertEqual(
            existing.claimAnswered(.owner(token: "2/a", position: self.position("e", 9, id: "x9")), now: t0, local: self.local(0),
                                   openerResumeID: "41"),
            [.openOrigin(resumeID: "x9", nextSequence: 10, epoch: "e"), .note(.becameOwner)])
        XCTAssertEqual(existing.role, .owner)
    }

    func testAnOwnerStoresOneBatchAtATimeAndWhatArrivedMeanwhileNext() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: nil)
        XCTAssertEqual(machine.eventsArrived(local: self.local(2)), [.append(after: 0, token: "1/a", epoch: "e")])
        XCTAssertEqual(machine.eventsArrived(local: self.local(5)), [], "one write at a time")
        XCTAssertEqual(machine.appendAnswered(.stored, storedThrough: 2, now: t0, local: self.local(5)),
                       [.append(after: 2, token: "1/a", epoch: "e")])
        XCTAssertEqual(machine.appendAnswered(.stored, storedThrough: 5, now: t0, local: self.local(5)), [])
    }

    func testAFencedOwnerStopsReadingTheOriginAndAsksAgain() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: nil)
        _ = machine.eventsArrived(local: self.local(1))
        XCTAssertEqual(machine.appendAnswered(.notOwner, storedThrough: 1, now: t0, local: self.local(1)),
                       [.stopOrigin, .claim(startFresh: false, nextSequence: 2)])
        // Someone else owns it now: follow from where we are in the same epoch.
        XCTAssertEqual(
            machine.claimAnswered(.follower(owner: "b", position: self.position("e", 4), originHeaders: []), now: t0,
                                  local: self.local(1), openerResumeID: nil),
            [.follow(after: 1, epoch: "e", resetRing: false), .note(.becameFollower)])
    }

    func testAnOwnerPastItsLeaseByItsOwnClockTakesNoMoreEvents() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: nil)
        XCTAssertTrue(machine.originBatchArrived(now: t0 + .seconds(2), local: self.local(0)).accept)
        let late = machine.originBatchArrived(now: t0 + .seconds(3), local: self.local(4))
        XCTAssertFalse(late.accept)
        XCTAssertEqual(late.actions, [.stopOrigin, .claim(startFresh: false, nextSequence: 5)])
    }

    func testARenewalCountsTheLeaseFromWhenItWasSent() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: nil)
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .seconds(1), local: self.local(0)), [.renew(token: "1/a")])
        // Sent at 1 s, answered at 2.5 s: valid until 4 s, not 5.5 s.
        XCTAssertEqual(machine.renewAnswered(true, sentAt: t0 + .seconds(1), now: t0 + .milliseconds(2500), local: self.local(0)), [])
        XCTAssertTrue(machine.originBatchArrived(now: t0 + .milliseconds(3900), local: self.local(0)).accept)
        XCTAssertFalse(machine.originBatchArrived(now: t0 + .seconds(4), local: self.local(0)).accept)
    }

    func testAFollowerTakesOverOnlyAfterItHasEverythingStored() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.follower(owner: "a", position: self.position("e", 3), originHeaders: []), now: t0,
                                  local: self.local(0), openerResumeID: nil)
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .seconds(1), local: self.local(5)), [.claim(startFresh: false, nextSequence: 6)])
        // The owner died having stored 7; we have 5: keep following until 7, then open from 7's id.
        XCTAssertEqual(machine.claimAnswered(.owner(token: "2/b", position: self.position("e", 7)), now: t0, local: self.local(5),
                                             openerResumeID: nil), [])
        XCTAssertEqual(machine.eventsArrived(local: self.local(6)), [])
        XCTAssertEqual(machine.eventsArrived(local: self.local(7)),
                       [.stopFollowing, .openOrigin(resumeID: "7", nextSequence: 8, epoch: "e"), .note(.becameOwner)])
        XCTAssertEqual(machine.role, .owner)
    }

    func testAFollowerSeesTheOwnerStillThereAndGoesOn() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.follower(owner: "a", position: self.position("e", 3), originHeaders: []), now: t0,
                                  local: self.local(0), openerResumeID: nil)
        _ = machine.checkTimerFired(now: t0, local: self.local(4))
        XCTAssertEqual(machine.claimAnswered(.follower(owner: "a", position: self.position("e", 4), originHeaders: []), now: t0,
                                             local: self.local(4), openerResumeID: nil), [])
        XCTAssertEqual(machine.role, .follower)
    }

    func testAFollowerWhoseHistoryWasResetRejoinsByItsLastID() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.follower(owner: "a", position: self.position("e1", 3), originHeaders: []), now: t0,
                                  local: self.local(0), openerResumeID: nil)
        _ = machine.checkTimerFired(now: t0, local: self.local(9, id: "x9"))
        XCTAssertEqual(machine.claimAnswered(.follower(owner: "b", position: self.position("e2", 2), originHeaders: []), now: t0,
                                             local: self.local(9, id: "x9"), openerResumeID: nil),
                       [.stopFollowing, .lookUp(lastEventID: "x9")])
        XCTAssertEqual(machine.lookUpAnswered(.hit(epoch: "e2", sequence: 40, events: []), now: t0, local: self.local(9, id: "x9")),
                       [.follow(after: 40, epoch: "e2", resetRing: true), .note(.rejoined)])
    }

    func testStoreDownAFollowerReadsTheOriginFromItsLastIDAndRetriesWithBackoff() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.follower(owner: "a", position: self.position("e", 3), originHeaders: []), now: t0,
                                  local: self.local(0), openerResumeID: nil)
        XCTAssertEqual(machine.followFailed("gone", now: t0, local: self.local(6, id: "x6")),
                       [.stopFollowing, .openOrigin(resumeID: "x6", nextSequence: 7, epoch: nil), .note(.fellBack("gone"))])
        XCTAssertEqual(machine.role, .fallback)
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .milliseconds(400), local: self.local(8)), [], "not before the backoff")
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .milliseconds(500), local: self.local(8)), [.claim(startFresh: false, nextSequence: 9)])
        // Still down: the next try waits twice as long.
        XCTAssertEqual(machine.claimAnswered(.unavailable("down"), now: t0 + .seconds(1), local: self.local(8), openerResumeID: nil),
                       [.note(.fellBack("down"))])
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .milliseconds(1900), local: self.local(8)), [])
        XCTAssertEqual(machine.checkTimerFired(now: t0 + .seconds(2), local: self.local(8)), [.claim(startFresh: false, nextSequence: 9)])
    }

    func testBackAfterAnOutageTheFirstToClaimStartsAFreshEpochFromItsOwnNumbering() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.unavailable("down"), now: t0, local: self.local(0), openerResumeID: "5")
        _ = machine.checkTimerFired(now: t0 + .seconds(1), local: self.local(12))
        // Redis came back empty: the claim made a fresh history whose epoch we are not in.
        XCTAssertEqual(machine.claimAnswered(.owner(token: "1/a", position: self.position("old", 3)), now: t0 + .seconds(1),
                                             local: self.local(12), openerResumeID: "5"),
                       [.release(token: "1/a"), .claim(startFresh: true, nextSequence: 13)])
        XCTAssertEqual(machine.claimAnswered(.owner(token: "2/a", position: self.position("new", 12)), now: t0 + .seconds(1),
                                             local: self.local(12), openerResumeID: "5"),
                       [.note(.becameOwner)], "the origin connection stays; nothing is stored yet")
        XCTAssertEqual(machine.role, .owner)
        XCTAssertEqual(machine.eventsArrived(local: self.local(13)), [.append(after: 12, token: "2/a", epoch: "new")])
    }

    func testARejoinThatMissesReadsTheOriginAgain() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.unavailable("down"), now: t0, local: self.local(0), openerResumeID: nil)
        _ = machine.checkTimerFired(now: t0 + .seconds(1), local: self.local(12))
        XCTAssertEqual(machine.claimAnswered(.follower(owner: "b", position: self.position("new", 3), originHeaders: []),
                                             now: t0 + .seconds(1), local: self.local(12), openerResumeID: nil),
                       [.stopOrigin, .lookUp(lastEventID: "12")])
        XCTAssertEqual(machine.lookUpAnswered(.miss, now: t0 + .seconds(1), local: self.local(12)),
                       [.openOrigin(resumeID: "12", nextSequence: 13, epoch: nil),
                        .note(.fellBack("the shared history does not hold this stream's last id yet"))])
    }

    func testAnEndedStreamGivesItsLeaseBack() {
        var machine = StreamOwnership(shared: true, timing: self.timing)
        _ = machine.claimAnswered(.owner(token: "1/a", position: self.position("e", 0)), now: t0, local: self.local(0), openerResumeID: nil)
        XCTAssertEqual(machine.streamEnded(), [.release(token: "1/a")])
        // A claim answered after the end gives that lease back too.
        XCTAssertEqual(machine.claimAnswered(.owner(token: "2/a", position: self.position("e", 0)), now: t0, local: self.local(0),
                                             openerResumeID: nil), [.release(token: "2/a")])
    }
}
