import LifelineCore
import LifelineTestSupport
import NIOCore
import XCTest

final class SharingTests: XCTestCase {
    func testFiftyClientsOfOneURLCauseOneOriginRequest() async throws {
        let harness = try await GatewayHarness.start()
        var clients: [SSETestClient] = []
        for _ in 0..<50 {
            clients.append(try await harness.client("/events?room=1"))
        }
        for client in clients {
            let head = try await client.waitForHead()
            XCTAssertEqual(head.status, .ok)
        }
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("id: 1\ndata: hello\n\n")
        for client in clients {
            let events = try await client.waitForEvents(count: 1)
            XCTAssertEqual(events, [TestEvent(id: "1", data: "hello")])
        }
        XCTAssertEqual(harness.origin.requests.count, 1, harness.origin.report())
        for client in clients { await client.close() }
        await harness.shutdown()
    }

    func testClientsWithDifferentCredentialsNeverShare() async throws {
        let harness = try await GatewayHarness.start()
        let alice = try await harness.client("/events", headers: [("Authorization", "Bearer alice")])
        try await alice.waitForHead()
        let bob = try await harness.client("/events", headers: [("Authorization", "Bearer bob")])
        try await bob.waitForHead()
        let carol = try await harness.client("/events", headers: [("Cookie", "session=carol")])
        try await carol.waitForHead()
        try await harness.origin.waitForStreams(count: 3)
        for responder in harness.origin.streamingResponders {
            let who = responder.request.header("authorization") ?? responder.request.header("cookie") ?? "?"
            responder.send("data: for \(who)\n\n")
        }
        let aliceEvents = try await alice.waitForEvents(count: 1)
        XCTAssertEqual(aliceEvents.map(\.data), ["for Bearer alice"])
        let bobEvents = try await bob.waitForEvents(count: 1)
        XCTAssertEqual(bobEvents.map(\.data), ["for Bearer bob"])
        let carolEvents = try await carol.waitForEvents(count: 1)
        XCTAssertEqual(carolEvents.map(\.data), ["for session=carol"])
        for client in [alice, bob, carol] { await client.close() }
        await harness.shutdown()
    }

    func testShareByPathAndQuerySharesAcrossCredentials() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.sharePolicy = try! SharePolicy.parse("path,query").get()
        })
        let alice = try await harness.client("/events", headers: [("Authorization", "Bearer alice")])
        try await alice.waitForHead()
        try await harness.origin.waitForStreams(count: 1)
        let bob = try await harness.client("/events", headers: [("Authorization", "Bearer bob")])
        try await bob.waitForHead()
        harness.origin.broadcast("data: public\n\n")
        let bobEvents = try await bob.waitForEvents(count: 1)
        XCTAssertEqual(bobEvents.map(\.data), ["public"])
        XCTAssertEqual(harness.origin.requests.count, 1)
        // A different query is a different stream.
        let other = try await harness.client("/events?other")
        try await other.waitForHead()
        XCTAssertEqual(harness.origin.requests.count, 2)
        for client in [alice, bob, other] { await client.close() }
        await harness.shutdown()
    }

    func testClientsArrivingWhileTheStreamOpensWaitForIt() async throws {
        // The origin holds its answer until the test says so.
        let harness = try await GatewayHarness.start { _, _ in }
        var clients: [SSETestClient] = []
        for _ in 0..<5 {
            clients.append(try await harness.client("/events"))
        }
        try await harness.origin.waitForRequests(count: 1)
        harness.origin.responders[0].sendHead(status: 200, headers: [("Content-Type", "text/event-stream"), ("Access-Control-Allow-Origin", "*")])
        harness.origin.responders[0].send("id: 1\ndata: a\n\n")
        for client in clients {
            let head = try await client.waitForHead()
            XCTAssertEqual(head.headers.first(name: "access-control-allow-origin"), "*")
            XCTAssertEqual(head.headers.first(name: "content-type"), "text/event-stream")
            XCTAssertEqual(head.headers.first(name: "cache-control"), "no-cache")
            XCTAssertEqual(head.headers.first(name: "x-accel-buffering"), "no")
        }
        harness.origin.responders[0].send("id: 2\ndata: b\n\n")
        for client in clients {
            let events = try await client.waitForEvents(count: 1)
            XCTAssertTrue(["1", "2"].contains(events[0].id ?? ""), client.report())
        }
        XCTAssertEqual(harness.origin.requests.count, 1)
        for client in clients { await client.close() }
        await harness.shutdown()
    }
}

final class UnannouncedStreamTests: XCTestCase {
    /// `curl -N` sends `Accept: */*`: an event-stream answer still becomes a shared stream that
    /// survives origin drops.
    func testEventStreamAnswerToAPlainGETBecomesAStream() async throws {
        let log = EventLog()
        let handler = ScriptedOrigin.sseHandler(prelude: { log.replay(after: $0.lastEventID) })
        let harness = try await GatewayHarness.start(origin: handler)
        let curl = try await harness.client("/events", headers: [("Accept", "*/*")])
        let head = try await curl.waitForHead()
        XCTAssertEqual(head.headers.first(name: "x-accel-buffering"), "no", "served as a stream")
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(1))
        try await curl.waitForEvents(count: 1)
        harness.origin.closeAllConnections()
        try await harness.origin.waitForRequests(count: 2)
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(2))
        try await curl.waitForEvents(count: 2)
        XCTAssertEqual(curl.events.map(\.id), ["1", "2"])
        let second = try await harness.client("/events", headers: [("Accept", "*/*")])
        try await second.waitForHead()
        harness.origin.broadcast(log.append(3))
        try await second.waitForEvents(count: 1)
        XCTAssertEqual(harness.origin.requests.count, 2, "the second curl joins the same stream")
        await curl.close(); await second.close()
        await harness.shutdown()
    }
}
