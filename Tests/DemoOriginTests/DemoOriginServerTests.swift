import LifelineTestSupport
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest

@testable import DemoOrigin

final class DemoOriginServerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() async throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await self.group.shutdownGracefully()
        self.group = nil
    }

    private func startOrigin(
        port: Int = 0,
        tick: TimeAmount = .milliseconds(50),
        dropEvery: TimeAmount? = nil,
        maxReplay: Int = 1000
    ) async throws -> DemoOriginServer {
        try await DemoOriginServer.start(
            host: "127.0.0.1",
            port: port,
            configuration: DemoOriginConfiguration(tick: tick, dropEvery: dropEvery, maxReplay: maxReplay),
            group: self.group
        )
    }

    private func get(
        _ path: String,
        from origin: DemoOriginServer,
        method: HTTPMethod = .GET
    ) async throws -> SSETestClient {
        let client = try await SSETestClient.connect(port: origin.port, path: path, group: self.group, method: method)
        try await client.waitForClose()
        return client
    }

    private static func ids(_ events: [TestEvent]) -> [Int64] {
        events.map { Int64($0.id ?? "") ?? -1 }
    }

    private static func assertConsecutive(
        _ ids: [Int64],
        from first: Int64? = nil,
        file: StaticString = #filePath,
        line: UInt = #line
    ) {
        guard let start = first ?? ids.first else { return XCTFail("no ids", file: file, line: line) }
        XCTAssertEqual(ids, Array(start..<(start + Int64(ids.count))), "ids not consecutive", file: file, line: line)
    }


    // MARK: Plain routes

    func testServesPageHealthCheckAndErrors() async throws {
        let origin = try await self.startOrigin()

        let page = try await self.get("/", from: origin)
        XCTAssertEqual(page.head?.status, .ok)
        XCTAssertEqual(page.head?.headers.first(name: "Content-Type"), "text/html; charset=utf-8")
        XCTAssertTrue(page.body.contains("new EventSource(via(DEMO.directPort))"), page.body)
        XCTAssertTrue(page.body.contains("new LifelineEventSource(via(DEMO.lifelinePort))"), page.body)
        // Standing alone, the origin has no network paths: the page uses its own /events.
        XCTAssertTrue(
            page.body.contains(#"const DEMO = {"tickMs":50,"dropEvery":null,"directPort":null,"lifelinePort":null};"#),
            page.body
        )
        XCTAssertTrue(page.endedCleanly)

        let health = try await self.get("/healthz", from: origin)
        XCTAssertEqual(health.head?.status, .ok)
        XCTAssertEqual(health.body, "ok")

        let missing = try await self.get("/nope?x=1", from: origin)
        XCTAssertEqual(missing.head?.status, .notFound)
        XCTAssertFalse(missing.body.isEmpty)
        XCTAssertTrue(missing.endedCleanly)

        let posted = try await self.get("/events", from: origin, method: .POST)
        XCTAssertEqual(posted.head?.status, .methodNotAllowed)
        XCTAssertEqual(posted.head?.headers.first(name: "Allow"), "GET")

        let cut = try await self.get("/demo/cut", from: origin, method: .POST)
        XCTAssertEqual(cut.head?.status, .notFound, "nothing to cut without network paths")

        // A page of another site may read the stream and resume it with Last-Event-ID.
        let preflight = try await self.get("/events", from: origin, method: .OPTIONS)
        XCTAssertEqual(preflight.head?.status, .noContent)
        XCTAssertEqual(preflight.head?.headers.first(name: "Access-Control-Allow-Origin"), "*")
        XCTAssertEqual(
            preflight.head?.headers.first(name: "Access-Control-Allow-Headers"),
            "Last-Event-ID, Authorization, Cache-Control"
        )

        try await origin.stop()
    }

    func testPlainResponsesAreFramedAndHonourConnectionClose() async throws {
        let origin = try await self.startOrigin()
        let client = try await SSETestClient.connect(port: origin.port, path: "/healthz", group: self.group)
        try await client.waitForClose()
        XCTAssertEqual(client.head?.headers.first(name: "Connection"), nil)
        XCTAssertEqual(client.head?.headers.first(name: "Content-Length"), "2")

        let closing = try await SSETestClient.connect(
            port: origin.port,
            path: "/healthz",
            headers: [("Connection", "close")],
            group: self.group
        )
        try await closing.waitForClose()
        XCTAssertEqual(closing.head?.headers.first(name: "Connection"), "close")
        try await origin.stop()
    }

    // MARK: The stream

    func testEventsCarryConsecutiveIDsEachTick() async throws {
        let origin = try await self.startOrigin()
        let before = DemoTicks.tick(atMillis: DemoTicks.wallClockMillis(), tickMillis: 50)
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)

        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .ok)
        XCTAssertEqual(head.headers.first(name: "Content-Type"), "text/event-stream")
        XCTAssertEqual(head.headers.first(name: "Cache-Control"), "no-cache")
        XCTAssertEqual(head.headers.first(name: "Transfer-Encoding"), "chunked")
        XCTAssertEqual(head.headers.first(name: "Access-Control-Allow-Origin"), "*", "readable from any page")

        let events = try await client.waitForEvents(count: 5)
        let ids = Self.ids(events)
        Self.assertConsecutive(ids)
        XCTAssertGreaterThan(ids[0], before, "the first live event comes after the connection opened")
        XCTAssertTrue(client.body.hasPrefix(": demo origin\n\n"), client.body)
        XCTAssertEqual(client.comments, ["demo origin"])
        for event in events {
            let tick = Int64(event.id!)!
            XCTAssertNil(event.type, "default message type")
            XCTAssertEqual(event.lastEventID, event.id)
            XCTAssertEqual(event.data, "{\"tick\":\(tick),\"time\":\"\(DemoTicks.isoTimestamp(millis: tick * 50))\"}")
        }
        XCTAssertFalse(client.isClosed)

        await client.close()
        try await origin.stop()
    }

    func testManyConnectionsOnOneLoopShareTheTicks() async throws {
        let origin = try await self.startOrigin()
        var clients: [SSETestClient] = []
        for index in 0..<6 {
            clients.append(
                try await SSETestClient.connect(port: origin.port, path: "/events/\(index)?topic=x", group: self.group)
            )
        }
        for client in clients {
            Self.assertConsecutive(Self.ids(try await client.waitForEvents(count: 3)))
        }
        // Everyone is on the same tick grid: a tick seen by two clients has the same bytes.
        let last = clients.map { Self.ids($0.events).last! }.min()!
        for client in clients {
            try await client.waitUntil { $0.events.contains { $0.id == String(last + 1) } }
        }
        for client in clients {
            await client.close()
        }
        try await origin.stop()
    }

    func testLastEventIDReplaysExactlyTheMissedEvents() async throws {
        let origin = try await self.startOrigin()
        // An observer stays connected so that the test can wait for ticks without sleeping.
        let observer = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        let first = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        let seen = Self.ids(try await first.waitForEvents(count: 2))
        await first.close()
        let lastSeen = seen[1]

        try await observer.waitUntil { Self.ids($0.events).contains(lastSeen + 4) }
        let resumed = try await SSETestClient.connect(
            port: origin.port,
            path: "/events",
            headers: [("Last-Event-ID", String(lastSeen))],
            group: self.group
        )
        let events = try await resumed.waitForEvents(count: 6)
        Self.assertConsecutive(Self.ids(events), from: lastSeen + 1)

        // The query parameter (for polyfills) works the same way.
        let polyfill = try await SSETestClient.connect(
            port: origin.port,
            path: "/events?lastEventId=\(lastSeen)",
            group: self.group
        )
        Self.assertConsecutive(Self.ids(try await polyfill.waitForEvents(count: 6)), from: lastSeen + 1)

        for client in [observer, resumed, polyfill] {
            await client.close()
        }
        try await origin.stop()
    }

    func testReplayIsBoundedByMaxReplayAndIgnoresFutureIDs() async throws {
        let origin = try await self.startOrigin(maxReplay: 3)
        let before = DemoTicks.tick(atMillis: DemoTicks.wallClockMillis(), tickMillis: 50)
        let client = try await SSETestClient.connect(
            port: origin.port,
            path: "/events",
            headers: [("Last-Event-ID", "1")],
            group: self.group
        )
        let events = try await client.waitForEvents(count: 4)
        let after = DemoTicks.tick(atMillis: DemoTicks.wallClockMillis(), tickMillis: 50)
        let ids = Self.ids(events)
        Self.assertConsecutive(ids)
        // The replay is the 3 newest ticks at connect time: it starts at (tick at connect) - 2.
        XCTAssertGreaterThanOrEqual(ids[0], before - 2)
        XCTAssertLessThanOrEqual(ids[0], after - 2)

        let future = try await SSETestClient.connect(
            port: origin.port,
            path: "/events",
            headers: [("Last-Event-ID", String(after + 1_000_000))],
            group: self.group
        )
        let live = Self.ids(try await future.waitForEvents(count: 2))
        Self.assertConsecutive(live)
        XCTAssertGreaterThan(live[0], after - 1, "no replay for an id from the future")

        await client.close()
        await future.close()
        try await origin.stop()
    }

    func testDropEveryEndsTheStream() async throws {
        let origin = try await self.startOrigin(dropEvery: .milliseconds(300))
        let start = NIODeadline.now()
        let client = try await SSETestClient.connect(port: origin.port, path: "/events", group: self.group)
        try await client.waitForClose(timeout: .seconds(3))
        let elapsed = NIODeadline.now() - start
        XCTAssertTrue(client.endedCleanly, client.report())
        // 300 ms with ±25 % jitter: at least 225 ms after the request was handled.
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(200))
        Self.assertConsecutive(Self.ids(client.events))
        XCTAssertGreaterThanOrEqual(client.events.count, 2)
        try await eventually { origin.openConnectionCount == 0 }
        try await origin.stop()
    }

    func testStopCutsStreamsAndARestartOnTheSamePortContinuesTheIDs() async throws {
        let origin = try await self.startOrigin()
        let port = origin.port
        let client = try await SSETestClient.connect(port: port, path: "/events", group: self.group)
        let lastSeen = Self.ids(try await client.waitForEvents(count: 2))[1]
        XCTAssertEqual(origin.openConnectionCount, 1)

        try await origin.stop()
        try await client.waitForClose()
        XCTAssertFalse(client.endedCleanly, "stop cuts streams instead of ending them")
        try await origin.stop()  // idempotent

        // The server side closed first, so its sockets sit in TIME_WAIT: SO_REUSEADDR is needed.
        let restarted = try await self.startOrigin(port: port)
        XCTAssertEqual(restarted.port, port)
        let resumed = try await SSETestClient.connect(
            port: port,
            path: "/events",
            headers: [("Last-Event-ID", String(lastSeen))],
            group: self.group
        )
        Self.assertConsecutive(Self.ids(try await resumed.waitForEvents(count: 3)), from: lastSeen + 1)
        await resumed.close()
        try await restarted.stop()
    }
}
