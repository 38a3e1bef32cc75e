import NIOCore
import NIOEmbedded
import XCTest

@testable import LifelineCore

/// A client whose id the shared stream missed catches up on a stream of its own, then continues
/// on the shared stream at exactly the next event: the splice, on one virtual-time loop.
final class StreamCatchUpTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var hub: StreamHub!

    override func setUp() {
        self.loop = EmbeddedEventLoop()
        self.hub = StreamHub()
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
        self.hub = nil
    }

    /// The shared stream for the key, found by the hub, opened from `resumeID`.
    private func sharedStream(resumeID: String?, configuration: StreamConfiguration = StreamConfiguration()) -> (EventStream, FakeFeed) {
        guard case .open(let ticket) = self.hub.lookup(makeKey(), on: self.loop, onOpened: { _ in }) else {
            XCTFail("the key is free")
            fatalError()
        }
        let stream = EventStream(key: makeKey(), eventLoop: self.loop, configuration: configuration,
                                 opening: .init(resumeID: resumeID), reporting: .init(hub: self.hub))
        let feed = FakeFeed()
        stream.start(upstream: feed)
        self.hub.promote(ticket, to: stream)
        stream.upstreamConnected(isReconnect: false)
        return (stream, feed)
    }

    /// A client's own stream, opened from its id, as the front end opens one after `needsCatchUp`.
    private func catchUpStream(resumeID: String, configuration: StreamConfiguration = StreamConfiguration()) -> (EventStream, FakeFeed) {
        let stream = EventStream(
            key: makeKey(), eventLoop: self.loop, configuration: configuration, sharing: .catchUp,
            opening: .init(resumeID: resumeID), reporting: .init(hub: self.hub)
        )
        let feed = FakeFeed()
        stream.start(upstream: feed)
        self.hub.registerPrivate(stream)
        stream.expectOpeners(1)
        stream.upstreamConnected(isReconnect: false)
        return (stream, feed)
    }

    func testAClientBehindTheSharedStreamCatchesUpThenContinuesOnItWithNoGapAndNoDuplicate() {
        // After a restart: the first resumer opened the shared stream from 5; it has 6...9.
        let (shared, sharedFeed) = self.sharedStream(resumeID: "5")
        let first = FakeSubscriber(eventLoop: self.loop, name: "first")
        shared.attach(first, lastEventID: "5", isCreator: true)
        self.loop.run()
        shared.upstreamReceived(outputs(Array(6...9)))

        // A later resumer with an older id: the shared stream cannot serve 2. Nothing was evicted,
        // so it waits for 2 to arrive (it might be ahead); it does not, and misses.
        let late = FakeSubscriber(eventLoop: self.loop, name: "late")
        shared.attach(late, lastEventID: "2")
        self.loop.run()
        XCTAssertEqual(late.refusals, [])
        self.loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(late.refusals, [.needsCatchUp(lastEventID: "2")])

        // Its own stream from 2: the origin replays 3...7 in one read.
        let late2 = FakeSubscriber(eventLoop: self.loop, name: "late")
        let (own, ownFeed) = self.catchUpStream(resumeID: "2")
        own.attach(late2, lastEventID: "2", isCreator: true)
        self.loop.run()
        own.upstreamReceived(outputs(Array(3...7)))
        // The question is out (7, which the shared stream holds); the origin sends 8 on the own
        // connection meanwhile: held back, not sent.
        own.upstreamReceived(outputs([8]))
        XCTAssertEqual(late2.receivedIDs, ["3", "4", "5", "6", "7"])
        self.loop.run()

        XCTAssertEqual(late2.continuations.count, 1, "moved to the shared stream")
        XCTAssertEqual(late2.continuations.first?.membership.stream === shared, true)
        XCTAssertEqual(late2.receivedIDs, ["3", "4", "5", "6", "7", "8", "9"], "what followed 7, from the shared stream")
        XCTAssertTrue(own.isEnded, "its own stream ended with its only client")
        XCTAssertEqual(ownFeed.stopCount, 1, "and closed its origin connection")
        XCTAssertEqual(shared.subscriberCount, 2)

        shared.upstreamReceived(outputs([10, 11]))
        self.loop.run()
        XCTAssertEqual(late2.receivedIDs, (3...11).map(String.init))
        XCTAssertEqual(first.allIDs, (6...11).map(String.init))
        XCTAssertEqual(sharedFeed.stopCount, 0)
        late2.leave()
        first.leave()
        self.loop.run()
    }

    func testAClientAheadOfTheSharedStreamGetsItsEventsAndJoinsOnceTheSharedStreamHasThem() {
        let (shared, _) = self.sharedStream(resumeID: nil)
        shared.upstreamReceived(outputs(Array(1...3)))
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        let (own, ownFeed) = self.catchUpStream(resumeID: "0")
        own.attach(subscriber, lastEventID: "0", isCreator: true)
        self.loop.run()
        // The own connection is a little ahead: 4 is not on the shared stream yet.
        own.upstreamReceived(outputs([1, 2, 3, 4]))
        self.loop.run()
        XCTAssertTrue(subscriber.continuations.isEmpty)
        XCTAssertEqual(subscriber.receivedIDs, ["1", "2", "3", "4"])
        // The miss asked again at once about 4; now 5 arrives on the own connection, and the
        // shared stream catches up with 4 and 5.
        own.upstreamReceived(outputs([5]))
        shared.upstreamReceived(outputs([4, 5]))
        self.loop.run()
        // Second miss backs off one batch; 6 arrives on both: the next question hits.
        own.upstreamReceived(outputs([6]))
        shared.upstreamReceived(outputs([6]))
        self.loop.run()
        own.upstreamReceived(outputs([7]))
        self.loop.run()
        shared.upstreamReceived(outputs([7, 8]))
        self.loop.run()
        XCTAssertEqual(subscriber.continuations.count, 1)
        XCTAssertEqual(subscriber.receivedIDs, (1...8).map(String.init), subscriber.receivedIDs.joined(separator: " "))
        XCTAssertEqual(ownFeed.stopCount, 1)
        subscriber.leave()
        self.loop.run()
    }

    func testWithNoSharedStreamTheClientStaysOnItsOwn() {
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        let (own, ownFeed) = self.catchUpStream(resumeID: "0")
        own.attach(subscriber, lastEventID: "0", isCreator: true)
        self.loop.run()
        for id in 1...20 {
            own.upstreamReceived(outputs([id]))
            self.loop.run()
        }
        XCTAssertEqual(subscriber.receivedIDs, (1...20).map(String.init))
        XCTAssertTrue(subscriber.continuations.isEmpty)
        XCTAssertEqual(ownFeed.stopCount, 0)
        subscriber.leave()
        self.loop.run()
        XCTAssertEqual(ownFeed.stopCount, 1)
    }

    func testAssignedIDsNeverSplice() {
        var configuration = StreamConfiguration()
        configuration.assignIDs = true
        let (shared, _) = self.sharedStream(resumeID: nil, configuration: configuration)
        shared.upstreamReceived([.event(originEvent(id: nil, data: "a"))])
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        let (own, ownFeed) = self.catchUpStream(resumeID: "x", configuration: configuration)
        own.attach(subscriber, lastEventID: "x", isCreator: true)
        self.loop.run()
        own.upstreamReceived([.event(originEvent(id: nil, data: "a"))])
        self.loop.run()
        XCTAssertTrue(subscriber.continuations.isEmpty)
        XCTAssertEqual(ownFeed.stopCount, 0)
        subscriber.leave()
        self.loop.run()
    }

    func testAClientThatLeavesWhileTheQuestionIsOutLeavesNothingBehind() {
        let (shared, _) = self.sharedStream(resumeID: nil)
        shared.upstreamReceived(outputs(Array(1...3)))
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        let (own, ownFeed) = self.catchUpStream(resumeID: "0")
        own.attach(subscriber, lastEventID: "0", isCreator: true)
        self.loop.run()
        own.upstreamReceived(outputs([1, 2]))
        subscriber.leave()  // before the shared stream's answer runs
        self.loop.run()
        XCTAssertTrue(own.isEnded)
        XCTAssertEqual(ownFeed.stopCount, 1)
        XCTAssertEqual(shared.subscriberCount, 0, "the continuation found no one and left again")
    }
}
