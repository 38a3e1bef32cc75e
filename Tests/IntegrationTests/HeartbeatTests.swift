import LifelineTestSupport
import NIOCore
import XCTest

/// Heartbeats on the wire. Their timing is tested on an EmbeddedEventLoop in LifelineCoreTests;
/// these check what a client actually receives.
final class HeartbeatTests: XCTestCase {
    func testIdleClientGetsOpeningCommentThenHeartbeatComments() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.heartbeat = .milliseconds(100)
            configuration.heartbeatComment = "keepalive"
        })
        let client = try await harness.client()
        try await client.waitForHead()
        try await client.waitUntil { $0.comments.filter { $0 == "keepalive" }.count >= 2 }
        XCTAssertEqual(client.comments.first, "ok", "the opening comment comes first")
        XCTAssertTrue(client.body.hasPrefix(":ok\n\n"), client.report())
        XCTAssertTrue(client.events.isEmpty)
        await client.close()
        await harness.shutdown()
    }

    func testHeartbeatEventAndClientRetry() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.heartbeat = .milliseconds(100)
            configuration.heartbeatEvent = "ping"
            configuration.clientRetry = .seconds(3)
        })
        let client = try await harness.client()
        try await client.waitForEvents(count: 1)
        XCTAssertEqual(client.events.first?.type, "ping")
        XCTAssertEqual(client.events.first?.data, "")
        XCTAssertEqual(client.retry, 3000)
        await client.close()
        await harness.shutdown()
    }

    func testHeartbeatsGoOnlyBetweenEvents() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.heartbeat = .milliseconds(50)
        })
        let client = try await harness.client()
        try await client.waitForHead()
        try await harness.origin.waitForStreams(count: 1)
        // An event sent in pieces: a heartbeat must never land inside it.
        let responder = harness.origin.streamingResponders[0]
        responder.send("id: 1\ndata: first half")
        try await Task.sleep(nanoseconds: 200_000_000)  // long enough for several heartbeats
        responder.send(" second half\n\n")
        let events = try await client.waitForEvents(count: 1)
        XCTAssertEqual(events[0].data, "first half second half")
        XCTAssertFalse(client.body.contains("first half:"), client.report())
        await client.close()
        await harness.shutdown()
    }

    func testOriginRetryIsPassedOnUnlessTheGatewaySetsItsOwn() async throws {
        let harness = try await GatewayHarness.start()
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("retry: 5000\n\nid: 1\ndata: a\n\n")
        try await client.waitForEvents(count: 1)
        XCTAssertEqual(client.retry, 5000)
        let late = try await harness.client()
        try await late.waitForHead()
        try await late.waitUntil { $0.retry == 5000 }
        await client.close(); await late.close()
        await harness.shutdown()

        let own = try await GatewayHarness.start(configure: { configuration in
            configuration.clientRetry = .seconds(2)
            configuration.stream.forwardOriginRetry = false
        })
        let ownClient = try await own.client()
        try await own.origin.waitForStreams(count: 1)
        own.origin.broadcast("retry: 5000\n\nid: 1\ndata: a\n\n")
        try await ownClient.waitForEvents(count: 1)
        XCTAssertEqual(ownClient.retry, 2000)
        XCTAssertFalse(ownClient.body.contains("retry: 5000"), ownClient.report())
        await ownClient.close()
        await own.shutdown()
    }
}
