import LifelineCore
import LifelineTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SSE
import XCTest

@testable import Upstream

/// Records what a session tells its stream. Confined to the session's loop: read it by hopping there.
final class RecordingFeedDelegate: UpstreamFeedDelegate, @unchecked Sendable {
    enum Call: Equatable, Sendable, CustomStringConvertible {
        case connected(isReconnect: Bool)
        /// "name: value" lines.
        case responseHeaders([String])
        case received([SSEParser.Output])
        case disconnected
        case ended(StreamEndReason)

        var description: String {
            switch self {
            case .connected(let isReconnect): return "connected(reconnect: \(isReconnect))"
            case .responseHeaders(let lines): return "responseHeaders(\(lines))"
            case .received(let outputs): return "received(\(outputs.count))"
            case .disconnected: return "disconnected"
            case .ended(let reason): return "ended(\(reason))"
            }
        }
    }

    let eventLoop: EventLoop
    private var calls: [Call] = []

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func upstreamConnected(isReconnect: Bool) {
        self.eventLoop.preconditionInEventLoop()
        self.calls.append(.connected(isReconnect: isReconnect))
    }

    func upstreamResponseHeaders(_ headers: [(String, String)]) {
        self.eventLoop.preconditionInEventLoop()
        self.calls.append(.responseHeaders(headers.map { "\($0.0): \($0.1)" }))
    }

    func upstreamReceived(_ outputs: [SSEParser.Output]) {
        self.eventLoop.preconditionInEventLoop()
        self.calls.append(.received(outputs))
    }

    func upstreamDisconnected(reason: String, kind: UpstreamDisconnect) {
        self.eventLoop.preconditionInEventLoop()
        self.calls.append(.disconnected)
    }

    func upstreamEnded(_ reason: StreamEndReason) {
        self.eventLoop.preconditionInEventLoop()
        self.calls.append(.ended(reason))
    }

    /// The calls so far (read on the loop).
    func snapshot() async throws -> [Call] {
        try await self.eventLoop.submit { self.calls }.get()
    }

    /// The calls without the batches and headers: the connection story.
    func story() async throws -> [Call] {
        try await self.snapshot().filter {
            switch $0 {
            case .received, .responseHeaders: return false
            default: return true
            }
        }
    }

    /// Every event received, in order.
    func events() async throws -> [SSEEvent] {
        try await self.snapshot().flatMap { call -> [SSEEvent] in
            guard case .received(let outputs) = call else { return [] }
            return outputs.compactMap {
                if case .event(let event) = $0 { return event }
                return nil
            }
        }
    }

    /// Waits until `condition` holds for the calls so far.
    @discardableResult
    func wait(
        for what: String,
        timeout: TimeAmount = .seconds(5),
        _ condition: @escaping ([Call], [SSEEvent]) -> Bool
    ) async throws -> [Call] {
        let deadline = NIODeadline.now() + timeout
        while true {
            let calls = try await self.snapshot()
            let events = try await self.events()
            if condition(calls, events) { return calls }
            if NIODeadline.now() > deadline {
                throw TestWaitError("delegate waiting for \(what): timed out; calls: \(calls)")
            }
            // Re-check after the loop has had a chance to run; this is a condition wait, not a delay.
            try await Task.sleep(nanoseconds: 2_000_000)
        }
    }
}

/// Hands a connection to a session once its head says it is an event stream, as the front end does.
final class Adopter: OriginConnectionDelegate, @unchecked Sendable {
    let session: UpstreamSession
    let delegate: RecordingFeedDelegate
    init(session: UpstreamSession, delegate: RecordingFeedDelegate) {
        self.session = session
        self.delegate = delegate
    }
    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        XCTAssertEqual(head.status, .ok)
        self.session.start(delegate: self.delegate, adopting: connection)
    }
    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        XCTFail("body before the hand-over")
    }
    func originConnectionReadComplete(_ connection: OriginConnection) {}
    func originConnectionDidEnd(_ connection: OriginConnection) { XCTFail("ended before the hand-over") }
    func originConnection(_ connection: OriginConnection, didFail error: Error) { XCTFail("failed: \(error)") }
}

final class UpstreamSessionTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var loop: EventLoop { self.group.next() }

    override func setUp() {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        try? self.group.syncShutdownGracefully()
        self.group = nil
    }

    private func configuration(
        idleTimeout: TimeAmount? = nil,
        giveUp: TimeAmount? = nil,
        maxEventSize: Int = 1 << 20
    ) -> UpstreamSession.Configuration {
        UpstreamSession.Configuration(
            reconnectMin: .milliseconds(10),
            reconnectMax: .milliseconds(50),
            idleTimeout: idleTimeout,
            giveUp: giveUp,
            maxEventSize: maxEventSize,
            connectTimeout: .seconds(2)
        )
    }

    private func requestHead(port: Int) -> HTTPRequestHead {
        HTTPRequestHead(
            version: .http1_1,
            method: .GET,
            uri: "/events?topic=a",
            headers: ["Host": "127.0.0.1:\(port)", "Accept": "text/event-stream", "Accept-Encoding": "identity"]
        )
    }

    private func makeSession(
        port: Int,
        resumeID: String? = nil,
        configuration: UpstreamSession.Configuration
    ) -> (UpstreamSession, RecordingFeedDelegate) {
        let session = UpstreamSession(
            target: OriginTarget(scheme: .http, host: "127.0.0.1", port: port, basePath: "/events"),
            requestHead: self.requestHead(port: port),
            resumeID: resumeID,
            eventLoop: self.loop,
            configuration: configuration,
            logger: Logger(label: "test.upstream")
        )
        session.random = { 0 }
        return (session, RecordingFeedDelegate(eventLoop: self.loop))
    }

    /// A session whose first request is made by the session itself (as after a failed first request).
    private func startSession(
        port: Int,
        resumeID: String? = nil,
        configuration: UpstreamSession.Configuration? = nil
    ) async throws -> (UpstreamSession, RecordingFeedDelegate) {
        let (session, delegate) = self.makeSession(port: port, resumeID: resumeID, configuration: configuration ?? self.configuration())
        try await self.loop.submit { session.start(delegate: delegate, adopting: nil) }.get()
        return (session, delegate)
    }

    private func stop(_ session: UpstreamSession) async throws {
        try await self.loop.submit { session.stop() }.get()
    }

    private func ids(_ events: [SSEEvent]) -> [String] {
        events.map(\.lastEventID)
    }

    // MARK: Scenarios

    func testOriginClosesMidStreamSessionReconnectsWithLastEventID() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        XCTAssertNil(origin.requests[0].lastEventID, "a fresh stream sends no Last-Event-ID")
        XCTAssertEqual(origin.requests[0].uri, "/events?topic=a")
        XCTAssertEqual(origin.requests[0].header("accept"), "text/event-stream")

        origin.broadcast("id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
        try await delegate.wait(for: "2 events") { $1.count == 2 }
        origin.closeAllConnections()

        try await origin.waitForRequests(count: 2)
        XCTAssertEqual(origin.requests[1].lastEventID, "2", origin.report())
        XCTAssertEqual(origin.requests[1].uri, "/events?topic=a")
        try await origin.waitForStreams(count: 1)
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        origin.broadcast("id: 3\ndata: c\n\n")
        try await delegate.wait(for: "event 3") { $1.count == 3 }

        let story = try await delegate.story()
        XCTAssertEqual(story, [.connected(isReconnect: false), .disconnected, .connected(isReconnect: true)])
        let got1 = try await delegate.events()
        XCTAssertEqual(self.ids(got1), ["1", "2", "3"])
        let got2 = try await self.loop.submit { session.resumeID }.get()
        XCTAssertEqual(got2, "3")
        try await self.stop(session)
        try await origin.stop()
    }

    func testResumeIDIsSentOnTheFirstRequest() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, _) = try await self.startSession(port: origin.port, resumeID: "41")
        try await origin.waitForRequests(count: 1)
        XCTAssertEqual(origin.requests[0].lastEventID, "41")
        try await self.stop(session)
        try await origin.stop()
    }

    func testEventWithoutIDKeepsTheIDInForceForTheReconnect() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        // The last complete event has no id (5 is in force); the cut one's id 6 must not be used.
        origin.broadcast("id: 5\ndata: a\n\ndata: no id\n\nid: 6\ndata: cut")
        try await delegate.wait(for: "2 events") { $1.count == 2 }
        origin.closeAllConnections()
        try await origin.waitForRequests(count: 2)
        XCTAssertEqual(origin.requests[1].lastEventID, "5")
        try await self.stop(session)
        try await origin.stop()
    }

    func testCleanEndAndResetAreReconnectedToo() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 1\ndata: a\n\n")
        try await delegate.wait(for: "event 1") { $1.count == 1 }
        origin.endAllStreams()  // the terminating chunk: a response that ends is still a drop
        try await origin.waitForRequests(count: 2)
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 2\ndata: b\n\n")
        try await delegate.wait(for: "event 2") { $1.count == 2 }
        origin.streamingResponders[0].reset()  // ECONNRESET
        try await origin.waitForRequests(count: 3)
        XCTAssertEqual(origin.requests.map(\.lastEventID), [nil, "1", "2"])
        try await delegate.wait(for: "two reconnects") { calls, _ in
            calls.filter { $0 == .connected(isReconnect: true) }.count == 2
        }
        let story = try await delegate.story()
        XCTAssertEqual(
            story,
            [.connected(isReconnect: false), .disconnected, .connected(isReconnect: true), .disconnected, .connected(isReconnect: true)]
        )
        try await self.stop(session)
        try await origin.stop()
    }

    func testWrongContentTypeOnReconnectIsRetried() async throws {
        let count = NIOLockedValueBox(0)
        let origin = try await ScriptedOrigin.start(group: self.group) { request, responder in
            let number = count.withLockedValue { $0 += 1; return $0 }
            let type = number == 2 ? "text/html" : "text/event-stream"
            responder.sendHead(status: 200, headers: [("Content-Type", type)])
            if number == 2 {
                responder.send("<html>data: not an event</html>\n\ndata: nor this\n\n")
                responder.end()
            }
        }
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        origin.closeAllConnections()
        try await origin.waitForRequests(count: 3)
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        try await origin.waitForStreams(count: 1)
        origin.broadcast("data: real\n\n")
        try await delegate.wait(for: "the real event") { $1.count >= 1 }
        let events = try await delegate.events()
        XCTAssertEqual(events.map(\.data), ["real"])
        try await self.stop(session)
        try await origin.stop()
    }

    func testReconnectPassesOnTheShareableResponseHeadersBeforeConnected() async throws {
        let origin = try await ScriptedOrigin.start(
            group: self.group,
            handler: ScriptedOrigin.sseHandler(headers: [
                ("Content-Type", "text/event-stream"),
                ("Cache-Control", "no-cache"),
                ("Access-Control-Allow-Origin", "https://app.example"),
                ("Set-Cookie", "session=for-one-client-only"),
                ("Connection", "keep-alive"),
                ("X-Origin", "1"),
            ])
        )
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await delegate.wait(for: "connected") { calls, _ in calls.contains(.connected(isReconnect: false)) }
        let calls = try await delegate.snapshot()
        guard let index = calls.firstIndex(of: .connected(isReconnect: false)), index > 0,
            case .responseHeaders(let lines) = calls[index - 1]
        else {
            return XCTFail("headers must come just before upstreamConnected: \(calls)")
        }
        XCTAssertTrue(lines.contains("Access-Control-Allow-Origin: https://app.example"), "\(lines)")
        XCTAssertTrue(lines.contains("X-Origin: 1"), "\(lines)")
        for name in ["set-cookie", "content-type", "cache-control", "connection", "transfer-encoding"] {
            XCTAssertFalse(lines.contains { $0.lowercased().hasPrefix(name + ":") }, "\(name) in \(lines)")
        }
        try await self.stop(session)
        try await origin.stop()
    }

    func testServiceUnavailableIsRetried() async throws {
        let count = NIOLockedValueBox(0)
        let origin = try await ScriptedOrigin.start(group: self.group) { request, responder in
            let number = count.withLockedValue { $0 += 1; return $0 }
            if number == 2 {
                responder.sendHead(status: 503, headers: [("Content-Type", "text/plain"), ("Content-Length", "5")])
                responder.send("busy\n")
                responder.end()
            } else {
                responder.sendHead(status: 200, headers: [("Content-Type", "text/event-stream; charset=utf-8")])
            }
        }
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 1\ndata: a\n\n")
        try await delegate.wait(for: "event 1") { $1.count == 1 }
        origin.closeAllConnections()
        try await origin.waitForRequests(count: 3)
        XCTAssertEqual(origin.requests.map(\.lastEventID), [nil, "1", "1"])
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        let story = try await delegate.story()
        XCTAssertEqual(
            story,
            [.connected(isReconnect: false), .disconnected, .connected(isReconnect: true)],
            "a failed attempt is not a second disconnect"
        )
        let got3 = try await delegate.events()
        XCTAssertEqual(self.ids(got3), ["1"], "the 503's body is not an event")
        try await self.stop(session)
        try await origin.stop()
    }

    func testNoContentOnReconnectEndsTheStream() async throws {
        let count = NIOLockedValueBox(0)
        let origin = try await ScriptedOrigin.start(group: self.group) { request, responder in
            let number = count.withLockedValue { $0 += 1; return $0 }
            if number == 1 {
                responder.sendHead(status: 200, headers: [("Content-Type", "text/event-stream")])
            } else {
                responder.sendHead(status: 204, headers: [])
                responder.end()
            }
        }
        let (_, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 1\ndata: a\n\n")
        try await delegate.wait(for: "event 1") { $1.count == 1 }
        origin.closeAllConnections()
        try await delegate.wait(for: "the end") { calls, _ in calls.last == .ended(.originNoContent) }
        let story1 = try await delegate.story()
        XCTAssertEqual(
            story1,
            [.connected(isReconnect: false), .disconnected, .ended(.originNoContent)]
        )
        XCTAssertEqual(origin.requests.count, 2, "no reconnect after 204")
        try await origin.stop()
    }

    func testEventLargerThanMaxEventSizeClosesAndReconnects() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(port: origin.port, configuration: self.configuration(maxEventSize: 64))
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 1\ndata: ok\n\n")
        try await delegate.wait(for: "event 1") { $1.count == 1 }
        origin.broadcast("id: 2\ndata: " + String(repeating: "x", count: 200) + "\n\n")
        try await origin.responders[0].waitUntilClosedByPeer()
        try await origin.waitForRequests(count: 2)
        // Never delivered, and skipped: resuming after its id keeps the origin from sending it again.
        XCTAssertEqual(origin.requests[1].lastEventID, "2")
        try await origin.waitForStreams(count: 1)
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        origin.broadcast("id: 3\ndata: fine\n\n")
        try await delegate.wait(for: "event 3") { $1.count == 2 }
        let got4 = try await delegate.events()
        XCTAssertEqual(self.ids(got4), ["1", "3"])
        let story2 = try await delegate.story()
        XCTAssertEqual(
            story2,
            [.connected(isReconnect: false), .disconnected, .connected(isReconnect: true)]
        )
        try await self.stop(session)
        try await origin.stop()
    }

    func testIdleTimeoutReconnects() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(
            port: origin.port,
            configuration: self.configuration(idleTimeout: .milliseconds(200))
        )
        try await origin.waitForStreams(count: 1)
        origin.broadcast("id: 7\ndata: then silence\n\n")
        // The origin says nothing more: after 200 ms the session drops it and reconnects.
        try await origin.responders[0].waitUntilClosedByPeer()
        try await origin.waitForRequests(count: 2)
        XCTAssertEqual(origin.requests[1].lastEventID, "7")
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        let got5 = try await delegate.story()
        XCTAssertEqual(
            Array(got5.prefix(3)),
            [.connected(isReconnect: false), .disconnected, .connected(isReconnect: true)]
        )
        try await self.stop(session)
        try await origin.stop()
    }

    func testGiveUpEndsTheStreamWhenTheOriginStaysAway() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (_, delegate) = try await self.startSession(
            port: origin.port,
            configuration: self.configuration(giveUp: .milliseconds(150))
        )
        try await origin.waitForStreams(count: 1)
        try await origin.stop()  // connection cut, nothing listens any more: every attempt is refused
        try await delegate.wait(for: "giving up") { calls, _ in calls.last == .ended(.originGaveUp) }
        let story3 = try await delegate.story()
        XCTAssertEqual(
            story3,
            [.connected(isReconnect: false), .disconnected, .ended(.originGaveUp)]
        )
    }

    func testStopClosesTheConnectionAndReportsNothingMore() async throws {
        let origin = try await ScriptedOrigin.start(group: self.group, handler: ScriptedOrigin.sseHandler())
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await origin.waitForStreams(count: 1)
        try await delegate.wait(for: "connected") { calls, _ in !calls.isEmpty }
        try await self.stop(session)
        try await origin.responders[0].waitUntilClosedByPeer()
        // Whatever was under way has run by now (stop, close, the connection's end).
        try await self.loop.submit {}.get()
        let got6 = try await delegate.story()
        XCTAssertEqual(got6, [.connected(isReconnect: false)], "no disconnect, no end after stop")
        XCTAssertEqual(origin.requests.count, 1)
        try await origin.stop()
    }

    func testAdoptedConnectionGetsTheBodyThatCameWithTheHead() async throws {
        let origin = try await ScriptedOrigin.start(
            group: self.group,
            handler: ScriptedOrigin.sseHandler(prelude: { _ in "id: 1\ndata: first\n\nid: 2\ndata: second\n\n" })
        )
        let (session, delegate) = self.makeSession(port: origin.port, resumeID: nil, configuration: self.configuration())
        let head = self.requestHead(port: origin.port)
        let loop = self.loop
        try await loop.submit {
            let adopter = Adopter(session: session, delegate: delegate)
            let connection = OriginConnection.open(
                to: OriginTarget(scheme: .http, host: "127.0.0.1", port: origin.port, basePath: "/events"),
                head: head,
                on: loop,
                connectTimeout: .seconds(2),
                delegate: adopter
            )
            connection.endRequest()
        }.get()
        try await delegate.wait(for: "2 events") { $1.count == 2 }
        let got7 = try await delegate.story()
        XCTAssertEqual(got7, [.connected(isReconnect: false)])
        origin.closeAllConnections()
        try await origin.waitForRequests(count: 2)
        XCTAssertEqual(origin.requests[1].lastEventID, "2")
        try await delegate.wait(for: "the reconnect") { calls, _ in calls.contains(.connected(isReconnect: true)) }
        try await self.stop(session)
        try await origin.stop()
    }

    /// The body of an answer that is not an event stream (here a 503 whose body looks like SSE,
    /// as an SSE framework's error answer might), arriving in the same read as its head, is not
    /// delivered as events: only a 200 event stream's body is the stream.
    func testBodyOfARetriedErrorAnswerIsNotDelivered() async throws {
        let body = "event: error\ndata: overloaded\n\n"
        let origin = try await RawOrigin.start(group: self.group, responses: [
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/event-stream\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nid: 1\ndata: real\n\n",
        ])
        let (session, delegate) = try await self.startSession(port: origin.port)
        try await delegate.wait(for: "the real event") { $1.contains { $0.data == "real" } }
        let got8 = try await delegate.events()
        XCTAssertEqual(got8.map(\.data), ["real"])
        try await self.stop(session)
        try await origin.stop()
    }
}

/// An origin that answers the n-th connection's request with the n-th raw response, written in
/// one piece (so that head and body arrive together), and leaves the connection open.
final class RawOrigin: Sendable {
    let channel: Channel
    let port: Int

    private init(channel: Channel) {
        self.channel = channel
        self.port = channel.localAddress!.port!
    }

    static func start(group: EventLoopGroup, responses: [String]) async throws -> RawOrigin {
        let counter = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let index = counter.withLockedValue { value -> Int in
                    defer { value += 1 }
                    return value
                }
                let response = index < responses.count ? responses[index] : "HTTP/1.1 503 No More\r\nContent-Length: 0\r\n\r\n"
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawResponder(response: response))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawOrigin(channel: channel)
    }

    func stop() async throws {
        try await self.channel.close()
    }
}

private final class RawResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let response: String
    var request = ""
    var answered = false

    init(response: String) { self.response = response }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.request += String(buffer: self.unwrapInboundIn(data))
        guard !self.answered, self.request.contains("\r\n\r\n") else { return }
        self.answered = true
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(string: self.response)), promise: nil)
    }
}
