import Foundation
import LifelineTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest

@testable import Admin
@testable import LifelineCore
@testable import Server

/// The admin listener on real sockets: what clients, origin drops and resumes did shows in
/// `/metrics` exactly; the status endpoints; and none of it on the public listener.
final class AdminTests: XCTestCase {
    private func startAdmin(
        _ harness: GatewayHarness,
        state: @escaping @Sendable () -> String = { "ready" }
    ) async throws -> AdminServer {
        try await AdminServer.start(
            configuration: .init(host: "127.0.0.1", port: 0, state: state),
            gateway: harness.gateway,
            group: harness.group
        )
    }

    private func get(_ path: String, port: Int, method: String = "GET", group: EventLoopGroup) async throws -> (head: String, body: String) {
        let answer = try await RawHTTP.exchange(
            port: port,
            send: "\(method) \(path) HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
            group: group
        )
        guard let split = answer.range(of: "\r\n\r\n") else { return (answer, "") }
        return (String(answer[..<split.lowerBound]), String(answer[split.upperBound...]))
    }

    /// `/metrics` as `name{labels}` → value.
    private func metrics(_ admin: AdminServer, group: EventLoopGroup) async throws -> [String: Double] {
        let (head, body) = try await self.get("/metrics", port: admin.port, group: group)
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertTrue(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), head)
        var values: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                XCTFail("not a sample line: \(line)")
                continue
            }
            values[String(line[..<space])] = value
        }
        return values
    }

    /// Polls `/metrics` until `check` holds (values move on other loops a moment later).
    private func waitForMetrics(
        _ admin: AdminServer,
        group: EventLoopGroup,
        _ what: String,
        _ check: ([String: Double]) -> Bool
    ) async throws -> [String: Double] {
        let deadline = NIODeadline.now() + .seconds(5)
        while true {
            let values = try await self.metrics(admin, group: group)
            if check(values) { return values }
            if NIODeadline.now() > deadline {
                throw TestWaitError("metrics never showed \(what): \(values.filter { $0.key.hasPrefix("lifeline_") })")
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    func testMetricsCountClientsEventsDropsAndResumesExactly() async throws {
        let harness = try await GatewayHarness.start()
        let admin = try await self.startAdmin(harness)
        let group = harness.group

        var clients: [SSETestClient] = []
        for _ in 0..<3 {
            clients.append(try await harness.client("/events"))
        }
        try await harness.origin.waitForStreams(count: 1)
        for client in clients { _ = try await client.waitForHead() }
        var values = try await self.waitForMetrics(admin, group: group, "3 subscribers") { $0["lifeline_subscribers"] == 3 }
        XCTAssertEqual(values["lifeline_streams"], 1)
        XCTAssertEqual(values["lifeline_upstream_connected"], 1)
        XCTAssertEqual(values[#"lifeline_connections{protocol="http1",tls="false"}"#], 3)
        XCTAssertEqual(values[#"lifeline_connections{protocol="h2",tls="false"}"#], 0)
        XCTAssertEqual(values["lifeline_stream_requests_total"], 3)

        XCTAssertEqual(harness.origin.broadcast("id: 1\ndata: a\n\nid: 2\ndata: b\n\n"), 1)
        for client in clients { _ = try await client.waitForEvents(count: 2) }
        values = try await self.waitForMetrics(admin, group: group, "6 deliveries") { $0["lifeline_events_sent_total"] == 6 }
        XCTAssertEqual(values["lifeline_events_received_total"], 2)
        XCTAssertEqual(values["lifeline_replay_buffered_events"], 2)

        // The origin drops the connection twice (mid-response), then ends it once in order.
        for _ in 0..<2 {
            let before = harness.origin.requests.count
            harness.origin.closeAllConnections()
            try await harness.origin.waitForRequests(count: before + 1)
            try await harness.origin.waitForStreams(count: 1)
        }
        let before = harness.origin.requests.count
        harness.origin.endAllStreams()
        try await harness.origin.waitForRequests(count: before + 1)
        values = try await self.waitForMetrics(admin, group: group, "3 reconnects") {
            $0[#"lifeline_upstream_reconnects_total{reason="dropped"}"#] == 2
                && $0[#"lifeline_upstream_reconnects_total{reason="ended"}"#] == 1
        }
        XCTAssertEqual(values[#"lifeline_upstream_reconnects_total{reason="idle_timeout"}"#], 0)
        XCTAssertEqual(values["lifeline_subscribers"], 3, "origin drops never reach the clients")

        // A resume from a buffered id is a hit (one event replayed), from an unknown one a miss.
        let resumed = try await harness.client("/events", headers: [("Last-Event-ID", "1")])
        _ = try await resumed.waitForEvents(count: 1)
        let lost = try await harness.client("/events", headers: [("Last-Event-ID", "nope")])
        _ = try await lost.waitForHead()
        values = try await self.waitForMetrics(admin, group: group, "a hit and a miss") {
            $0[#"lifeline_replay_requests_total{result="hit"}"#] == 1 && $0[#"lifeline_replay_requests_total{result="miss"}"#] == 1
        }
        XCTAssertEqual(values["lifeline_events_sent_total"], 7, "6 live deliveries and one replayed event")

        // A request without Accept: text/event-stream is proxied, and counted as a stream when
        // the origin answers with one; a plain answer counts as proxied.
        let plainGet = try await SSETestClient.connect(port: harness.port, path: "/events/other", headers: [("Accept", "*/*")], group: group)
        _ = try await plainGet.waitForHead()
        values = try await self.waitForMetrics(admin, group: group, "6 stream requests") { $0["lifeline_stream_requests_total"] == 6 }
        XCTAssertEqual(values["lifeline_proxied_requests_total"], 0)
        await plainGet.close()

        for client in clients + [resumed, lost] { await client.close() }
        values = try await self.waitForMetrics(admin, group: group, "no subscriber") {
            $0["lifeline_subscribers"] == 0 && $0[#"lifeline_connections{protocol="http1",tls="false"}"#] == 0
        }
        XCTAssertEqual(values["lifeline_build_info{version=\"\(LifelineVersion.current)\"}"], 1)
        XCTAssertGreaterThan(values["process_resident_memory_bytes"] ?? 0, 1_000_000)
        XCTAssertGreaterThan(values["process_open_fds"] ?? 0, 3)
        XCTAssertGreaterThan(values["process_start_time_seconds"] ?? 0, 1_600_000_000)
        XCTAssertGreaterThan(values["lifeline_sent_bytes_total"] ?? 0, 0)
        await admin.stop()
        await harness.shutdown()
    }

    func testRefusalsAreCountedByReason() async throws {
        let harness = try await GatewayHarness.start(routes: [("/events", "/events")], configure: { $0.maxClientsPerIP = 1 })
        let admin = try await self.startAdmin(harness)
        let holder = try await harness.client("/events")
        _ = try await holder.waitForHead()
        let refused = try await RawHTTP.exchange(port: harness.port, send: "GET /events HTTP/1.1\r\nHost: x\r\n\r\n", group: harness.group)
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 429"), refused)
        await holder.close()
        try await harness.gateway.waitForConnectionCount(0)
        _ = try await RawHTTP.exchange(port: harness.port, send: "GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", group: harness.group)
        _ = try await RawHTTP.exchange(port: harness.port, send: "GET /events HTTP/1.1\r\n\r\n", group: harness.group)
        let values = try await self.waitForMetrics(admin, group: harness.group, "three refusals") {
            $0[#"lifeline_requests_refused_total{reason="too_many_from_address"}"#] == 1
                && $0[#"lifeline_requests_refused_total{reason="no_route"}"#] == 1
                && $0[#"lifeline_requests_refused_total{reason="bad_request"}"#] == 1
        }
        XCTAssertEqual(values[#"lifeline_requests_refused_total{reason="too_many_clients"}"#], 0)
        let report = try await self.statusReport(admin, group: harness.group)
        XCTAssertTrue(report.recent.contains { $0.kind == "refused" && $0.detail.hasPrefix("429 ") }, "\(report.recent)")
        await admin.stop()
        await harness.shutdown()
    }

    func testAdminPathsAreNotServedOnThePublicListener() async throws {
        let harness = try await GatewayHarness.start(origin: { request, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "6")])
            responder.send("origin")
            responder.end()
        })
        let admin = try await self.startAdmin(harness)
        for path in ["/metrics", "/healthz", "/readyz", "/status.json", "/status/events"] {
            let (head, body) = try await self.get(path, port: harness.port, group: harness.group)
            XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), "\(path): \(head)")
            XCTAssertEqual(body, "origin", "\(path) is an ordinary proxied path on the public listener")
        }
        XCTAssertEqual(harness.origin.requests.map(\.uri), ["/metrics", "/healthz", "/readyz", "/status.json", "/status/events"])
        let (head, _) = try await self.get("/events", port: admin.port, group: harness.group)
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 404"), "the admin listener serves no stream: \(head)")
        await admin.stop()
        await harness.shutdown()
    }

    func testHealthReadinessAndMethods() async throws {
        let harness = try await GatewayHarness.start()
        let state = NIOLockedValueBox("ready")
        let admin = try await self.startAdmin(harness, state: { state.withLockedValue { $0 } })
        var answer = try await self.get("/healthz", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 200"), answer.head)
        answer = try await self.get("/readyz", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 200"), answer.head)
        XCTAssertEqual(answer.body, "ready\n")
        state.withLockedValue { $0 = "draining" }
        answer = try await self.get("/readyz", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 503"), answer.head)
        XCTAssertEqual(answer.body, "draining\n")
        answer = try await self.get("/healthz", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 200"), "alive while draining: \(answer.head)")

        answer = try await self.get("/metrics", port: admin.port, method: "POST", group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 405"), answer.head)
        answer = try await self.get("/metrics", port: admin.port, method: "HEAD", group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 200"), answer.head)
        XCTAssertEqual(answer.body, "", "no body for HEAD")
        answer = try await self.get("/", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.contains("Content-Type: text/html; charset=utf-8"), answer.head)
        XCTAssertTrue(answer.body.contains("/status/events"), "the page reads the feed")
        answer = try await self.get("/nope", port: admin.port, group: harness.group)
        XCTAssertTrue(answer.head.hasPrefix("HTTP/1.1 404"), answer.head)
        await admin.stop()
        await harness.shutdown()
    }

    private func statusReport(_ admin: AdminServer, query: String = "", group: EventLoopGroup) async throws -> StatusReport {
        let (head, body) = try await self.get("/status.json" + query, port: admin.port, group: group)
        XCTAssertTrue(head.contains("Content-Type: application/json"), head)
        return try JSONDecoder().decode(StatusReport.self, from: Data(body.utf8))
    }

    func testStatusJSONListsStreamsWithQueryValuesMaskedTopAndFilter() async throws {
        let harness = try await GatewayHarness.start()
        let admin = try await self.startAdmin(harness)
        let a1 = try await harness.client("/events/a?token=s3cret&x=1")
        let a2 = try await harness.client("/events/a?token=s3cret&x=1")
        let b = try await harness.client("/events/b")
        try await harness.origin.waitForStreams(count: 2)
        for client in [a1, a2, b] { _ = try await client.waitForHead() }
        _ = try await self.waitForMetrics(admin, group: harness.group, "3 subscribers") { $0["lifeline_subscribers"] == 3 }

        let (_, raw) = try await self.get("/status.json", port: admin.port, group: harness.group)
        XCTAssertFalse(raw.contains("s3cret"), "query values never leave the gateway: \(raw)")
        var report = try await self.statusReport(admin, group: harness.group)
        XCTAssertEqual(report.streamCount, 2)
        XCTAssertEqual(report.subscribers, 3)
        XCTAssertEqual(report.streams.map(\.path), ["/events/a?token=…&x=…", "/events/b"], "most subscribers first")
        XCTAssertEqual(report.streams.map(\.subscribers), [2, 1])
        XCTAssertEqual(report.streams[0].upstream.state, "connected")
        XCTAssertTrue(report.streams[0].shared)
        XCTAssertEqual(report.streams[0].replay.maxEvents, harness.gateway.configuration.stream.replayLimits.events)
        XCTAssertEqual(report.connections.http1, 3)
        XCTAssertEqual(report.process.state, "ready")

        report = try await self.statusReport(admin, query: "?top=1", group: harness.group)
        XCTAssertEqual(report.streams.map(\.path), ["/events/a?token=…&x=…"])
        XCTAssertEqual(report.matching, 2)
        report = try await self.statusReport(admin, query: "?filter=%2FB", group: harness.group)
        XCTAssertEqual(report.streams.map(\.path), ["/events/b"], "case-insensitive, percent-decoded")
        XCTAssertEqual(report.matching, 1)
        for client in [a1, a2, b] { await client.close() }
        await admin.stop()
        await harness.shutdown()
    }

    func testAnOriginDownWhenItsStreamOpensShowsItsErrorAndARecentEvent() async throws {
        let harness = try await GatewayHarness.start(configure: {
            $0.routes = [try! Route.parse("/=http://127.0.0.1:1/").get()]  // nothing listens on port 1
        })
        let admin = try await self.startAdmin(harness)
        let client = try await harness.client("/events")
        _ = try await client.waitForHead()
        let deadline = NIODeadline.now() + .seconds(5)
        var report = try await self.statusReport(admin, group: harness.group)
        while report.recent.isEmpty || report.streams.first?.upstream.lastError == nil, NIODeadline.now() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
            report = try await self.statusReport(admin, group: harness.group)
        }
        let stream = try XCTUnwrap(report.streams.first)
        XCTAssertNotEqual(stream.upstream.state, "connected")
        XCTAssertNotNil(stream.upstream.lastError, "the page says why the origin is not connected")
        XCTAssertEqual(report.recent.filter { $0.kind == "origin_down" }.count, 1, "noted once per outage: \(report.recent)")
        await client.close()
        await admin.stop()
        await harness.shutdown()
    }

    func testStreamsShowTheClientsPathAndTheOriginsURL() async throws {
        let harness = try await GatewayHarness.start(routes: [("/prices", "/events")])
        let admin = try await self.startAdmin(harness)
        let client = try await harness.client("/prices/eu?key=s3cret")
        _ = try await client.waitForHead()
        var report = try await self.statusReport(admin, query: "?filter=prices", group: harness.group)
        XCTAssertEqual(report.streams.map(\.path), ["/prices/eu?key=…"])
        XCTAssertEqual(report.streams.first?.origin, "http://127.0.0.1:\(harness.origin.port)/events/eu?key=…")
        report = try await self.statusReport(admin, query: "?filter=events/eu", group: harness.group)
        XCTAssertEqual(report.matching, 1, "the origin's path matches the filter too")
        await client.close()
        await admin.stop()
        await harness.shutdown()
    }

    func testHostilePeersDoNotHurtTheAdminListener() async throws {
        let harness = try await GatewayHarness.start()
        let admin = try await self.startAdmin(harness)
        // Peers that ask and leave before the (asynchronous) answer, over and over.
        for path in ["/metrics", "/status.json", "/status/events"] {
            for _ in 0..<20 {
                let channel = try await ClientBootstrap(group: harness.group)
                    .connect(host: "127.0.0.1", port: admin.port).get()
                try await channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: a\r\n\r\n"))
                try await channel.close()
            }
        }
        // Garbage, and a head over NIO's limit: answered 400 and closed (not kept open: a
        // RawHTTP exchange that is not closed takes its whole 5 s timeout).
        let started = NIODeadline.now()
        let garbage = try await RawHTTP.exchange(port: admin.port, send: "\u{01}\u{02} nonsense\r\n\r\n", group: harness.group)
        XCTAssertTrue(garbage.hasPrefix("HTTP/1.1 400"), garbage)
        let huge = try await RawHTTP.exchange(
            port: admin.port,
            send: "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 200_000),
            group: harness.group
        )
        XCTAssertTrue(huge.hasPrefix("HTTP/1.1 400"), "an endless head is refused: \(huge.prefix(80))")
        XCTAssertLessThan(NIODeadline.now() - started, .seconds(4), "both connections were closed")
        // A body nobody asked for is read and dropped; the answer still comes.
        let body = String(repeating: "b", count: 1 << 20)
        let posted = try await RawHTTP.exchange(
            port: admin.port,
            send: "GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body,
            group: harness.group
        )
        XCTAssertTrue(posted.hasPrefix("HTTP/1.1 200"), posted.prefix(200).description)
        // And the listener still answers.
        let (head, text) = try await self.get("/healthz", port: admin.port, group: harness.group)
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertEqual(text, "ok\n")
        await admin.stop()
        await harness.shutdown()
    }

    func testFeedSendsAReportAtOnceThenEverySecond() async throws {
        let harness = try await GatewayHarness.start()
        let admin = try await self.startAdmin(harness)
        let page = try await SSETestClient.connect(port: admin.port, path: "/status/events?top=5", group: harness.group)
        let head = try await page.waitForHead()
        XCTAssertEqual(head.headers.first(name: "Content-Type"), "text/event-stream")
        let first = try await page.waitForEvents(count: 1, timeout: .seconds(2))
        let report = try JSONDecoder().decode(StatusReport.self, from: Data(first[0].data.utf8))
        XCTAssertEqual(report.top, 5)
        let client = try await harness.client("/events")
        _ = try await client.waitForHead()
        // The next reports show the new client without the page asking, and, the page being
        // open, the process's open descriptors (counted only while a page watches).
        try await page.waitUntil(timeout: .seconds(4)) { page in
            page.events.dropFirst().contains { event in
                guard let report = try? JSONDecoder().decode(StatusReport.self, from: Data(event.data.utf8)) else { return false }
                return report.subscribers == 1 && report.process.openFiles > 2
            }
        }
        await client.close()
        await page.close()
        await admin.stop()
        await harness.shutdown()
    }
}

/// The pieces of the admin side without sockets.
final class AdminUnitTests: XCTestCase {
    func testEmbeddedStatusPageIsTheRepositorysFile() throws {
        let file = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Admin/StatusPage/status-page.html")
        XCTAssertEqual(statusPageSource, try String(contentsOf: file, encoding: .utf8), "stale: run scripts/embed-status-page")
    }

    func testRecentEventsCoalesceRepeatsAndKeepTheNewest() {
        var recent = RecentEvents(capacity: 3)
        recent.add(RecentEvent(at: 100, kind: .refused, stream: nil, detail: "429"))
        recent.add(RecentEvent(at: 100.5, kind: .refused, stream: nil, detail: "429"))
        XCTAssertEqual(recent.events.map(\.count), [2], "a repeat within a second is counted")
        recent.add(RecentEvent(at: 102, kind: .refused, stream: nil, detail: "429"))
        recent.add(RecentEvent(at: 103, kind: .originDown, stream: "/a", detail: "reset"))
        recent.add(RecentEvent(at: 104, kind: .originUp, stream: "/a", detail: "back"))
        XCTAssertEqual(recent.events.map(\.at), [102, 103, 104], "oldest first, bounded")
        recent.add(RecentEvent(at: 105, kind: .slowClient, stream: "/a", detail: "cut"))
        XCTAssertEqual(recent.events.map(\.kind), [.originDown, .originUp, .slowClient])
    }

    func testViewFromQuery() {
        XCTAssertEqual(AdminRoutes.view(""), StatusFeed.View(top: 50, filter: ""))
        XCTAssertEqual(AdminRoutes.view("top=0&filter=a%20b+c"), StatusFeed.View(top: 1, filter: "a b c"))
        XCTAssertEqual(AdminRoutes.view("top=99999&filter=%zz"), StatusFeed.View(top: 1000, filter: "%zz"))
        XCTAssertEqual(AdminRoutes.view("top=x&filter").top, 50)
    }

    func testProcStatFieldsSurviveParenthesesInTheCommandName() {
        let fields = ProcessFigures.statFields("42 (a) b) (c) S 1 2 3")
        XCTAssertEqual(fields?.first, "S")
        let figures = ProcessFigures.read()
        XCTAssertGreaterThan(figures.residentBytes, 0)
        XCTAssertGreaterThan(figures.threads, 0)
        XCTAssertGreaterThan(figures.openFiles, 2)
        XCTAssertGreaterThan(figures.maxFiles, figures.openFiles)
        // The once-a-second sample without a page open skips the descriptor count, not the rest.
        let unwatched = ProcessFigures.read(countingOpenFiles: false)
        XCTAssertEqual(unwatched.openFiles, 0)
        XCTAssertGreaterThan(unwatched.residentBytes, 0)
        XCTAssertEqual(unwatched.maxFiles, figures.maxFiles)
    }

    func testCountersAddUpAcrossLoops() {
        var a = GatewayCounters()
        a.eventsSent = 2
        a.refused[.noRoute] = 1
        a.connectionsOpen[.h2, tls: true] = 3
        a.upstreamReconnects[.idleTimeout] = 1
        var b = GatewayCounters()
        b.eventsSent = 5
        b.refused[.noRoute] = 2
        b.refused[.headTooLarge] = 1
        let sum = a + b
        XCTAssertEqual(sum.eventsSent, 7)
        XCTAssertEqual(sum.refused[.noRoute], 3)
        XCTAssertEqual(sum.refused.total, 4)
        XCTAssertEqual(sum.connectionsOpen.h2TLS, 3)
        XCTAssertEqual(sum.connectionsOpen.total, 3)
        XCTAssertEqual(sum.upstreamReconnects.total, 1)
    }
}
