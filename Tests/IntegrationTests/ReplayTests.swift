import LifelineCore
import LifelineTestSupport
import NIOCore
import Server
import XCTest

final class ReplayTests: XCTestCase {
    /// A harness whose stream has sent events 1...count, kept alive by one client.
    private func streamWithEvents(
        _ count: Int,
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) async throws -> (GatewayHarness, SSETestClient) {
        let harness = try await GatewayHarness.start(configure: configure)
        let keeper = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        for id in 1...count {
            harness.origin.broadcast("id: \(id)\ndata: e\(id)\n\n")
        }
        try await keeper.waitForEvents(count: count)
        return (harness, keeper)
    }

    func testReconnectWithLastEventIDGetsTheMissedEventsThenLiveWithNoGapOrDuplicate() async throws {
        let (harness, keeper) = try await self.streamWithEvents(5)
        let client = try await harness.client(headers: [("Last-Event-ID", "3")])
        let head = try await client.waitForHead()
        XCTAssertEqual(head.headers.first(name: "lifeline-replay"), "hit")
        try await client.waitForEvents(count: 2)
        harness.origin.broadcast("id: 6\ndata: e6\n\n")
        try await client.waitForEvents(count: 3)
        XCTAssertEqual(client.events.map(\.id), ["4", "5", "6"])
        XCTAssertEqual(harness.origin.requests.count, 1, "served from the buffer, not the origin")
        await client.close(); await keeper.close()
        await harness.shutdown()
    }

    func testSeamUnderLoadHasNoGapOrDuplicate() async throws {
        let (harness, keeper) = try await self.streamWithEvents(10)
        // Clients join with different ids while events keep coming.
        let publisher = Task {
            for id in 11...200 {
                harness.origin.broadcast("id: \(id)\ndata: e\(id)\n\n")
                if id % 10 == 0 { try? await Task.sleep(nanoseconds: 1_000_000) }
            }
        }
        var joiners: [(Int, SSETestClient)] = []
        for from in stride(from: 1, through: 10, by: 3) {
            joiners.append((from, try await harness.client(headers: [("Last-Event-ID", String(from))])))
        }
        await publisher.value
        for (from, client) in joiners {
            try await client.waitUntil(timeout: .seconds(10)) { $0.events.last?.id == "200" }
            XCTAssertEqual(client.events.map(\.id), ((from + 1)...200).map { String($0) }, "joined after \(from)")
            await client.close()
        }
        await keeper.close()
        await harness.shutdown()
    }

    func testLastEventIDQueryParameterForPolyfills() async throws {
        let (harness, keeper) = try await self.streamWithEvents(3)
        let client = try await harness.client("/events?lastEventId=2")
        try await client.waitForEvents(count: 1)
        XCTAssertEqual(client.events.map(\.id), ["3"])
        XCTAssertEqual(client.head?.headers.first(name: "lifeline-replay"), "hit")
        XCTAssertEqual(harness.origin.requests.count, 1, "the parameter is not part of the stream's key")
        await client.close(); await keeper.close()
        await harness.shutdown()
    }

    func testUnknownIDWithUpstreamPolicyGetsAStreamOfItsOwn() async throws {
        let (harness, keeper) = try await self.streamWithEvents(3)
        let client = try await harness.client(headers: [("Last-Event-ID", "gone")])
        let head = try await client.waitForHead()
        XCTAssertEqual(head.headers.first(name: "lifeline-replay"), "miss")
        try await harness.origin.waitForRequests(count: 2)
        XCTAssertEqual(harness.origin.requests[1].lastEventID, "gone", "the origin is asked to replay")
        // Its stream is its own: an event on it reaches only this client.
        harness.origin.responders[1].send("id: gone+1\ndata: private\n\n")
        try await client.waitForEvents(count: 1)
        XCTAssertEqual(client.events.map(\.data), ["private"])
        XCTAssertEqual(keeper.events.count, 3)
        await client.close(); await keeper.close()
        await harness.shutdown()
    }

    func testUnknownIDWithLivePolicyJoinsLiveAndIsToldInBand() async throws {
        let (harness, keeper) = try await self.streamWithEvents(3) { configuration in
            configuration.stream.replayMiss = .live
            configuration.stream.gapEvent = "gap"
        }
        let client = try await harness.client(headers: [("Last-Event-ID", "gone")])
        let head = try await client.waitForHead()
        XCTAssertEqual(head.headers.first(name: "lifeline-replay"), "miss")
        try await client.waitForEvents(count: 1)
        XCTAssertEqual(client.events.first, TestEvent(type: "gap", data: "gone"))
        harness.origin.broadcast("id: 4\ndata: e4\n\n")
        try await client.waitForEvents(count: 2)
        XCTAssertEqual(client.events.last?.id, "4")
        XCTAssertEqual(harness.origin.requests.count, 1)
        await client.close(); await keeper.close()
        await harness.shutdown()
    }

    func testEvictedIDIsAMiss() async throws {
        let (harness, keeper) = try await self.streamWithEvents(10) { configuration in
            configuration.stream.replayLimits.events = 5
            configuration.stream.replayMiss = .live
        }
        let old = try await harness.client(headers: [("Last-Event-ID", "2")])
        let value1 = try await old.waitForHead()
        XCTAssertEqual(value1.headers.first(name: "lifeline-replay"), "miss")
        let recent = try await harness.client(headers: [("Last-Event-ID", "7")])
        try await recent.waitForEvents(count: 3)
        XCTAssertEqual(recent.events.map(\.id), ["8", "9", "10"])
        await old.close(); await recent.close(); await keeper.close()
        await harness.shutdown()
    }

    func testStreamLingersForAClientThatComesBack() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.stream.linger = .seconds(30)
        })
        let first = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("id: 1\ndata: a\n\n")
        try await first.waitForEvents(count: 1)
        await first.close()
        // Published while nobody is connected: the buffer keeps it.
        harness.origin.broadcast("id: 2\ndata: b\n\n")
        let back = try await harness.client(headers: [("Last-Event-ID", "1")])
        try await back.waitForEvents(count: 1)
        XCTAssertEqual(back.events.map(\.id), ["2"])
        XCTAssertEqual(harness.origin.requests.count, 1, "the upstream connection stayed")
        await back.close()
        await harness.shutdown()
    }

    func testAssignIDsGivesIDlessEventsReplayableIDs() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.stream.assignIDs = true
        })
        let keeper = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        for n in 1...4 {
            harness.origin.broadcast("data: n\(n)\n\n")
        }
        let events = try await keeper.waitForEvents(count: 4)
        let ids = events.compactMap(\.id)
        XCTAssertEqual(ids.count, 4)
        XCTAssertEqual(Set(ids).count, 4, "unique")
        let client = try await harness.client(headers: [("Last-Event-ID", ids[1])])
        try await client.waitForEvents(count: 2)
        XCTAssertEqual(client.events.map(\.data), ["n3", "n4"])
        await client.close(); await keeper.close()
        await harness.shutdown()
    }
}
