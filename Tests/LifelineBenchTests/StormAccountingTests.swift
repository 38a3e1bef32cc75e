import NIOCore
import NIOEmbedded
import NIOPosix
import XCTest

@testable import LifelineBench

/// The reconnect storm (`lifeline-bench load --storm-at`): each subscription's resume is timed from
/// its own drop to the first event after it, gaps and duplicates are judged across the reconnect,
/// and shards' storm figures merge into one.
final class StormAccountingTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    /// The body of one origin event, without its chunk framing.
    private func originEvent(id: Int64, stamp: Int64) -> [UInt8] {
        let framed = OriginEventEncoder(payload: 20).encode(id: id, stream: 0, stamp: stamp, allocator: self.allocator)
        let bytes = Array(framed.readableBytesView)
        let sizeEnd = bytes.firstIndex(of: UInt8(ascii: "\r"))!
        return Array(bytes[(sizeEnd + 2)..<(bytes.count - 2)])
    }

    private func receive(
        _ ids: [Int64], at wall: Int64, receiver: inout SSEReceiver, progress: inout SubscriptionProgress,
        counters: inout LoadCounters
    ) throws {
        for id in ids {
            try self.originEvent(id: id, stamp: wall - 1_000_000).withUnsafeBytes { raw in
                try receiver.receive(raw, wallNanoseconds: wall, progress: &progress, counters: &counters)
            }
        }
    }

    private func plan(stormAt: Int64?, connections: Int = 10) throws -> LoadPlan {
        LoadPlan(
            target: try LoadTarget.parse("http://127.0.0.1:8080/s/{k}"),
            address: try SocketAddress(ipAddress: "127.0.0.1", port: 8080), proto: .http1,
            totalConnections: connections, streams: 1, multiplex: 1, shard: Shard(index: 0, count: 1),
            durationNanoseconds: 10_000_000_000, rampNanoseconds: 0, sourceAddresses: [], reconnect: false,
            reconnectDelayNanoseconds: 0, connectTimeoutNanoseconds: 1_000_000_000, stormAtWallNanoseconds: stormAt)
    }

    func testResumeIsTimedFromTheDropToTheFirstEventAfterIt() throws {
        let drop: Int64 = 1_790_000_000_000_000_000
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        var before = SSEReceiver()
        try self.receive([1, 2, 3], at: drop - 500_000_000, receiver: &before, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.resumed, 0, "no storm yet")

        // The storm closes the connection at `drop`; the new connection replays 4 (missed while
        // away) 30 ms later, then 5 comes live.
        progress.stormDropWallNanoseconds = drop
        var after = SSEReceiver()
        try self.receive([4], at: drop + 30_000_000, receiver: &after, progress: &progress, counters: &counters)
        try self.receive([5], at: drop + 900_000_000, receiver: &after, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.resumed, 1, "one resume, ended by the first event only")
        XCTAssertEqual(counters.resumeLatency.totalCount, 1)
        XCTAssertEqual(Double(counters.resumeLatency.valueAtPercentile(50)), 30_000, accuracy: 30, "µs")
        XCTAssertNil(progress.stormDropWallNanoseconds)
        XCTAssertEqual(counters.gaps, 0)
        XCTAssertEqual(counters.duplicates, 0)
        XCTAssertEqual(progress.lastEventID, 5)
    }

    func testAResumeThatRepeatsOrSkipsShowsAsDuplicateOrGap() throws {
        // A gateway that replays from the wrong place: the resume is still timed, and the
        // id sequence across the reconnect says what went wrong.
        let drop: Int64 = 1_790_000_000_000_000_000
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        var before = SSEReceiver()
        try self.receive([10, 11], at: drop - 1, receiver: &before, progress: &progress, counters: &counters)
        progress.stormDropWallNanoseconds = drop
        var after = SSEReceiver()
        try self.receive([11, 14], at: drop + 5_000_000, receiver: &after, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.resumed, 1)
        XCTAssertEqual(Double(counters.resumeLatency.valueAtPercentile(100)), 5_000, accuracy: 5)
        XCTAssertEqual(counters.duplicates, 1, "11 again")
        XCTAssertEqual(counters.gaps, 1, "12 and 13 missing")
        XCTAssertEqual(counters.missingEvents, 2)
    }

    func testShardsStormFiguresMerge() throws {
        let base: Int64 = 1_790_000_000_000_000_000
        var one = LoadCounters()
        var two = LoadCounters()
        var both = LoadCounters()
        for value in 1...500 {
            LoadCounters.record(Int64(value * 100), in: &one.resumeLatency)
            LoadCounters.record(Int64(value * 1_000), in: &two.resumeLatency)
            LoadCounters.record(Int64(value * 100), in: &both.resumeLatency)
            LoadCounters.record(Int64(value * 1_000), in: &both.resumeLatency)
        }
        one.stormDropped = 500
        one.resumed = 500
        one.noteStormDrops(first: base + 2_000_000, last: base + 9_000_000)
        two.stormDropped = 510
        two.stormNotStreaming = 3
        two.resumed = 500
        two.noteStormDrops(first: base + 1_000_000, last: base + 4_000_000)
        let plan = try self.plan(stormAt: base)
        var merged = LoadCounters()
        var summaries: [LoadSummary] = []
        for counters in [one, two] {
            let json = LoadSummary(plan: plan, url: "http://127.0.0.1:8080/s/{k}", counters: counters, elapsedSeconds: 10).json()
            XCTAssertTrue(json.contains("\"resume_us\""), json)
            let summary = try LoadSummary.read(json: Array(json.utf8))
            summaries.append(summary)
            merged.merge(try summary.counters())
        }
        XCTAssertEqual(merged.stormDropped, 1_010)
        XCTAssertEqual(merged.stormNotStreaming, 3)
        XCTAssertEqual(merged.resumed, 1_000)
        XCTAssertEqual(merged.stormFirstDropWall, base + 1_000_000, "the earliest drop of any shard")
        XCTAssertEqual(merged.stormLastDropWall, base + 9_000_000, "the latest")
        XCTAssertEqual(merged.resumeLatency.totalCount, 1_000)
        for percentile in [50.0, 99.0, 100.0] {
            let expected = Double(both.resumeLatency.valueAtPercentile(percentile))
            XCTAssertEqual(
                Double(merged.resumeLatency.valueAtPercentile(percentile)), expected, accuracy: expected / 1000 + 1,
                "p\(percentile)")
        }
        // What `merge` prints: the first summary with every count and distribution from the sum.
        var total = summaries[0]
        total.apply(merged)
        let storm = try XCTUnwrap(total.storm)
        XCTAssertEqual(storm.atEpochMs, base / 1_000_000)
        XCTAssertEqual(storm.dropped, 1_010)
        XCTAssertEqual(storm.resumed, 1_000)
        XCTAssertEqual(storm.notResumed, 10)
        XCTAssertEqual(storm.dropSpreadMs, 8.0)
        XCTAssertEqual(storm.resumeUs.count, 1_000)
    }

    func testARunWithoutAStormHasNoStormBlockAndOldSummariesStillRead() throws {
        let json = LoadSummary(
            plan: try self.plan(stormAt: nil), url: "http://127.0.0.1:8080/s/{k}", counters: LoadCounters(),
            elapsedSeconds: 1
        ).json()
        XCTAssertFalse(json.contains("storm"), json)
        XCTAssertFalse(json.contains("resume_us"), json)
        let counters = try LoadSummary.read(json: Array(json.utf8)).counters()
        XCTAssertEqual(counters.stormDropped, 0)
    }

    /// The whole path on loopback against the bench origin: 20 subscriptions at 20 events/s, a
    /// storm 600 ms in. Each must come back once, with Last-Event-ID, and miss or repeat nothing;
    /// the origin's `GET /stats` counts the 20 resuming requests.
    func testAStormAgainstTheBenchOriginResumesEverySubscription() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let stats = OriginStats()
        let schedule = OriginSchedule(
            periodNanoseconds: 50_000_000, streams: 1, payload: 0, replay: 100, retryMilliseconds: nil,
            dropEveryNanoseconds: 0)
        let server = try OriginServer.startForTests(schedule: schedule, stats: stats, group: group)
        defer { try? server.close().wait() }
        let port = try XCTUnwrap(server.localAddress?.port)

        var plan = try self.plan(stormAt: BenchClock.wallNanoseconds() + 600_000_000, connections: 20)
        plan.target = try LoadTarget.parse("http://127.0.0.1:\(port)/s/{k}")
        plan.address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        let loop = LoadLoop(eventLoop: group.next(), plan: plan) { channel, connection, loop in
            try channel.pipeline.syncOperations.addHandler(
                HTTP1SubscriptionHandler(loop: loop, connection: connection, tls: nil))
        }
        LoadCommand.assign(plan: plan, to: [loop])
        loop.start(at: .now())
        Thread.sleep(forTimeInterval: 1.3)
        let counters = try loop.finish().wait()

        XCTAssertEqual(counters.stormDropped, 20)
        XCTAssertEqual(counters.stormNotStreaming, 0)
        XCTAssertEqual(counters.resumed, 20)
        XCTAssertEqual(counters.held, 20)
        XCTAssertEqual(counters.dropped, 0, "the storm's own closes are not dropped streams")
        XCTAssertEqual(counters.reconnects, 20)
        XCTAssertEqual(counters.gaps, 0)
        XCTAssertEqual(counters.duplicates, 0)
        XCTAssertGreaterThan(counters.stormFirstDropWall, 0)
        // Generous: a loaded test machine; at 20 events/s the next event is at most 50 ms away.
        XCTAssertLessThan(counters.resumeLatency.valueAtPercentile(100), 500_000, "µs")
        XCTAssertEqual(stats.streamRequests.load(ordering: .relaxed), 40)
        XCTAssertEqual(stats.resumeRequests.load(ordering: .relaxed), 20)
    }

    /// The storm closes a batch, then lets the loop poll its sockets before the next: a batch
    /// queued as a plain task ran in the same pass (SwiftNIO runs tasks queued by tasks before
    /// polling again), so every close and reconnect went before a byte was read.
    func testTheStormClosesABatchPerPassOfTheLoop() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let count = LoadLoop.stormBatchSize * 2 + 10
        let load = LoadLoop(eventLoop: loop, plan: try self.plan(stormAt: nil, connections: count)) { _, _, _ in }
        var channels: [EmbeddedChannel] = []
        for index in 0..<count {
            let subscription = Subscription(connectionIndex: index, stream: 0, path: "/s/0")
            subscription.phase = .streaming
            let connection = LoadConnection(index: index, sourceAddress: nil, openingOffset: 0, subscriptions: [subscription])
            let channel = EmbeddedChannel(loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
            connection.phase = .open(channel)
            channels.append(channel)
            load.add(connection)
        }
        func closed() -> Int { channels.filter { !$0.isActive }.count }

        load.storm()
        XCTAssertEqual(closed(), LoadLoop.stormBatchSize)
        loop.run()  // the rest of this pass: queued tasks, not the next batch
        XCTAssertEqual(closed(), LoadLoop.stormBatchSize, "the next batch waits for the loop to poll")
        loop.advanceTime(by: LoadLoop.stormPause)
        XCTAssertEqual(closed(), LoadLoop.stormBatchSize * 2)
        loop.advanceTime(by: LoadLoop.stormPause)
        XCTAssertEqual(closed(), count)
        XCTAssertEqual(load.counters.stormDropped, count)
    }
}
