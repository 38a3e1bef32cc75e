import NIOCore
import XCTest

@testable import LifelineCore

final class ReplayBufferTests: XCTestCase {
    private func buffer(
        events: Int = 1000,
        bytes: Int = 1 << 20,
        age: TimeAmount = .minutes(10),
        baseID: String? = nil,
        ids: [Int] = [],
        at time: NIODeadline = t0
    ) -> ReplayBuffer {
        var replay = ReplayBuffer(limits: .init(events: events, bytes: bytes, age: age), baseID: baseID)
        for (offset, id) in ids.enumerated() {
            replay.append(encoded(UInt64(offset + 1), id: "\(id)", at: time), now: time)
        }
        return replay
    }

    // MARK: Bounds

    func testBoundByEventCountDropsOldest() {
        var replay = self.buffer(events: 3, ids: [1, 2, 3, 4, 5])
        XCTAssertEqual(replay.count, 3)
        XCTAssertEqual(replay.last?.id, "5")
        XCTAssertTrue(isMiss(replay.events(after: "1", now: t0)))
        XCTAssertTrue(isMiss(replay.events(after: "2", now: t0)), "evicted: the buffer cannot know what came after it")
        XCTAssertEqual(sequences(replay.events(after: "3", now: t0)), [4, 5])
    }

    func testBoundByBytesDropsOldestAndCountsBytes() {
        var replay = ReplayBuffer(limits: .init(events: 100, bytes: 250, age: .minutes(10)))
        for sequence in UInt64(1)...3 {
            replay.append(sized(sequence, id: "\(sequence)", size: 100), now: t0)
        }
        // 300 bytes > 250: the first goes.
        XCTAssertEqual(replay.count, 2)
        XCTAssertEqual(replay.byteCount, 200)
        XCTAssertFalse(replay.contains(id: "1"))
        XCTAssertTrue(replay.contains(id: "2"))
        // Exactly at the bound stays.
        replay.append(sized(4, id: "4", size: 50), now: t0)
        XCTAssertEqual(replay.byteCount, 250)
        XCTAssertEqual(replay.count, 3)
    }

    func testNewestEventIsKeptEvenWhenAloneOverTheByteBound() {
        var replay = ReplayBuffer(limits: .init(events: 100, bytes: 100, age: .minutes(10)))
        replay.append(sized(1, id: "1", size: 60), now: t0)
        replay.append(sized(2, id: "2", size: 500), now: t0)
        XCTAssertEqual(replay.count, 1)
        XCTAssertEqual(replay.last?.id, "2")
        XCTAssertEqual(replay.byteCount, 500)
        XCTAssertEqual(sequences(replay.events(after: "2", now: t0)), [], "the position is still known")
        replay.append(sized(3, id: "3", size: 10), now: t0)
        XCTAssertEqual(replay.count, 1, "the big one goes as soon as it is not the newest")
        XCTAssertEqual(replay.byteCount, 10)
        XCTAssertEqual(sequences(replay.events(after: "3", now: t0)), [])
    }

    func testBoundByAge() {
        var replay = ReplayBuffer(limits: .init(events: 100, bytes: 1 << 20, age: .seconds(10)))
        replay.append(encoded(1, id: "1", at: t0), now: t0)
        replay.append(encoded(2, id: "2", at: t0 + .seconds(5)), now: t0 + .seconds(5))
        replay.append(encoded(3, id: "3", at: t0 + .seconds(8)), now: t0 + .seconds(8))
        // Exactly 10 s old is still within the age.
        XCTAssertEqual(sequences(replay.events(after: "1", now: t0 + .seconds(10))), [2, 3])
        // A lookup evicts by age: at 12 s, event 1 (12 s old) is gone, 2 (7 s) is not.
        XCTAssertTrue(isMiss(replay.events(after: "1", now: t0 + .seconds(12))))
        XCTAssertEqual(replay.count, 2)
        XCTAssertEqual(sequences(replay.events(after: "2", now: t0 + .seconds(12))), [3])
        // Age applies to the newest too: when everything is too old, the buffer is empty.
        XCTAssertTrue(isMiss(replay.events(after: "3", now: t0 + .seconds(30))))
        XCTAssertEqual(replay.count, 0)
        XCTAssertEqual(replay.byteCount, 0)
    }

    func testEvictByAgeOnAppend() {
        var replay = ReplayBuffer(limits: .init(events: 100, bytes: 1 << 20, age: .seconds(10)))
        replay.append(encoded(1, id: "1", at: t0), now: t0)
        replay.append(encoded(2, id: "2", at: t0 + .seconds(11)), now: t0 + .seconds(11))
        XCTAssertEqual(replay.count, 1)
        XCTAssertFalse(replay.contains(id: "1"))
    }

    // MARK: Lookup

    func testHitReturnsExactlyTheEventsAfterTheID() {
        var replay = self.buffer(ids: [10, 11, 12, 13, 14])
        XCTAssertEqual(sequences(replay.events(after: "10", now: t0)), [2, 3, 4, 5])
        XCTAssertEqual(sequences(replay.events(after: "12", now: t0)), [4, 5], "no gap, no duplicate")
        guard case .hit(let events) = replay.events(after: "13", now: t0) else { return XCTFail("miss") }
        XCTAssertEqual(events.map(\.id), ["14"])
        XCTAssertEqual(events.map { string($0.bytes) }, ["id: 14\ndata: x\n\n"], "the bytes as stored")
    }

    func testHitWithNothingMissedWhenTheIDIsTheNewest() {
        var replay = self.buffer(ids: [1, 2, 3])
        XCTAssertEqual(sequences(replay.events(after: "3", now: t0)), [])
    }

    func testHitAfterWraparoundOfTheRing() {
        // More appends than the initial ring capacity, with eviction, so that indices wrap.
        var replay = self.buffer(events: 20, ids: Array(1...100))
        XCTAssertEqual(sequences(replay.events(after: "85", now: t0)), Array(86...100).map(UInt64.init))
        XCTAssertEqual(sequences(replay.events(after: "81", now: t0))?.first, 82)
        XCTAssertTrue(isMiss(replay.events(after: "80", now: t0)))
    }

    func testMissForUnknownID() {
        var replay = self.buffer(ids: [1, 2, 3])
        XCTAssertTrue(isMiss(replay.events(after: "nope", now: t0)))
        XCTAssertTrue(isMiss(replay.events(after: "4", now: t0)))
        var empty = self.buffer()
        XCTAssertTrue(isMiss(empty.events(after: "1", now: t0)))
    }

    func testEventsWithoutIDAreReplayedButNotIndexed() {
        var replay = ReplayBuffer(limits: .init())
        replay.append(encoded(1, id: "a"), now: t0)
        replay.append(encoded(2, id: nil), now: t0)
        replay.append(encoded(3, id: nil), now: t0)
        replay.append(encoded(4, id: "b"), now: t0)
        replay.append(encoded(5, id: ""), now: t0)
        XCTAssertEqual(sequences(replay.events(after: "a", now: t0)), [2, 3, 4, 5])
        XCTAssertEqual(sequences(replay.events(after: "b", now: t0)), [5])
        XCTAssertFalse(replay.contains(id: ""))
    }

    func testDuplicateIDsMostRecentWins() {
        var replay = ReplayBuffer(limits: .init(events: 3))
        replay.append(encoded(1, id: "x"), now: t0)
        replay.append(encoded(2, id: "y"), now: t0)
        replay.append(encoded(3, id: "x"), now: t0)
        replay.append(encoded(4, id: "z"), now: t0)
        XCTAssertEqual(sequences(replay.events(after: "x", now: t0)), [4])
        // Evicting the first "x" keeps the later one findable.
        XCTAssertEqual(replay.count, 3)
        XCTAssertTrue(replay.contains(id: "x"))
        replay.append(encoded(5, id: "w"), now: t0)
        replay.append(encoded(6, id: "v"), now: t0)
        XCTAssertFalse(replay.contains(id: "x"), "the later x is evicted too now")
        XCTAssertTrue(isMiss(replay.events(after: "x", now: t0)))
    }

    func testContainsAfterEviction() {
        let replay = self.buffer(events: 2, ids: [1, 2, 3])
        XCTAssertFalse(replay.contains(id: "1"))
        XCTAssertTrue(replay.contains(id: "2"))
        XCTAssertTrue(replay.contains(id: "3"))
        XCTAssertFalse(replay.contains(id: "4"))
    }

    // MARK: Resume point (baseID)

    func testBaseIDHitsWithEverythingSinceTheStart() {
        var replay = self.buffer(baseID: "41", ids: [42, 43])
        XCTAssertEqual(sequences(replay.events(after: "41", now: t0)), [1, 2])
        var empty = self.buffer(baseID: "41")
        XCTAssertEqual(sequences(empty.events(after: "41", now: t0)), [], "nothing since the start yet")
    }

    func testBaseIDMissesOnceAnythingWasEvicted() {
        var replay = self.buffer(events: 2, baseID: "41", ids: [42, 43, 44])
        XCTAssertTrue(isMiss(replay.events(after: "41", now: t0)), "event 42 is gone: replaying from 43 would be a gap")
        XCTAssertEqual(sequences(replay.events(after: "43", now: t0)), [3])
    }

    func testBaseIDMissesAfterAgeEvictionEvenWhenTheBufferEmptiedOut() {
        var replay = ReplayBuffer(limits: .init(age: .seconds(1)), baseID: "41")
        replay.append(encoded(1, id: "42", at: t0), now: t0)
        XCTAssertTrue(isMiss(replay.events(after: "41", now: t0 + .seconds(5))))
        XCTAssertEqual(replay.count, 0)
    }

    func testEmptyBaseIDIsNoResumePoint() {
        var replay = self.buffer(baseID: "", ids: [1])
        XCTAssertTrue(isMiss(replay.events(after: "", now: t0)))
    }
}
