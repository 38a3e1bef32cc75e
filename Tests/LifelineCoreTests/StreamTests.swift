import NIOCore
import NIOEmbedded
import SSE
import XCTest

@testable import LifelineCore

final class StreamTests: XCTestCase {
    private var loop: EmbeddedEventLoop!
    private var feed: FakeFeed!

    override func setUp() {
        self.loop = EmbeddedEventLoop()
        self.feed = FakeFeed()
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
        self.feed = nil
    }

    /// A stream on the test loop. Misses are immediate unless `resumeWait` says otherwise.
    private func makeStream(
        _ configuration: StreamConfiguration = StreamConfiguration(),
        resumeID: String? = nil,
        sharing: StreamSharing = .shared,
        hub: StreamHub? = nil,
        resumeWait: TimeAmount = .zero
    ) -> EventStream {
        var configuration = configuration
        configuration.resumeWait = resumeWait
        let stream = EventStream(
            key: makeKey(),
            eventLoop: self.loop,
            configuration: configuration,
            sharing: sharing,
            opening: .init(resumeID: resumeID),
            reporting: .init(hub: hub)
        )
        stream.start(upstream: self.feed)
        stream.upstreamConnected(isReconnect: false)
        return stream
    }

    private func attach(
        _ stream: EventStream,
        lastEventID: String? = nil,
        isCreator: Bool = false,
        name: String = "subscriber"
    ) -> FakeSubscriber {
        let subscriber = FakeSubscriber(eventLoop: self.loop, name: name)
        stream.attach(subscriber, lastEventID: lastEventID, isCreator: isCreator)
        self.loop.run()
        return subscriber
    }

    // MARK: Attaching and replay

    func testAttachWithoutLastEventIDJoinsLive() {
        let stream = self.makeStream()
        stream.upstreamReceived(outputs([1, 2]))
        let subscriber = self.attach(stream)
        XCTAssertEqual(subscriber.replayStatus, StreamAttachment.Replay.none)
        XCTAssertEqual(subscriber.attachment?.replay.count, 0)
        XCTAssertNil(subscriber.attachment?.gapEvent)
        XCTAssertEqual(stream.subscriberCount, 1)
        stream.upstreamReceived(outputs([3]))
        XCTAssertEqual(subscriber.liveIDs, ["3"])
    }

    func testAttachIsNotSynchronousEvenOnTheSameLoop() {
        let stream = self.makeStream()
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        stream.attach(subscriber, lastEventID: nil)
        XCTAssertNil(subscriber.attachment, "callbacks must not re-enter the caller")
        self.loop.run()
        XCTAssertNotNil(subscriber.attachment)
    }

    func testAttachWithKnownIDReplaysExactlyWhatWasMissed() {
        let stream = self.makeStream()
        stream.upstreamReceived(outputs([1, 2, 3, 4]))
        let subscriber = self.attach(stream, lastEventID: "2")
        XCTAssertEqual(subscriber.replayStatus, .hit)
        XCTAssertEqual(subscriber.replayedIDs, ["3", "4"])
        XCTAssertEqual(subscriber.attachment?.replay.map(\.sequence), [3, 4])
        XCTAssertNil(subscriber.attachment?.gapEvent, "no gap event on a hit")
        stream.upstreamReceived(outputs([5]))
        XCTAssertEqual(subscriber.allIDs, ["3", "4", "5"], "the seam has no gap and no duplicate")
    }

    func testAttachWithNewestIDHitsWithNothingToReplay() {
        let stream = self.makeStream()
        stream.upstreamReceived(outputs([1, 2]))
        let subscriber = self.attach(stream, lastEventID: "2")
        XCTAssertEqual(subscriber.replayStatus, .hit)
        XCTAssertEqual(subscriber.replayedIDs, [])
    }

    func testAttachWithResumeIDOfTheStreamHits() {
        // The stream was opened upstream with Last-Event-ID 10: another client resuming from 10
        // is owed everything since.
        let stream = self.makeStream(resumeID: "10")
        stream.upstreamReceived(outputs([11, 12]))
        let subscriber = self.attach(stream, lastEventID: "10")
        XCTAssertEqual(subscriber.replayStatus, .hit)
        XCTAssertEqual(subscriber.replayedIDs, ["11", "12"])
    }

    func testMissWithUpstreamPolicyRefusesWithNeedsPrivateStream() {
        let stream = self.makeStream(StreamConfiguration(replayMiss: .upstream, gapEvent: "gap"))
        stream.upstreamReceived(outputs([5, 6]))
        let subscriber = self.attach(stream, lastEventID: "3")
        XCTAssertNil(subscriber.attachment)
        XCTAssertEqual(subscriber.refusals, [.needsCatchUp(lastEventID: "3")])
        XCTAssertEqual(stream.subscriberCount, 0, "a refused subscriber is not counted")
    }

    func testMissWithLivePolicyAttachesWithGapEvent() {
        let stream = self.makeStream(StreamConfiguration(replayMiss: .live, gapEvent: "lifeline-gap"))
        stream.upstreamReceived(outputs([5, 6]))
        let subscriber = self.attach(stream, lastEventID: "3")
        XCTAssertEqual(subscriber.replayStatus, .miss)
        XCTAssertEqual(subscriber.attachment?.replay.count, 0)
        XCTAssertEqual(subscriber.attachment?.gapEvent.map(string), "event: lifeline-gap\ndata: 3\n\n")
        stream.upstreamReceived(outputs([7]))
        XCTAssertEqual(subscriber.liveIDs, ["7"])
    }

    func testMissWithLivePolicyAndNoGapEventName() {
        let stream = self.makeStream(StreamConfiguration(replayMiss: .live))
        let subscriber = self.attach(stream, lastEventID: "3")
        XCTAssertEqual(subscriber.replayStatus, .miss)
        XCTAssertNil(subscriber.attachment?.gapEvent)
    }

    // MARK: Waiting for an id a little ahead

    func testUnknownIDWaitsForTheOriginsReplayInsteadOfMissing() {
        // After a restart: the stream was opened from the first client's id 10; another client
        // that saw 13 comes before the origin has replayed that far.
        let stream = self.makeStream(resumeID: "10", resumeWait: .seconds(2))
        stream.upstreamReceived(outputs([11]))
        let ahead = self.attach(stream, lastEventID: "13", name: "ahead")
        XCTAssertNil(ahead.attachment, "waits")
        XCTAssertEqual(ahead.refusals, [])
        self.loop.advanceTime(by: .milliseconds(300))
        stream.upstreamReceived(outputs([12, 13, 14]))
        self.loop.run()
        XCTAssertEqual(ahead.replayStatus, .hit)
        XCTAssertEqual(ahead.replayedIDs, ["14"], "exactly what followed its id")
        stream.upstreamReceived(outputs([15]))
        XCTAssertEqual(ahead.liveIDs, ["15"])
        XCTAssertEqual(ahead.refusals, [])
    }

    func testAnIDThatNeverArrivesIsAMissWhenTheWaitIsOver() {
        let stream = self.makeStream(StreamConfiguration(replayMiss: .upstream), resumeWait: .seconds(2))
        stream.upstreamReceived(outputs([5, 6]))
        let behind = self.attach(stream, lastEventID: "3")
        self.loop.advanceTime(by: .milliseconds(1900))
        stream.upstreamReceived(outputs([7]))
        XCTAssertEqual(behind.refusals, [], "still waiting")
        self.loop.advanceTime(by: .milliseconds(100))
        XCTAssertEqual(behind.refusals, [.needsCatchUp(lastEventID: "3")])
        XCTAssertNil(behind.attachment)
    }

    func testAnUnknownIDOnceEventsWereEvictedIsAMissAtOnce() {
        var configuration = StreamConfiguration(replayMiss: .upstream)
        configuration.replayLimits = .init(events: 2, bytes: 1 << 20, age: .seconds(600))
        let stream = self.makeStream(configuration, resumeWait: .seconds(2))
        stream.upstreamReceived(outputs([1, 2, 3]))
        let old = self.attach(stream, lastEventID: "1")
        XCTAssertEqual(old.refusals, [.needsCatchUp(lastEventID: "1")], "evicted: no use waiting")
    }

    func testWaitersLookAgainWhenTheStreamEnds() {
        let stream = self.makeStream(resumeWait: .seconds(2))
        let waiting = self.attach(stream, lastEventID: "99")
        stream.shutdown()
        self.loop.run()
        XCTAssertEqual(waiting.refusals, [.ended])
    }

    func testMissOnAPrivateStreamAttaches() {
        // A private stream is the answer to a miss; it never refuses its client.
        let stream = self.makeStream(StreamConfiguration(replayMiss: .upstream), sharing: .varyMismatch)
        let subscriber = self.attach(stream, lastEventID: "3")
        XCTAssertEqual(subscriber.replayStatus, .miss)
        XCTAssertEqual(subscriber.refusals, [])
    }

    func testCreatorWithLastEventIDIsReportedAsMiss() {
        let stream = self.makeStream(StreamConfiguration(gapEvent: "gap"), resumeID: "3")
        let creator = self.attach(stream, lastEventID: "3", isCreator: true)
        XCTAssertEqual(creator.replayStatus, .miss, "its id went to the origin, not to the buffer")
        XCTAssertEqual(creator.refusals, [])
    }

    func testEmptyLastEventIDCountsAsNone() {
        let stream = self.makeStream()
        stream.upstreamReceived(outputs([1]))
        let subscriber = self.attach(stream, lastEventID: "")
        XCTAssertEqual(subscriber.replayStatus, StreamAttachment.Replay.none)
    }

    /// The client that opens a stream attaches through a loop task queued after the origin
    /// response's head was handled; body bytes that came in the same read as the head (an origin
    /// that replays after the creator's Last-Event-ID at once, or just sends its first event
    /// quickly) reach the stream first. The creator must still get them.
    func testCreatorGetsEventsReceivedBeforeItAttached() {
        for lastEventID in [nil, "3"] as [String?] {
            let stream = self.makeStream(resumeID: lastEventID)
            // In the same read as the origin's head, before the creator's attach task runs:
            stream.upstreamReceived(outputs([4, 5]))
            let creator = self.attach(stream, lastEventID: lastEventID, isCreator: true)
            stream.upstreamReceived(outputs([6]))
            XCTAssertEqual(creator.allIDs, ["4", "5", "6"], "creator with Last-Event-ID \(lastEventID ?? "none")")
        }
    }

    func testClientThatWaitedForTheOpeningGetsEventsSinceTheStart() {
        let stream = self.makeStream()
        stream.upstreamReceived(outputs([1, 2]))
        let waiter = FakeSubscriber(eventLoop: self.loop)
        stream.attach(waiter, lastEventID: nil, waitedForOpening: true)
        self.loop.run()
        XCTAssertEqual(waiter.replayStatus, StreamAttachment.Replay.none)
        XCTAssertEqual(waiter.replayedIDs, ["1", "2"])
        // One that arrives later, without an id, joins live.
        let late = self.attach(stream)
        XCTAssertEqual(late.replayedIDs, [])
    }

    func testClientThatWaitedWithTheStreamsResumeIDHits() {
        let stream = self.makeStream(resumeID: "3")
        stream.upstreamReceived(outputs([4, 5]))
        let waiter = FakeSubscriber(eventLoop: self.loop)
        stream.attach(waiter, lastEventID: "3", waitedForOpening: true)
        self.loop.run()
        XCTAssertEqual(waiter.replayStatus, .hit)
        XCTAssertEqual(waiter.replayedIDs, ["4", "5"])
    }

    /// BUG: with `--replay-miss=live` the stream is opened without the creator's id, so a client
    /// that waited for the opening with a Last-Event-ID misses in the buffer; it then joins with
    /// no replay at all and loses the events that came with the origin's head, which the creator
    /// and id-less waiters get (`fromStart` is ignored on the miss path).
    func testWaiterWithUnknownIDUnderLivePolicyGetsEventsSinceTheStart() {
        let stream = self.makeStream(StreamConfiguration(replayMiss: .live))
        stream.upstreamReceived(outputs([1, 2]))
        let waiter = FakeSubscriber(eventLoop: self.loop)
        stream.attach(waiter, lastEventID: "7", waitedForOpening: true)
        self.loop.run()
        XCTAssertEqual(waiter.replayStatus, .miss)
        XCTAssertEqual(waiter.replayedIDs, ["1", "2"])
    }

    func testOriginResponseHeadersOfAReconnectReplaceTheFirstOnes() {
        let stream = EventStream(
            key: makeKey(),
            eventLoop: self.loop,
            configuration: StreamConfiguration(),
            opening: .init(originHeaders: [("Access-Control-Allow-Origin", "*")])
        )
        stream.start(upstream: self.feed)
        let first = self.attach(stream, name: "first")
        XCTAssertEqual(first.attachment?.originHeaders.map { "\($0.0): \($0.1)" }, ["Access-Control-Allow-Origin: *"])
        stream.upstreamResponseHeaders([("Access-Control-Allow-Origin", "https://app.example")])
        let later = self.attach(stream, name: "later")
        XCTAssertEqual(later.attachment?.originHeaders.map { "\($0.0): \($0.1)" }, ["Access-Control-Allow-Origin: https://app.example"])
        XCTAssertEqual(first.attachment?.originHeaders.map { "\($0.0): \($0.1)" }, ["Access-Control-Allow-Origin: *"],
                       "what a subscriber was given is its own copy")
    }

    // MARK: Fan-out

    func testEachBatchIsOneChunkToEverySubscriber() {
        let stream = self.makeStream()
        let a = self.attach(stream, name: "a")
        let b = self.attach(stream, name: "b")
        stream.upstreamReceived(outputs([1, 2, 3]))
        stream.upstreamReceived(outputs([4]))
        for subscriber in [a, b] {
            XCTAssertEqual(subscriber.chunks.count, 2)
            XCTAssertEqual(subscriber.chunks.map(\.eventCount), [3, 1])
            XCTAssertEqual(subscriber.liveText, "id: 1\ndata: e1\n\nid: 2\ndata: e2\n\nid: 3\ndata: e3\n\nid: 4\ndata: e4\n\n")
        }
        a.chunks[1].bytes.withUnsafeReadableBytes { a in
            b.chunks[1].bytes.withUnsafeReadableBytes { b in XCTAssertEqual(a.baseAddress, b.baseAddress, "encoded once, shared") }
        }
        XCTAssertEqual(stream.eventsReceived, 4)
        XCTAssertEqual(stream.replayCount, 4)
    }

    func testEmptyBatchSendsNothing() {
        let stream = self.makeStream()
        let subscriber = self.attach(stream)
        stream.upstreamReceived([])
        XCTAssertEqual(subscriber.chunks.count, 0)
    }

    func testRetryIsPassedOnAndRememberedForLaterJoiners() {
        let stream = self.makeStream()
        let early = self.attach(stream, name: "early")
        XCTAssertNil(early.attachment?.originRetry)
        stream.upstreamReceived([.retry(2500)] + outputs([1]))
        XCTAssertEqual(early.liveText, "retry: 2500\n\nid: 1\ndata: e1\n\n")
        XCTAssertEqual(early.chunks.first?.eventCount, 1)
        let late = self.attach(stream, name: "late")
        XCTAssertEqual(late.attachment?.originRetry, 2500)
        stream.upstreamReceived([.retry(500)])
        XCTAssertEqual(self.attach(stream, name: "later").attachment?.originRetry, 500)
    }

    func testDuplicatesReplayedByTheOriginAfterReconnectAreNotSentTwice() {
        let stream = self.makeStream()
        let subscriber = self.attach(stream)
        stream.upstreamReceived(outputs([1, 2, 3]))
        stream.upstreamDisconnected(reason: "test", kind: .dropped)
        XCTAssertEqual(stream.upstreamState, .reconnecting)
        stream.upstreamConnected(isReconnect: true)
        XCTAssertEqual(stream.upstreamState, .connected)
        stream.upstreamReceived(outputs([2, 3, 4]))
        XCTAssertEqual(subscriber.liveIDs, ["1", "2", "3", "4"])
        XCTAssertEqual(stream.duplicatesDropped, 2)
        XCTAssertEqual(stream.reconnects, 1)
    }

    func testLeavingSubscriberGetsNoMoreChunks() {
        let stream = self.makeStream()
        let a = self.attach(stream, name: "a")
        let b = self.attach(stream, name: "b")
        a.leave()
        a.leave()  // twice is harmless
        XCTAssertEqual(stream.subscriberCount, 1)
        stream.upstreamReceived(outputs([1]))
        XCTAssertEqual(a.chunks.count, 0)
        XCTAssertEqual(b.liveIDs, ["1"])
    }

    // MARK: Lifetime

    func testLastSubscriberLeavingStartsLingerThenTheStreamEnds() {
        let hub = StreamHub()
        let stream = self.makeStream(StreamConfiguration(linger: .seconds(30)), hub: hub)
        let subscriber = self.attach(stream)
        subscriber.leave()
        self.loop.run()
        XCTAssertFalse(stream.isEnded)
        self.loop.advanceTime(by: .seconds(30) - .nanoseconds(1))
        XCTAssertFalse(stream.isEnded, "lingers for the full time")
        XCTAssertEqual(self.feed.stopCount, 0)
        self.loop.advanceTime(by: .nanoseconds(1))
        XCTAssertTrue(stream.isEnded)
        XCTAssertEqual(stream.upstreamState, .ended)
        XCTAssertEqual(self.feed.stopCount, 1, "the upstream connection is closed")
        XCTAssertEqual(subscriber.ended, [], "no one was there to be told")
    }

    func testEventsDuringLingerAreBufferedForAReturningClient() {
        let stream = self.makeStream(StreamConfiguration(linger: .seconds(30)))
        let subscriber = self.attach(stream)
        stream.upstreamReceived(outputs([1]))
        subscriber.leave()
        stream.upstreamReceived(outputs([2, 3]))
        self.loop.advanceTime(by: .seconds(20))
        let back = self.attach(stream, lastEventID: "1")
        XCTAssertEqual(back.replayStatus, .hit)
        XCTAssertEqual(back.replayedIDs, ["2", "3"])
    }

    func testJoinDuringLingerCancelsIt() {
        let stream = self.makeStream(StreamConfiguration(linger: .seconds(30)))
        self.attach(stream).leave()
        self.loop.advanceTime(by: .seconds(20))
        let second = self.attach(stream)
        self.loop.advanceTime(by: .seconds(60))
        XCTAssertFalse(stream.isEnded)
        XCTAssertEqual(self.feed.stopCount, 0)
        // And the linger starts afresh when that one leaves.
        second.leave()
        self.loop.advanceTime(by: .seconds(29))
        XCTAssertFalse(stream.isEnded)
        self.loop.advanceTime(by: .seconds(1))
        XCTAssertTrue(stream.isEnded)
    }

    func testNoFirstSubscriberWithinTheGraceEndsTheStream() {
        let stream = self.makeStream(StreamConfiguration(linger: .seconds(1)))
        self.loop.advanceTime(by: StreamLifecycle.firstSubscriberGrace - .nanoseconds(1))
        XCTAssertFalse(stream.isEnded, "the first client gets the grace even with a shorter linger")
        self.loop.advanceTime(by: .nanoseconds(1))
        XCTAssertTrue(stream.isEnded)
        XCTAssertEqual(self.feed.stopCount, 1)
    }

    func testPrivateStreamEndsWithItsClient() {
        let stream = self.makeStream(StreamConfiguration(linger: .seconds(30)), sharing: .varyMismatch)
        let subscriber = self.attach(stream, lastEventID: "9", isCreator: true)
        subscriber.leave()
        self.loop.run()
        XCTAssertTrue(stream.isEnded)
        XCTAssertEqual(self.feed.stopCount, 1)
    }

    func testOriginNoContentEndsEverySubscriber() {
        let hub = StreamHub()
        let stream = self.makeStream(hub: hub)
        let a = self.attach(stream, name: "a")
        let b = self.attach(stream, name: "b")
        stream.upstreamEnded(.originNoContent)
        self.loop.run()
        XCTAssertEqual(a.ended, [.originNoContent])
        XCTAssertEqual(b.ended, [.originNoContent])
        XCTAssertTrue(stream.isEnded)
        XCTAssertEqual(self.feed.stopCount, 0, "the feed ended by itself; it is not stopped again")
        // Leaving after the end is harmless.
        a.leave()
        self.loop.run()
        stream.upstreamReceived(outputs([1]))
        XCTAssertEqual(b.chunks.count, 0, "nothing after the end")
    }

    func testOriginGaveUpEndsEverySubscriber() {
        let stream = self.makeStream()
        let a = self.attach(stream)
        stream.upstreamEnded(.originGaveUp)
        self.loop.run()
        XCTAssertEqual(a.ended, [.originGaveUp])
    }

    func testShutdownEndsSubscribersAndStopsTheFeed() {
        let stream = self.makeStream()
        let a = self.attach(stream)
        stream.shutdown()
        self.loop.run()
        XCTAssertEqual(a.ended, [.shutdown])
        XCTAssertEqual(self.feed.stopCount, 1)
        stream.shutdown()
        self.loop.run()
        XCTAssertEqual(a.ended, [.shutdown], "ends once")
        XCTAssertEqual(self.feed.stopCount, 1)
    }

    func testAttachingToAnEndedStreamIsRefused() {
        let stream = self.makeStream()
        stream.upstreamEnded(.originNoContent)
        let late = self.attach(stream, lastEventID: nil)
        XCTAssertNil(late.attachment)
        XCTAssertEqual(late.refusals, [.ended])
    }

    func testEndedStreamLeavesTheHub() {
        let hub = StreamHub()
        let key = makeKey()
        guard case .open(let ticket) = hub.lookup(key, on: self.loop, onOpened: { _ in }) else {
            return XCTFail("expected to open")
        }
        let stream = self.makeStream(hub: hub)
        hub.promote(ticket, to: stream)
        XCTAssertTrue(hub.stream(for: key) === stream)
        stream.upstreamEnded(.originNoContent)
        XCTAssertNil(hub.stream(for: key))
        XCTAssertTrue(hub.streams.isEmpty)
    }
}
