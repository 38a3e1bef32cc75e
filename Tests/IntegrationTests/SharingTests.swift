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

final class StreamOpeningTests: XCTestCase {
    /// Events that arrive with the origin's response head (in the same read) reach the client
    /// that opened the stream and those that waited for it.
    func testEventsThatComeWithTheHeadReachTheOpenerAndWaiters() async throws {
        let harness = try await GatewayHarness.start { _, _ in }
        let opener = try await harness.client()
        try await harness.origin.waitForRequests(count: 1)
        let waiter = try await harness.client()
        try await harness.gateway.waitForConnectionCount(2)
        // Head and first events in one go.
        harness.origin.responders[0].sendHead()
        harness.origin.responders[0].send("id: 1\ndata: first\n\nid: 2\ndata: second\n\n")
        for client in [opener, waiter] {
            let events = try await client.waitForEvents(count: 2)
            XCTAssertEqual(events.map(\.id), ["1", "2"], client.report())
        }
        XCTAssertEqual(harness.origin.requests.count, 1)
        await opener.close(); await waiter.close()
        await harness.shutdown()
    }

    /// A burst bigger than the replay buffer that comes with the origin's head: the buffer has let
    /// the first events go before the opening clients' attaches run, yet they are owed them all.
    /// (Found as a flaky CI failure: the keeper of ReplayTests.testEvictedIDIsAMiss got 5 of 10.)
    func testABurstLargerThanTheReplayBufferReachesTheOpenerAndEveryWaiter() async throws {
        let harness = try await GatewayHarness.start(origin: { _, _ in }, configure: { configuration in
            configuration.stream.replayLimits.events = 3
        })
        let opener = try await harness.client()
        try await harness.origin.waitForRequests(count: 1)
        var waiters: [SSETestClient] = []
        for _ in 0..<4 {
            waiters.append(try await harness.client())
        }
        try await harness.gateway.waitForConnectionCount(5)
        let burst = (1...10).map { "id: \($0)\ndata: e\($0)\n\n" }.joined()
        harness.origin.responders[0].sendHead()
        harness.origin.responders[0].send(burst)
        for client in [opener] + waiters {
            let events = try await client.waitForEvents(count: 10)
            XCTAssertEqual(events.map(\.id), (1...10).map(String.init), client.report())
        }
        // Once every opener is in, the buffer is back to its bounds for later clients.
        let late = try await harness.client(headers: [("Last-Event-ID", "8")])
        try await late.waitForEvents(count: 2)
        harness.origin.responders[0].send("id: 11\ndata: e11\n\n")
        let lateEvents = try await late.waitForEvents(count: 3)
        XCTAssertEqual(lateEvents.map(\.id), ["9", "10", "11"], late.report())
        XCTAssertEqual(harness.origin.requests.count, 1)
        for client in [opener, late] + waiters { await client.close() }
        await harness.shutdown()
    }

    func testRoutesWithDifferentQueriesAreDifferentStreams() async throws {
        // Even when the client's query is left out of the key.
        let harness = try await GatewayHarness.start(routes: [("/a", "/sse?topic=a"), ("/b", "/sse?topic=b")], configure: { configuration in
            configuration.sharePolicy = try! SharePolicy.parse("path").get()
        })
        let a = try await harness.client("/a")
        try await a.waitForHead()
        let b = try await harness.client("/b")
        try await b.waitForHead()
        try await harness.origin.waitForStreams(count: 2)
        XCTAssertEqual(Set(harness.origin.requests.map(\.uri)), ["/sse?topic=a", "/sse?topic=b"])
        await a.close(); await b.close()
        await harness.shutdown()
    }

    func testOriginHeadersComeFromTheLatestConnection() async throws {
        let harness = try await GatewayHarness.start(origin: ScriptedOrigin.sseHandler(
            headers: [("Content-Type", "text/event-stream"), ("Access-Control-Allow-Origin", "https://app.example")]))
        let port = harness.origin.port
        try await harness.origin.stop()
        // The stream is made while the origin is down: no origin headers yet.
        let early = try await harness.client()
        try await early.waitForHead()
        let origin = try await ScriptedOrigin.start(port: port, group: harness.group, handler: ScriptedOrigin.sseHandler(
            headers: [("Content-Type", "text/event-stream"), ("Access-Control-Allow-Origin", "https://app.example"), ("Set-Cookie", "a=b")]))
        try await origin.waitForStreams(count: 1, timeout: .seconds(5))
        let late = try await harness.client()
        let head = try await late.waitForHead()
        XCTAssertEqual(head.headers.first(name: "access-control-allow-origin"), "https://app.example")
        XCTAssertNil(head.headers.first(name: "set-cookie"), "a shared stream never passes on a cookie")
        await early.close(); await late.close()
        try await origin.stop()
        await harness.shutdown()
    }

    func testShutdownEndsEveryClientsResponseCleanly() async throws {
        let harness = try await GatewayHarness.start()
        let shared = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("id: 1\ndata: a\n\n")
        try await shared.waitForEvents(count: 1)
        let resumed = try await harness.client(headers: [("Last-Event-ID", "unknown")])  // a private stream
        try await resumed.waitForHead()
        await harness.gateway.shutdown()
        for client in [shared, resumed] {
            try await client.waitForClose()
            XCTAssertTrue(client.endedCleanly, client.report())
        }
        await harness.shutdown()
    }
}
