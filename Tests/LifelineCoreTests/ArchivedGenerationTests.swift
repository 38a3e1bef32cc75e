import NIOCore
import NIOEmbedded
import SSE
import XCTest

@testable import LifelineCore

/// A private generation kept in an archive (`--redis`), on virtual time: what the running stream
/// records, and a copy served from the archive on another instance.
final class ArchivedGenerationTests: XCTestCase {
    private var loop: EmbeddedEventLoop!

    override func setUp() {
        self.loop = EmbeddedEventLoop()
    }

    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
    }

    private func configuration() -> StreamConfiguration {
        var configuration = StreamConfiguration()
        configuration.resumeWindow = .seconds(60)
        configuration.resumeWait = .zero
        return configuration
    }

    private func generation() -> EventStream {
        EventStream(key: makeKey(), eventLoop: self.loop, configuration: self.configuration(), sharing: .privateGeneration)
    }

    private func encoded(_ sequences: ClosedRange<UInt64>) -> [EncodedEvent] {
        sequences.map { EncodedEvent(sequence: $0, id: "\($0)", bytes: ByteBuffer(string: "id: \($0)\ndata: e\($0)\n\n"), receivedAt: self.loop.now) }
    }

    private func attach(_ stream: EventStream, lastEventID: String? = nil, resumeFromCount: UInt64? = nil) -> FakeSubscriber {
        let subscriber = FakeSubscriber(eventLoop: self.loop)
        stream.attach(subscriber, lastEventID: lastEventID, resumeFromCount: resumeFromCount)
        self.loop.run()
        return subscriber
    }

    // MARK: The running instance records

    func testARunningGenerationRecordsEachBatchWhatItKeepsAndItsEnd() {
        let stream = self.generation()
        let recording = FakeRecording()
        stream.record(to: recording)
        stream.start(upstream: FakeFeed())
        stream.upstreamReceived(outputs([1, 2]))
        stream.upstreamReceived([.retry(100)])
        stream.upstreamReceived(outputs([3]))
        XCTAssertEqual(recording.batches.map { $0.map(\.sequence) }, [[1, 2], [3]], "one append per batch with events")
        XCTAssertEqual(recording.keptFrom, [1, 1])
        stream.upstreamEnded(.originFinished)
        XCTAssertEqual(recording.finished, [.originFinished])
        stream.upstreamEnded(.originBroke)
        XCTAssertEqual(recording.finished, [.originFinished], "recorded once")
    }

    func testAGenerationThatEndsWhileItsOriginRunsIsRecordedAsBrokenOff() {
        // Nobody resumed it within the window: the stream ends, its origin response is cut.
        let stream = self.generation()
        let recording = FakeRecording()
        stream.record(to: recording)
        stream.start(upstream: FakeFeed())
        stream.upstreamReceived(outputs([1]))
        self.loop.advanceTime(by: .seconds(61))
        XCTAssertTrue(stream.isEnded)
        XCTAssertEqual(recording.finished, [.originBroke])
    }

    // MARK: Another instance serves it from the archive

    func testAnArchivedGenerationServesAResumeByCountThenTheLiveRestThenItsEnd() {
        let stream = self.generation()
        var follows: [UInt64] = []
        let following = ArchiveFollowing()
        // Trimmed to its last three events by the running instance.
        let archived = ArchivedGeneration(facts: .init(caller: .init(authorization: nil, cookie: nil), responseHeaders: [],
                                                       displayPath: "/v1/chat", routePrefix: "/", method: "POST"),
                                          events: self.encoded(3...5), end: nil, keptFor: .seconds(60))
        stream.start(archived: .init(generation: archived) { after, _ in
            follows.append(after)
            return following
        })
        XCTAssertEqual(follows, [5], "follows after what it read")
        XCTAssertEqual(stream.upstreamState, .following)
        let byCount = self.attach(stream, resumeFromCount: 4)
        XCTAssertEqual(byCount.replayStatus, .hit)
        XCTAssertEqual(byCount.receivedIDs, ["5"])
        let byID = self.attach(stream, lastEventID: "3")
        XCTAssertEqual(byID.receivedIDs, ["4", "5"])
        let tooOld = self.attach(stream, lastEventID: "1")
        XCTAssertEqual(tooOld.replayStatus, .miss, "trimmed before the archive was read")
        stream.historyReceived(self.encoded(6...6))
        self.loop.run()
        XCTAssertEqual(byCount.receivedIDs, ["5", "6"])
        stream.historyEnded(.originFinished)
        self.loop.run()
        XCTAssertEqual(byCount.ended, [.originFinished])
        XCTAssertTrue(following.stopped)
        XCTAssertFalse(stream.isEnded, "kept for resumes")
        let late = self.attach(stream, resumeFromCount: 5)
        XCTAssertEqual(late.receivedIDs, ["6"])
        XCTAssertEqual(late.ended, [.originFinished], "what followed, then the same end")
        self.loop.advanceTime(by: .seconds(61))
        XCTAssertTrue(stream.isEnded)
    }

    func testAnEndedArchivedGenerationIsKeptForTheRestOfItsWindowOnly() {
        let stream = self.generation()
        let archived = ArchivedGeneration(facts: .init(caller: .init(authorization: nil, cookie: nil), responseHeaders: [],
                                                       displayPath: "/", routePrefix: "/", method: "POST"),
                                          events: self.encoded(1...2), end: .originBroke, keptFor: .seconds(10))
        stream.start(archived: .init(generation: archived) { _, _ in
            XCTFail("an ended generation is not followed")
            return ArchiveFollowing()
        })
        let subscriber = self.attach(stream, resumeFromCount: 0)
        XCTAssertEqual(subscriber.receivedIDs, ["1", "2"])
        XCTAssertEqual(subscriber.ended, [.originBroke], "broken off, as the origin's response was")
        self.loop.advanceTime(by: .seconds(11))
        XCTAssertTrue(stream.isEnded)
    }

    func testAnArchivedGenerationWhoseFollowFailsBreaksOffAndNeverAsksTheOrigin() {
        let stream = self.generation()
        let archived = ArchivedGeneration(facts: .init(caller: .init(authorization: nil, cookie: nil), responseHeaders: [],
                                                       displayPath: "/", routePrefix: "/", method: "POST"),
                                          events: self.encoded(1...1), end: nil, keptFor: .seconds(60))
        stream.start(archived: .init(generation: archived) { _, _ in ArchiveFollowing() })
        let subscriber = self.attach(stream, lastEventID: "1")
        stream.historyFollowFailed("the generation's recording stopped without an end")
        self.loop.run()
        XCTAssertEqual(subscriber.ended, [.originBroke])
        XCTAssertEqual(stream.upstreamState, .ended)
    }

    func testAFollowThatSkipsAnEventBreaksOffInsteadOfDeliveringAGap() {
        let stream = self.generation()
        let archived = ArchivedGeneration(facts: .init(caller: .init(authorization: nil, cookie: nil), responseHeaders: [],
                                                       displayPath: "/", routePrefix: "/", method: "POST"),
                                          events: self.encoded(1...2), end: nil, keptFor: .seconds(60))
        stream.start(archived: .init(generation: archived) { _, _ in ArchiveFollowing() })
        let subscriber = self.attach(stream, lastEventID: "2")
        stream.historyReceived(self.encoded(4...4))
        self.loop.run()
        XCTAssertEqual(subscriber.receivedIDs, [])
        XCTAssertEqual(subscriber.ended, [.originBroke])
    }
}

private final class FakeRecording: GenerationRecording {
    private(set) var batches: [[EncodedEvent]] = []
    private(set) var keptFrom: [UInt64] = []
    private(set) var finished: [StreamEndReason] = []

    func append(_ events: [EncodedEvent], keptFrom: UInt64) {
        self.batches.append(events)
        self.keptFrom.append(keptFrom)
    }

    func finish(_ reason: StreamEndReason) {
        self.finished.append(reason)
    }
}

private final class ArchiveFollowing: HistoryFollowing {
    private(set) var stopped = false
    func stop() { self.stopped = true }
}
