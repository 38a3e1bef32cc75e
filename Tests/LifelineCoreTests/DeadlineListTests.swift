import LifelineCore
import NIOCore
import NIOEmbedded
import XCTest

/// `DeadlineList`: many deadlines from one timer, on virtual time.
final class DeadlineListTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var list: DeadlineList!
    private var fired: [String] = []

    override func setUp() {
        self.loop = EmbeddedEventLoop()
        self.list = DeadlineList(eventLoop: self.loop)
        self.fired = []
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
    }

    @discardableResult
    private func add(_ name: String, in seconds: Int64) -> DeadlineList.Entry {
        self.list.add(deadline: self.loop.now + .seconds(seconds)) { [unowned self] in self.fired.append(name) }
    }

    func testEntriesFireAtTheirDeadlinesInOrder() {
        self.add("a", in: 10)
        self.loop.advanceTime(by: .seconds(3))
        self.add("b", in: 10)
        self.add("c", in: 10)
        self.loop.advanceTime(by: .seconds(7) - .nanoseconds(1))
        XCTAssertEqual(self.fired, [])
        self.loop.advanceTime(by: .nanoseconds(1))
        XCTAssertEqual(self.fired, ["a"])
        self.loop.advanceTime(by: .seconds(3))
        XCTAssertEqual(self.fired, ["a", "b", "c"], "equal deadlines in the order added")
        XCTAssertEqual(self.list.count, 0)
    }

    func testAnEarlierDeadlineAddedLaterFiresFirst() {
        // A reload that shortened the timeout: the new entry goes before the later ones.
        self.add("late", in: 10)
        self.add("later", in: 12)
        self.add("early", in: 5)
        self.add("middle", in: 11)
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(self.fired, ["early"])
        self.loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(self.fired, ["early", "late", "middle", "later"])
    }

    func testARemovedEntryDoesNotFireAndLetsGoOfItsCallback() {
        final class Owner {}
        weak var weakOwner: Owner?
        let entry: DeadlineList.Entry = {
            let owner = Owner()
            weakOwner = owner
            return self.list.add(deadline: self.loop.now + .seconds(10)) { _ = owner }
        }()
        let kept = self.add("kept", in: 10)
        XCTAssertNotNil(weakOwner, "held while armed")
        self.list.remove(entry)
        XCTAssertNil(weakOwner, "a removed entry holds no callback")
        XCTAssertFalse(entry.isArmed)
        self.list.remove(entry)  // twice: nothing
        self.loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(self.fired, ["kept"])
        XCTAssertFalse(kept.isArmed, "a fired entry is not armed")
        self.list.remove(kept)  // after firing: nothing
        XCTAssertEqual(self.list.count, 0)
    }

    func testRemovingTheHeadMovesTheTimerToTheNext() {
        let first = self.add("first", in: 5)
        self.add("second", in: 8)
        self.list.remove(first)
        self.loop.advanceTime(by: .seconds(7))
        XCTAssertEqual(self.fired, [])
        self.loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(self.fired, ["second"])
    }

    func testRemovingTheLastEntryLeavesTheTimerWhichThenFiresForNothing() {
        let only = self.add("only", in: 5)
        let armedAt = self.list.timerDeadline
        self.list.remove(only)
        XCTAssertEqual(self.list.timerDeadline, armedAt, "no cancel per removed entry (a connection that sent its request)")
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(self.fired, [])
        XCTAssertNil(self.list.timerDeadline, "fired with nothing due: not set again")
        self.loop.advanceTime(by: .seconds(20))
        self.add("again", in: 5)
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(self.fired, ["again"])
    }

    func testAnEntryAddedBehindAStaleTimerFiresAtItsOwnDeadline() {
        // The timer is left set for 5 s by a removed entry; the new one is due at 8 s.
        self.list.remove(self.add("gone", in: 5))
        self.loop.advanceTime(by: .seconds(3))
        self.add("new", in: 5)
        self.loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(self.fired, [], "not early")
        XCTAssertEqual(self.list.timerDeadline, self.loop.now + .seconds(3), "set again for the new head")
        self.loop.advanceTime(by: .seconds(3) - .nanoseconds(1))
        XCTAssertEqual(self.fired, [])
        self.loop.advanceTime(by: .nanoseconds(1))
        XCTAssertEqual(self.fired, ["new"])
    }

    func testACallbackMayRemoveAnotherDueEntryAndAddANewOne() {
        var second: DeadlineList.Entry!
        _ = self.list.add(deadline: self.loop.now + .seconds(5)) { [unowned self] in
            self.fired.append("first")
            self.list.remove(second)
            self.add("re-armed", in: 5)
        }
        second = self.add("second", in: 5)
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(self.fired, ["first"], "removed by the first before its turn")
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertEqual(self.fired, ["first", "re-armed"])
    }
}
