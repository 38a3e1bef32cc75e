import NIOCore
import XCTest

@testable import LifelineBench

/// What `lifeline-bench` counts must be right before any benchmark figure is believed: gaps and
/// duplicates from ids, latency from the origin's stamp, heartbeats told from events, shards merged
/// bucket for bucket. These feed the origin's own bytes to the load tool's receiver.
final class LoadAccountingTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    /// The body of one chunk-framed origin event (the HTTP/1.1 chunk framing removed).
    private func originEvent(id: Int64, stream: Int = 3, stamp: Int64, payload: Int = 100) -> [UInt8] {
        let framed = OriginEventEncoder(payload: payload).encode(id: id, stream: stream, stamp: stamp, allocator: self.allocator)
        let bytes = Array(framed.readableBytesView)
        let sizeEnd = bytes.firstIndex(of: UInt8(ascii: "\r"))!
        let size = Int(String(decoding: bytes[..<sizeEnd], as: UTF8.self), radix: 16)!
        XCTAssertEqual(Array(bytes.suffix(2)), Array("\r\n".utf8), "one whole chunk")
        XCTAssertEqual(bytes.count, sizeEnd + 2 + size + 2)
        return Array(bytes[(sizeEnd + 2)..<(sizeEnd + 2 + size)])
    }

    /// A load plan for `http://127.0.0.1:8080/s/{k}`.
    private func plan(proto: LoadProtocol, connections: Int, streams: Int, multiplex: Int, ramp: Int64) throws -> LoadPlan {
        LoadPlan(
            target: try LoadTarget.parse("http://127.0.0.1:8080/s/{k}"),
            address: try SocketAddress(ipAddress: "127.0.0.1", port: 8080), proto: proto,
            totalConnections: connections, streams: streams, multiplex: multiplex, shard: Shard(index: 0, count: 1),
            durationNanoseconds: 10_000_000_000, rampNanoseconds: ramp, sourceAddresses: [], reconnect: false,
            reconnectDelayNanoseconds: 0, connectTimeoutNanoseconds: 1_000_000_000)
    }

    private func receive(
        _ chunks: [[UInt8]],
        at wall: Int64 = 0,
        receiver: inout SSEReceiver,
        progress: inout SubscriptionProgress,
        counters: inout LoadCounters
    ) throws {
        for chunk in chunks {
            try chunk.withUnsafeBytes { raw in
                try receiver.receive(raw, wallNanoseconds: wall, progress: &progress, counters: &counters)
            }
        }
    }

    func testOriginEventsCarryIdStampAndPaddingAndGiveTheirLatency() throws {
        let stamp: Int64 = 1_790_000_000_123_456_789
        let body = self.originEvent(id: 42, stamp: stamp, payload: 100)
        let text = String(decoding: body, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("id: 42\ndata: \(stamp) 3 x"), text)
        XCTAssertTrue(text.hasSuffix("\n\n"))
        let dataLine = text.split(separator: "\n")[1]
        XCTAssertEqual(dataLine.count - "data: ".count, 100, "data padded to --payload")

        var receiver = SSEReceiver()
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        // Received 2.5 ms after the stamp, in two pieces split mid-line.
        try self.receive([Array(body[..<20]), Array(body[20...])], at: stamp + 2_500_000,
                         receiver: &receiver, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.events, 1)
        XCTAssertEqual(progress.lastEventID, 42)
        XCTAssertEqual(counters.unstampedEvents, 0)
        XCTAssertEqual(counters.latency.totalCount, 1)
        XCTAssertEqual(Double(counters.latency.valueAtPercentile(50)), 2_500, accuracy: 5, "µs")
    }

    func testGapsAndDuplicatesComeFromTheIds() throws {
        var receiver = SSEReceiver()
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        // 1, 2, 3, then 6 (4 and 5 missing), 6 again and 5 (duplicates), then 7, then 10.
        let ids: [Int64] = [1, 2, 3, 6, 6, 5, 7, 10]
        try self.receive(ids.map { self.originEvent(id: $0, stamp: 1_000) }, at: 2_000,
                         receiver: &receiver, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.events, 8)
        XCTAssertEqual(counters.gaps, 2)
        XCTAssertEqual(counters.missingEvents, 4, "4, 5, 8 and 9")
        XCTAssertEqual(counters.duplicates, 2)
        XCTAssertEqual(progress.lastEventID, 10)
    }

    func testProgressCarriesAcrossAReconnect() throws {
        // A reconnect is a new response (a new receiver) with the same progress: a resumed
        // stream that starts after the last id has no gap; one that repeats has duplicates.
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        var first = SSEReceiver()
        try self.receive([1, 2, 3].map { self.originEvent(id: $0, stamp: 1) }, receiver: &first, progress: &progress, counters: &counters)
        var second = SSEReceiver()
        try self.receive([3, 4].map { self.originEvent(id: $0, stamp: 1) }, receiver: &second, progress: &progress, counters: &counters)
        XCTAssertEqual(counters.gaps, 0)
        XCTAssertEqual(counters.duplicates, 1)
        XCTAssertEqual(progress.lastEventID, 4)
    }

    func testCommentsAreCountedWhateverTheLineEndingsAndSplits() throws {
        let stream = Array(": lifeline\r\n\r\n:hb\n\n:hb\r\r".utf8) + self.originEvent(id: 1, stamp: 1) + Array(":\r\n\r\n".utf8)
        for split in 0...stream.count {
            var receiver = SSEReceiver()
            var progress = SubscriptionProgress()
            var counters = LoadCounters()
            try self.receive([Array(stream[..<split]), Array(stream[split...])], receiver: &receiver,
                             progress: &progress, counters: &counters)
            XCTAssertEqual(counters.comments, 4, "split at \(split)")
            XCTAssertEqual(counters.events, 1, "split at \(split)")
            XCTAssertEqual(counters.bytes, stream.count)
        }
    }

    func testHeartbeatEventsAndRetryAreNotEvents() throws {
        var receiver = SSEReceiver()
        var progress = SubscriptionProgress()
        var counters = LoadCounters()
        try self.receive([Array("retry: 2500\n\nevent: ping\ndata:\n\nid: 9\n\n".utf8)], receiver: &receiver,
                         progress: &progress, counters: &counters)
        XCTAssertEqual(counters.events, 0)
        XCTAssertEqual(counters.heartbeatEvents, 1)
        XCTAssertEqual(progress.retryNanoseconds, 2_500_000_000)
        XCTAssertNil(progress.lastEventID, "an id-only block is not an event")
    }

    func testShardSummariesMergeBucketForBucket() throws {
        // Two shards' JSON summaries, merged, give the counts and percentiles of one run.
        var one = LoadCounters()
        var two = LoadCounters()
        var both = LoadCounters()
        for value in 1...1_000 {
            LoadCounters.record(Int64(value), in: &one.latency)
            LoadCounters.record(Int64(value * 7), in: &two.latency)
            LoadCounters.record(Int64(value), in: &both.latency)
            LoadCounters.record(Int64(value * 7), in: &both.latency)
        }
        one.events = 1_000
        one.gaps = 1
        one.held = 10
        two.events = 1_000
        two.duplicates = 2
        two.held = 5
        let plan = try self.plan(proto: .http1, connections: 15, streams: 1, multiplex: 1, ramp: 0)
        var merged = LoadCounters()
        for counters in [one, two] {
            let json = LoadSummary(plan: plan, url: "http://127.0.0.1:8080/s/{k}", counters: counters, elapsedSeconds: 10).json()
            merged.merge(try LoadSummary.read(json: Array(json.utf8)).counters())
        }
        XCTAssertEqual(merged.events, 2_000)
        XCTAssertEqual(merged.held, 15)
        XCTAssertEqual(merged.gaps, 1)
        XCTAssertEqual(merged.duplicates, 2)
        XCTAssertEqual(merged.latency.totalCount, both.latency.totalCount)
        // Summaries keep each bucket's count (three significant digits), so percentiles agree to
        // the bucket: within 0.1 %.
        for percentile in [50.0, 99.0, 99.9, 100.0] {
            let expected = Double(both.latency.valueAtPercentile(percentile))
            XCTAssertEqual(Double(merged.latency.valueAtPercentile(percentile)), expected, accuracy: expected / 1000 + 1, "p\(percentile)")
        }
    }

    func testEventIdsFollowTheWallClockSoARestartedOriginContinues() {
        let schedule = OriginSchedule(
            periodNanoseconds: 50_000_000, streams: 1, payload: 0, replay: 100, retryMilliseconds: nil, dropEveryNanoseconds: 0)
        let now: Int64 = 1_790_000_000_987_654_321
        let id = schedule.eventID(atWallNanoseconds: now)
        XCTAssertLessThanOrEqual(schedule.dueTime(of: id), now)
        XCTAssertGreaterThan(schedule.dueTime(of: id + 1), now)
        // One second later (a restart in between changes nothing): 20 events further at 20/s.
        XCTAssertEqual(schedule.eventID(atWallNanoseconds: now + 1_000_000_000), id + 20)
    }

    func testShardsSplitTheConnectionsAndStreamsGetEvenShares() throws {
        var plan = try self.plan(proto: .h2c, connections: 10, streams: 7, multiplex: 3, ramp: 1_000)
        var seen: [Int] = []
        for index in 0..<3 {
            plan.shard = Shard(index: index, count: 3)
            XCTAssertEqual(Array(plan.shardConnections).count, plan.shardConnectionCount)
            seen += plan.shardConnections
        }
        XCTAssertEqual(seen.sorted(), Array(0..<10), "every connection in exactly one shard")
        var perStream = [Int](repeating: 0, count: 7)
        for connection in 0..<10 {
            for request in 0..<3 {
                perStream[plan.stream(connection: connection, request: request)] += 1
            }
        }
        XCTAssertLessThanOrEqual(perStream.max()! - perStream.min()!, 1, "\(perStream)")
        XCTAssertEqual(plan.target.path(stream: 12), "/s/12")
        XCTAssertEqual(plan.openingOffset(connection: 5), 500, "openings spread evenly over the ramp")
    }
}
