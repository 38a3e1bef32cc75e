import LifelineTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest

final class ScriptedOriginTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() async throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await self.group.shutdownGracefully()
        self.group = nil
    }

    func testHeadStatusAndBodyReachTheClient() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group) { _, responder in
            responder.sendHead(status: 201, headers: [("Content-Type", "text/event-stream"), ("X-Test", "yes")])
            responder.send("id: 1\ndata: a\n\n")
            responder.send(": ping\n\n")
            responder.send("event: e\ndata: b\n")
            responder.send("data: c\n\n")
            responder.end()
        }
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status.code, 201)
        XCTAssertEqual(head.headers.first(name: "x-test"), "yes")
        XCTAssertEqual(head.headers.first(name: "Transfer-Encoding"), "chunked")
        try await client.waitForClose()
        XCTAssertTrue(client.endedCleanly, client.report())
        XCTAssertEqual(client.body, "id: 1\ndata: a\n\n: ping\n\nevent: e\ndata: b\ndata: c\n\n")
        XCTAssertEqual(
            client.events,
            [TestEvent(id: "1", data: "a"), TestEvent(type: "e", data: "b\nc", lastEventID: "1")]
        )
        XCTAssertEqual(client.comments, ["ping"])
        try await origin.stop()
    }

    func testContentLengthResponse() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group) { _, responder in
            responder.sendHead(status: 503, headers: [("Content-Type", "text/plain"), ("Content-Length", "4")])
            responder.send("busy")
            responder.end()
        }
        let client = try await SSETestClient.connect(port: origin.port, path: "/", group: self.group)
        try await client.waitForClose()
        XCTAssertEqual(client.head?.status, .serviceUnavailable)
        XCTAssertNil(client.head?.headers.first(name: "Transfer-Encoding"))
        XCTAssertEqual(client.body, "busy")
        XCTAssertTrue(client.endedCleanly)
        XCTAssertTrue(client.events.isEmpty)
        try await origin.stop()
    }

    func testCloseAbruptlyIsNotACleanEnd() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group) { _, responder in
            responder.sendHead()
            responder.send("id: 1\ndata: a\n\n")
            responder.send("id: 2\ndata: cut")
            responder.closeAbruptly()
        }
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        try await client.waitForClose()
        XCTAssertFalse(client.endedCleanly, client.report())
        XCTAssertEqual(client.events, [TestEvent(id: "1", data: "a")])

        // A wait that cannot succeed any more fails at once, and says why.
        let start = NIODeadline.now()
        do {
            try await client.waitForEvents(count: 2, timeout: .seconds(10))
            XCTFail("expected the wait to fail")
        } catch let error as TestWaitError {
            XCTAssertTrue(error.description.contains("closed"), error.description)
            XCTAssertTrue(error.description.contains("data: cut"), error.description)
        }
        XCTAssertLessThan(NIODeadline.now() - start, .seconds(5))
        try await origin.stop()
    }

    func testResetIsSeenAsADroppedConnection() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group) { _, responder in
            responder.sendHead()
            responder.send("data: a\n\n")
            responder.reset()
        }
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        try await client.waitForClose()
        XCTAssertFalse(client.endedCleanly)
        try await origin.stop()
    }

    func testWaitTimesOutWithTheBodySoFar() async throws {
        let origin = try await ScriptedOrigin.start(
            group: self.group,
            handler: ScriptedOrigin.sseHandler(prelude: { _ in ": hi\n\n" })
        )
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        do {
            try await client.waitForEvents(count: 1, timeout: .milliseconds(100))
            XCTFail("expected a timeout")
        } catch let error as TestWaitError {
            XCTAssertTrue(error.description.contains("timed out after 100 ms"), error.description)
            XCTAssertTrue(error.description.contains(": hi"), error.description)
        }
        XCTAssertEqual(client.comments, ["hi"])
        await client.close()
        XCTAssertTrue(client.isClosed)
        try await origin.stop()
    }

    func testRequestsAreRecordedWithHeaders() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group) { _, responder in
            responder.sendHead(status: 204, headers: [])
            responder.end()
        }
        let first = try await SSETestClient.connect(
            port: origin.port,
            path: "/events?topic=a",
            headers: [("Last-Event-ID", "7"), ("X-Custom", "one")],
            group: self.group
        )
        try await first.waitForClose()
        let second = try await SSETestClient.connect(
            port: origin.port,
            path: "/submit",
            group: self.group,
            method: .POST,
            body: "payload"
        )
        try await second.waitForClose()
        try await origin.waitForRequests(count: 2)

        let requests = origin.requests
        XCTAssertEqual(requests.count, 2)
        XCTAssertEqual(requests[0].method, "GET")
        XCTAssertEqual(requests[0].uri, "/events?topic=a")
        XCTAssertEqual(requests[0].path, "/events")
        XCTAssertEqual(requests[0].query, "topic=a")
        XCTAssertEqual(requests[0].header("last-event-id"), "7")
        XCTAssertEqual(requests[0].lastEventID, "7")
        XCTAssertEqual(requests[0].header("X-CUSTOM"), "one")
        XCTAssertEqual(requests[0].header("Accept"), "text/event-stream")
        XCTAssertEqual(requests[0].header("Host"), "127.0.0.1:\(origin.port)")
        XCTAssertNil(requests[0].header("X-Missing"))
        XCTAssertEqual(requests[1].method, "POST")
        XCTAssertEqual(requests[1].body, "payload")
        XCTAssertEqual(first.head?.status, .noContent)
        XCTAssertTrue(first.endedCleanly)
        try await origin.stop()
    }

    func testBroadcastReachesEveryOpenStream() async throws {
        let origin = try await ScriptedOrigin.start(
            group: self.group,
            handler: ScriptedOrigin.sseHandler(prelude: { request in
                request.lastEventID.map { "id: \($0)r\ndata: replay\n\n" } ?? ""
            })
        )
        let a = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        let b = try await SSETestClient.connect(
            port: origin.port,
            path: "/events",
            headers: [("Last-Event-ID", "5")],
            group: self.group
        )
        try await origin.waitForStreams(count: 2)
        XCTAssertEqual(origin.broadcast("id: 6\ndata: six\n\n"), 2)

        let eventsA = try await a.waitForEvents(count: 1)
        XCTAssertEqual(eventsA, [TestEvent(id: "6", data: "six")])
        let eventsB = try await b.waitForEvents(count: 2)
        XCTAssertEqual(eventsB, [TestEvent(id: "5r", data: "replay"), TestEvent(id: "6", data: "six")])

        // The peer going away is visible to the origin, and the stream stops counting.
        // Requests on different connections may arrive in either order: find a's by its headers.
        let responderA = try XCTUnwrap(origin.responders.first { $0.request.lastEventID == nil })
        await a.close()
        try await responderA.waitUntilClosedByPeer()
        try await origin.waitUntil { $0.streamingResponders.count == 1 }
        XCTAssertEqual(origin.broadcast("id: 7\ndata: seven\n\n"), 1)
        try await b.waitUntil { $0.events.last?.id == "7" }

        origin.endAllStreams()
        try await b.waitForClose()
        XCTAssertTrue(b.endedCleanly)
        try await origin.stop()
    }

    func testCloseAllConnectionsMakesClientsReconnect() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        try await origin.waitForStreams(count: 1)
        origin.closeAllConnections()
        try await client.waitForClose()
        XCTAssertFalse(client.endedCleanly)
        try await origin.waitUntil { $0.openConnectionCount == 0 }

        let again = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        try await origin.waitForStreams(count: 1)
        XCTAssertEqual(origin.requests.count, 2)
        await again.close()
        try await origin.stop()
    }

    func testStopThenStartOnTheSamePort() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let port = origin.port
        let client = try await SSETestClient.connect(port: port, path: "/events", group: self.group)
        try await origin.waitForStreams(count: 1)
        try await origin.stop()
        try await client.waitForClose()

        let restarted = try await ScriptedOrigin.start(
            port: port,
            group: self.group,
            handler: ScriptedOrigin.sseHandler()
        )
        XCTAssertEqual(restarted.port, port)
        let again = try await SSETestClient.connect(port: port, path: "/events", group: self.group)
        try await again.waitForHead()
        await again.close()
        try await restarted.stop()
    }

    func testPausedClientBacksUpTheOrigin() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let client = try await SSETestClient.connect(
            port: origin.port,
            path: "/events",
            group: self.group,
            receiveBufferSize: 4096
        )
        try await client.waitForHead()
        client.pauseReading()

        let chunk = String(repeating: "data: 0123456789abcdef0123456789abcdef0123456789abcdef01234567\n\n", count: 1024)
        let chunks = 128  // 64 KiB × 128 = 8 MiB: more than the kernel buffers on both ends hold
        let responder = origin.responders[0]
        for _ in 0..<chunks {
            responder.send(chunk)
        }
        try await origin.waitUntil(timeout: .seconds(10)) { _ in !responder.isWritable }
        let total = chunk.utf8.count * chunks
        XCTAssertLessThan(client.bodyByteCount, total)

        client.resumeReading()
        try await client.waitUntil(timeout: .seconds(20)) { $0.bodyByteCount == total }
        XCTAssertEqual(client.events.count, 1024 * chunks)
        await client.close()
        try await origin.stop()
    }
}
