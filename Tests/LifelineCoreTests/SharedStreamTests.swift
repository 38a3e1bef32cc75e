import NIOCore
import NIOEmbedded
import SSE
import XCTest

@testable import LifelineCore

/// Several instances' streams of one key over one shared history (an in-memory stand-in for
/// Redis with the scripts' rules), on one virtual-time loop: one owner reads the origin, the
/// others follow; takeover, fencing, fallback and rejoin, and resumes served from the history.
final class SharedStreamTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var store: FakeSharedHistory!
    /// The origin connections each instance opened, with the id each was opened from.
    private var opened: [String: [(resumeID: String?, feed: FakeFeed)]] = [:]

    override func setUp() {
        self.loop = EmbeddedEventLoop()
        self.store = FakeSharedHistory(loop: self.loop)
        self.opened = [:]
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
        self.store = nil
    }

    /// An instance's stream of the key, started the way the opener does: a claim first.
    private func instance(_ name: String, resumeID: String? = nil) -> EventStream {
        let hub = StreamHub()
        let stream = EventStream(key: makeKey(), eventLoop: self.loop, configuration: StreamConfiguration(),
                                 opening: .init(resumeID: resumeID), reporting: .init(hub: hub))
        let history = self.store.history(for: name)
        var claim: HistoryClaim?
        history.claim(startFresh: false, nextSequence: 1) { claim = $0 }
        self.loop.run()
        stream.expectOpeners(1)
        stream.start(shared: .init(history: history, claim: claim!, lease: .seconds(5)) { [unowned self] resumeID, _ in
            let feed = FakeFeed()
            self.opened[name, default: []].append((resumeID, feed))
            return feed
        })
        self.loop.run()
        return stream
    }

    private func liveFeeds(_ name: String) -> Int {
        (self.opened[name] ?? []).count { $0.feed.stopCount == 0 }
    }

    private func subscriber(_ stream: EventStream, _ name: String, lastEventID: String? = nil) -> FakeSubscriber {
        let subscriber = FakeSubscriber(eventLoop: self.loop, name: name)
        stream.attach(subscriber, lastEventID: lastEventID, waitedForOpening: lastEventID == nil)
        self.loop.run()
        return subscriber
    }

    func testOneOwnerReadsTheOriginAndTheFollowersGetTheSameEvents() {
        let a = self.instance("a")
        let b = self.instance("b")
        XCTAssertEqual(self.liveFeeds("a"), 1)
        XCTAssertEqual(self.liveFeeds("b"), 0, "a follower opens no origin connection")
        a.upstreamConnected(isReconnect: false)
        let onA = self.subscriber(a, "on a")
        let onB = self.subscriber(b, "on b")
        a.upstreamReceived(outputs([1, 2, 3]))
        self.loop.run()
        a.upstreamReceived(outputs([4]))
        self.loop.run()
        XCTAssertEqual(onA.allIDs, ["1", "2", "3", "4"])
        XCTAssertEqual(onB.allIDs, ["1", "2", "3", "4"])
        XCTAssertEqual(self.store.events.map(\.sequence), [1, 2, 3, 4])
        XCTAssertEqual(a.status().role, .owner)
        XCTAssertEqual(b.status().role, .follower)
        XCTAssertEqual(b.status().upstreamState, "following")
    }

    func testTheOwnersBatchesAreStoredOneWriteAtATime() {
        let a = self.instance("a")
        a.upstreamConnected(isReconnect: false)
        _ = self.subscriber(a, "on a")
        // Three reads before the first write's answer: one write out, then one for the other two.
        a.upstreamReceived(outputs([1]))
        a.upstreamReceived(outputs([2]))
        a.upstreamReceived(outputs([3]))
        XCTAssertEqual(self.store.events.count, 0)
        self.loop.run()
        XCTAssertEqual(self.store.events.map(\.sequence), [1, 2, 3])
    }

    func testWhenTheOwnerDiesAFollowerTakesOverFromTheLastStoredIDWithinTheLease() {
        let a = self.instance("a")
        let b = self.instance("b")
        a.upstreamConnected(isReconnect: false)
        let onB = self.subscriber(b, "on b")
        a.upstreamReceived(outputs([1, 2, 3]))
        self.loop.run()
        // `a` dies: nothing it sends arrives any more.
        self.store.unanswered.insert("a")
        self.loop.advanceTime(by: .seconds(4))
        XCTAssertEqual(self.liveFeeds("b"), 0, "the lease (5 s) has not run out")
        self.loop.advanceTime(by: .seconds(2) + .milliseconds(700))
        XCTAssertEqual(self.opened["b"]?.count, 1, "b took over within the lease and a check")
        XCTAssertEqual(self.opened["b"]?.first?.resumeID, "3", "from the last stored id")
        XCTAssertEqual(b.status().role, .owner)
        // The origin goes on from 4 on b's connection; b's client sees no gap and no duplicate.
        b.upstreamConnected(isReconnect: false)
        b.upstreamReceived(outputs([4, 5]))
        self.loop.run()
        XCTAssertEqual(onB.allIDs, ["1", "2", "3", "4", "5"])
        XCTAssertEqual(self.store.events.map(\.id), ["1", "2", "3", "4", "5"])
        XCTAssertEqual(self.store.events.map(\.sequence), [1, 2, 3, 4, 5])
    }

    func testAPausedOwnerTakesNothingAfterItsLeaseAndBecomesAFollower() {
        let a = self.instance("a")
        let b = self.instance("b")
        a.upstreamConnected(isReconnect: false)
        let onA = self.subscriber(a, "on a")
        a.upstreamReceived(outputs([1, 2]))
        self.loop.run()
        // `a` is paused: its renewals do not arrive; b takes over and stores 3.
        self.store.unanswered.insert("a")
        self.loop.advanceTime(by: .seconds(7))
        XCTAssertEqual(b.status().role, .owner)
        b.upstreamConnected(isReconnect: false)
        b.upstreamReceived(outputs([3]))
        self.loop.run()
        // `a` wakes up and reads what its old connection still had: past its own lease, it takes
        // nothing, stops that connection, and finds b owns the stream.
        self.store.unanswered.remove("a")
        a.upstreamReceived(outputs([3, 4]))
        self.loop.run()
        XCTAssertEqual(self.opened["a"]?.first?.feed.stopCount, 1)
        XCTAssertEqual(self.store.events.map(\.id), ["1", "2", "3"], "nothing of a's is stored")
        XCTAssertEqual(a.status().role, .follower)
        b.upstreamReceived(outputs([4]))
        self.loop.run()
        XCTAssertEqual(onA.allIDs, ["1", "2", "3", "4"], "a's client goes on from the history, no gap, no duplicate")
    }

    func testAFencedAppendIsRefusedByTheStore() {
        let a = self.instance("a")
        a.upstreamConnected(isReconnect: false)
        _ = self.subscriber(a, "on a")
        a.upstreamReceived(outputs([1]))
        self.loop.run()
        // The lease passes to b while a's clock still thinks it holds it (a clock that lags).
        self.store.expireLease()
        let b = self.instance("b")
        XCTAssertEqual(b.status().role, .owner)
        a.upstreamReceived(outputs([2]))
        self.loop.run()
        XCTAssertEqual(self.store.appendsRefused, 1, "the store checked the token in the write")
        XCTAssertEqual(self.store.events.map(\.id), ["1"])
        XCTAssertEqual(self.opened["a"]?.first?.feed.stopCount, 1, "a stopped reading the origin")
    }

    func testStoreDownEachInstanceFallsBackFromItsLastIDThenRejoins() {
        let a = self.instance("a")
        let b = self.instance("b")
        a.upstreamConnected(isReconnect: false)
        let onB = self.subscriber(b, "on b")
        a.upstreamReceived(outputs([1, 2]))
        self.loop.run()
        self.store.reachable = false
        a.upstreamReceived(outputs([3]))
        self.loop.run()
        // b's follow broke: b reads the origin itself from the last id it delivered.
        XCTAssertEqual(b.status().role, .fallback)
        XCTAssertEqual(self.opened["b"]?.last?.resumeID, "2")
        XCTAssertEqual(a.status().role, .fallback, "a's write failed: a reads on, on its own")
        b.upstreamConnected(isReconnect: false)
        b.upstreamReceived(outputs([3, 4]))
        self.loop.run()
        XCTAssertEqual(onB.allIDs, ["1", "2", "3", "4"])
        // The store comes back empty (a restart): one of them owns a fresh history, the other
        // rejoins it where it holds its last id, and stops its own connection. Meanwhile the
        // origin sends each event on every connection that is open.
        self.store.flush()
        self.store.reachable = true
        for id in 5...14 {
            self.originSends([id], to: ["a": a, "b": b])
            self.loop.advanceTime(by: .milliseconds(500))
        }
        let roles = [a.status().role, b.status().role]
        XCTAssertEqual(Set(roles), [.owner, .follower], "\(roles)")
        XCTAssertEqual(self.liveFeeds("a") + self.liveFeeds("b"), 1, "one origin connection again")
        XCTAssertEqual(onB.allIDs, (1...14).map(String.init))
    }

    /// The origin sends `ids` on every connection open to it (an instance's current feed).
    private func originSends(_ ids: [Int], to streams: [String: EventStream]) {
        for (name, stream) in streams.sorted(by: { $0.key < $1.key }) {
            guard let feed = self.opened[name]?.last, feed.feed.stopCount == 0 else { continue }
            stream.upstreamReceived(outputs(ids))
        }
        self.loop.run()
    }

    func testAFollowerThatFindsEventsTrimmedBeforeItReadThemFallsBackInsteadOfSkipping() {
        let a = self.instance("a")
        a.upstreamConnected(isReconnect: false)
        _ = self.subscriber(a, "on a")
        a.upstreamReceived(outputs([1, 2, 3]))
        self.loop.run()
        // A new follower starts after 3 with an empty ring; its first read comes back after
        // MAXLEN trimmed 4 and 5 away.
        let b = self.instance("b")
        let onB = self.subscriber(b, "on b")
        b.historyReceived([encoded(6, id: "6")])
        self.loop.run()
        XCTAssertEqual(onB.allIDs, [], "nothing after the hole")
        XCTAssertEqual(b.status().role, .fallback)
        XCTAssertEqual(self.opened["b"]?.last?.resumeID, "3", "b reads the origin from where its clients started")
        // With events in its ring, the same.
        let c = self.instance("c")
        let onC = self.subscriber(c, "on c")
        a.upstreamReceived(outputs([4]))
        self.loop.run()
        c.historyReceived([encoded(7, id: "7")])
        self.loop.run()
        XCTAssertEqual(onC.allIDs, ["4"])
        XCTAssertEqual(self.opened["c"]?.last?.resumeID, "4", "c reads the origin from the last id it delivered")
    }

    func testAResumeOnAnInstanceWithoutTheIDIsServedFromTheHistory() {
        let a = self.instance("a")
        a.upstreamConnected(isReconnect: false)
        _ = self.subscriber(a, "on a")
        a.upstreamReceived(outputs([1, 2, 3, 4]))
        self.loop.run()
        // A new instance: its ring is empty; the history holds 2 and what followed.
        let c = self.instance("c")
        let resumer = self.subscriber(c, "resumer", lastEventID: "2")
        XCTAssertEqual(resumer.replayStatus, .hit)
        XCTAssertEqual(resumer.replayedIDs, ["3", "4"])
        a.upstreamReceived(outputs([5]))
        self.loop.run()
        XCTAssertEqual(resumer.allIDs, ["3", "4", "5"])
        // An id the history does not hold is a miss.
        let stranger = self.subscriber(c, "stranger", lastEventID: "nope")
        self.loop.advanceTime(by: .seconds(3))
        XCTAssertTrue(stranger.replayStatus == .miss || stranger.refusals == [.needsCatchUp(lastEventID: "nope")])
    }
}
