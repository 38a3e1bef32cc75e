import LifelineTestSupport
import NIOCore
import XCTest

/// An origin that keeps a log of its events and, like a well-behaved SSE server, replays the ones
/// after a request's `Last-Event-ID`. `overlap` replays that many events from before the id too,
/// as some origins do, so that the gateway has to drop what it already sent.
final class EventLog: @unchecked Sendable {
    private let lock = NSLockLike()
    private var events: [(id: Int, data: String)] = []
    let overlap: Int

    init(overlap: Int = 0) { self.overlap = overlap }

    func append(_ id: Int) -> String {
        self.lock.withLock { self.events.append((id, "event \(id)")) }
        return "id: \(id)\ndata: event \(id)\n\n"
    }

    func replay(after lastEventID: String?) -> String {
        guard let lastEventID, let last = Int(lastEventID) else { return "" }
        return self.lock.withLock {
            self.events.filter { $0.id > last - self.overlap }.map { "id: \($0.id)\ndata: \($0.data)\n\n" }.joined()
        }
    }
}

final class ReconnectTests: XCTestCase {
    /// The origin dies and comes back on the same port, twice; meanwhile it publishes events that
    /// it replays by Last-Event-ID. The client sees every event once, in order, and no error.
    func testOriginRestartedMidStreamEachEventOnceInOrder() async throws {
        let log = EventLog(overlap: 2)
        let handler = ScriptedOrigin.sseHandler(prelude: { log.replay(after: $0.lastEventID) })
        let harness = try await GatewayHarness.start(origin: handler)
        var origin = harness.origin
        let client = try await harness.client()
        try await client.waitForHead()
        try await origin.waitForStreams(count: 1)
        var next = 1
        for _ in 0..<3 {
            origin.broadcast(log.append(next)); next += 1
        }
        try await client.waitForEvents(count: 3)
        var restartedOrigins: [ScriptedOrigin] = []
        for _ in 0..<2 {
            try await origin.stop()
            // Published while the origin is "down" (the gateway will get them by replay).
            _ = log.append(next); next += 1
            _ = log.append(next); next += 1
            origin = try await ScriptedOrigin.start(port: harness.origin.port, group: harness.group, handler: handler)
            restartedOrigins.append(origin)
            try await origin.waitForStreams(count: 1, timeout: .seconds(10))
            XCTAssertEqual(origin.requests.first?.lastEventID, String(next - 3), "resumes from the last id it got")
            origin.broadcast(log.append(next)); next += 1
            try await client.waitForEvents(count: next - 1, timeout: .seconds(10))
        }
        let ids = client.events.map(\.id)
        XCTAssertEqual(ids, (1..<next).map { String($0) }, client.report())
        XCTAssertFalse(client.isClosed, "the client's connection never dropped")
        await client.close()
        for restarted in restartedOrigins { try? await restarted.stop() }
        await harness.shutdown()
    }

    func testChunkedBodyCutShortIsReconnectedTransparently() async throws {
        let log = EventLog()
        let handler = ScriptedOrigin.sseHandler(prelude: { log.replay(after: $0.lastEventID) })
        let harness = try await GatewayHarness.start(origin: handler)
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(1))
        try await client.waitForEvents(count: 1)
        // Half an event, then the connection drops: the half is discarded, not delivered.
        harness.origin.streamingResponders[0].send("id: 99\ndata: half")
        harness.origin.streamingResponders[0].closeAbruptly()
        try await harness.origin.waitForRequests(count: 2)
        XCTAssertEqual(harness.origin.requests[1].lastEventID, "1")
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(2))
        try await client.waitForEvents(count: 2)
        XCTAssertEqual(client.events.map(\.data), ["event 1", "event 2"])
        await client.close()
        await harness.shutdown()
    }

    func testServerErrorsAreRetriedAnd204EndsTheStream() async throws {
        let answers = AnswerScript(["200", "503", "503", "200", "204", "204"])
        let harness = try await GatewayHarness.start { request, responder in
            switch answers.next() {
            case "200":
                responder.sendHead()
                responder.send("id: \(request.lastEventID.map { "\(Int($0)! + 1)" } ?? "1")\ndata: x\n\n")
                responder.closeAbruptly()
            case "503":
                responder.sendHead(status: 503, headers: [("Content-Type", "text/plain")])
                responder.send("busy")
                responder.end()
            default:
                responder.sendHead(status: 204, headers: [])
                responder.end()
            }
        }
        let client = try await harness.client()
        try await client.waitForClose(timeout: .seconds(10))
        XCTAssertTrue(client.endedCleanly, "a 204 on reconnect ends the client's response cleanly: \(client.report())")
        XCTAssertEqual(client.events.map(\.id), ["1", "2"])
        XCTAssertEqual(harness.origin.requests.count, 5)
        // The client's own reconnect now gets the 204, the spec's "stop reconnecting".
        let again = try await harness.client()
        let againHead = try await again.waitForHead()
        XCTAssertEqual(againHead.status, .noContent)
        await again.close()
        await harness.shutdown()
    }

    func testGivesUpWhenOriginStaysUnreachable() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.upstream.giveUp = .milliseconds(300)
        })
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        try await harness.origin.stop()
        try await client.waitForClose(timeout: .seconds(5))
        XCTAssertTrue(client.endedCleanly, client.report())
        await harness.shutdown()
    }

    func testOriginUnreachableAtFirstStillOpensTheStream() async throws {
        let harness = try await GatewayHarness.start()
        let port = harness.origin.port
        try await harness.origin.stop()
        let client = try await harness.client()
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .ok, "an EventSource opened during an origin restart stays open")
        let origin = try await ScriptedOrigin.start(port: port, group: harness.group, handler: ScriptedOrigin.sseHandler())
        try await origin.waitForStreams(count: 1, timeout: .seconds(5))
        origin.broadcast("id: 1\ndata: late\n\n")
        let events = try await client.waitForEvents(count: 1)
        XCTAssertEqual(events.map(\.data), ["late"])
        await client.close()
        try await origin.stop()
        await harness.shutdown()
    }

    func testOversizedEventEndsTheUpstreamConnectionNotTheClient() async throws {
        let log = EventLog()
        let handler = ScriptedOrigin.sseHandler(prelude: { log.replay(after: $0.lastEventID) })
        let harness = try await GatewayHarness.start(origin: handler, configure: { configuration in
            configuration.upstream.maxEventSize = 1024
        })
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(1))
        harness.origin.broadcast("id: 2\ndata: \(String(repeating: "x", count: 4096))\n\n")
        try await harness.origin.waitForRequests(count: 2)
        // The reconnect resumes after the oversized event, so an origin that replays by id
        // does not send it again (and again).
        XCTAssertEqual(harness.origin.requests[1].lastEventID, "2")
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast(log.append(3))
        try await client.waitForEvents(count: 2)
        XCTAssertEqual(client.events.map(\.id), ["1", "3"])
        XCTAssertFalse(client.isClosed)
        await client.close()
        await harness.shutdown()
    }

    func testUpstreamIdleTimeoutReconnects() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.upstream.idleTimeout = .milliseconds(200)
        })
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("id: 7\ndata: a\n\n")
        try await client.waitForEvents(count: 1)
        // Silence: the gateway drops the connection and comes back with Last-Event-ID.
        try await harness.origin.waitForRequests(count: 2, timeout: .seconds(3))
        XCTAssertEqual(harness.origin.requests[1].lastEventID, "7")
        XCTAssertFalse(client.isClosed)
        await client.close()
        await harness.shutdown()
    }
}

/// Answers in a scripted order, then repeats the last answer.
final class AnswerScript: @unchecked Sendable {
    private let lock = NSLockLike()
    private var answers: [String]
    init(_ answers: [String]) { self.answers = answers }
    func next() -> String {
        self.lock.withLock { self.answers.count > 1 ? self.answers.removeFirst() : self.answers[0] }
    }
}
