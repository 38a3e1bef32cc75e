import LifelineCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import CMalloc
import Upstream
import XCTest

@testable import Server

/// The request path on one `EmbeddedEventLoop`: a client connection (`HTTP1ServerHandler` on an
/// `EmbeddedChannel`) and origin connections (in-memory channels from an injected connector), so
/// that every order of "client leaves", "origin head", "origin failure", "stream ends" and
/// "shutdown" can be played deterministically.
final class RequestPathOrderTests: XCTestCase {
    private var gateway: EmbeddedGateway!
    private var loop: EmbeddedEventLoop { self.gateway.loop }
    private var origins: OriginChannels { self.gateway.origins }
    /// The gateway's, until a test reloads or replaces them.
    private var shared: GatewayShared!
    private var loopContext: LoopContext!

    override func setUp() {
        self.gateway = EmbeddedGateway { configuration in
            configuration.upstream.reconnectMin = .milliseconds(10)
            configuration.upstream.reconnectMax = .milliseconds(20)
        }
        self.shared = self.gateway.shared
        self.loopContext = self.gateway.loopContext
    }

    override func tearDown() {
        for stream in self.shared.hub.streams {
            stream.shutdown()
        }
        self.gateway.shutdown()
    }

    // MARK: Helpers

    /// A client connection with `request` sent.
    private func client(_ request: String) throws -> EmbeddedChannel {
        let channel = try self.gateway.connectHTTP1(loopContext: self.loopContext)
        try channel.writeInbound(ByteBuffer(string: request))
        self.loop.run()
        return channel
    }

    private func eventStreamRequest(_ path: String = "/events", headers: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\(headers)\r\n"
    }

    /// Everything the client has been sent so far.
    private func received(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    private func answerEventStream(_ origin: EmbeddedChannel, extraHeaders: String = "") throws {
        try origin.writeInbound(ByteBuffer(
            string: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\(extraHeaders)Transfer-Encoding: chunked\r\n\r\n"))
        self.loop.run()
    }

    private func sendEvent(_ origin: EmbeddedChannel, _ text: String) throws {
        try origin.writeInbound(ByteBuffer(string: String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n"))
        self.loop.run()
    }

    /// The client leaves (connection closed). Not `finish()`: on a loop shared with other
    /// channels it would run or fail every scheduled task (the streams' timers too).
    private func leave(_ client: EmbeddedChannel) {
        client.close(promise: nil)
        self.loop.run()
    }

    // MARK: Orders

    func testClientLeavesThenOriginAnswersWithAStream() throws {
        let first = try self.client(self.eventStreamRequest())
        XCTAssertEqual(self.origins.count, 1)
        self.leave(first)
        try self.answerEventStream(self.origins[0])
        // The stream was made for others even though its opener left, and nobody crashed.
        XCTAssertEqual(self.shared.hub.streams.count, 1)
        let second = try self.client(self.eventStreamRequest())
        XCTAssertEqual(self.origins.count, 1, "joins the stream the first client opened")
        try self.sendEvent(self.origins[0], "id: 1\ndata: hi\n\n")
        let text = try self.received(second)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("id: 1\ndata: hi\n\n"), text)
    }

    func testStreamOpenedForALeftClientEndsAfterItsLastClientLeaves() throws {
        let first = try self.client(self.eventStreamRequest())
        self.leave(first)
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "id: 1\ndata: a\n\n")
        let second = try self.client(self.eventStreamRequest())
        try self.sendEvent(self.origins[0], "id: 2\ndata: b\n\n")
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1)
        self.leave(second)
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 0)
        self.loop.advanceTime(by: .seconds(31))
        XCTAssertEqual(self.shared.hub.streams.count, 0, "lingered out: \(self.shared.hub.streams.map { "\($0.sharing) \($0.isEnded) \($0.subscriberCount) \($0.upstreamState)" })")
    }

    func testClientLeavesThenOriginFails() throws {
        let first = try self.client(self.eventStreamRequest())
        self.leave(first)
        self.origins[0].close(promise: nil)
        self.loop.run()
        // An origin that could not be reached still gets a stream that reconnects, for the
        // clients that come.
        XCTAssertEqual(self.shared.hub.streams.count, 1)
        self.loop.advanceTime(by: .milliseconds(50))
        XCTAssertEqual(self.origins.count, 2, "reconnected")
    }

    func testClientLeavesThenOriginAnswersWithAPlainResponse() throws {
        let waiting = try self.client(self.eventStreamRequest())
        let opener = self.origins[0]
        let second = try self.client(self.eventStreamRequest())
        XCTAssertEqual(self.origins.count, 1, "the second client waits for the opening")
        self.leave(waiting)
        try opener.writeInbound(ByteBuffer(string: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope"))
        self.loop.run()
        XCTAssertFalse(opener.isActive, "nobody to hand the answer to: closed")
        XCTAssertEqual(self.shared.hub.streams.count, 0)
        // The waiting client makes its own request, and gets the answer.
        XCTAssertEqual(self.origins.count, 2)
        try self.origins[1].writeInbound(ByteBuffer(string: "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope"))
        self.loop.run()
        let text = try self.received(second)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"), text)
        XCTAssertTrue(text.hasSuffix("nope"), text)
    }

    func testWaitingClientLeavesBeforeTheStreamOpens() throws {
        let opener = try self.client(self.eventStreamRequest())
        let waiting = try self.client(self.eventStreamRequest())
        self.leave(waiting)
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "id: 1\ndata: a\n\n")
        XCTAssertTrue(try self.received(opener).contains("data: a\n\n"))
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1)
        XCTAssertEqual(self.shared.hub.streams.first?.openersOwed, 0, "the stream keeps no events for the one that left")
    }

    func testOpenerThatLeftIsNoLongerOwedTheEventsSinceTheStart() throws {
        let opener = try self.client(self.eventStreamRequest())
        let waiting = try self.client(self.eventStreamRequest())
        self.leave(opener)
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "id: 1\ndata: a\n\n")
        XCTAssertTrue(try self.received(waiting).contains("data: a\n\n"))
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1)
        XCTAssertEqual(self.shared.hub.streams.first?.openersOwed, 0)
    }

    func testClientLeavesWhileItsAttachIsUnderWay() throws {
        let first = try self.client(self.eventStreamRequest())
        try self.answerEventStream(self.origins[0])
        // The second client's attach is queued on the loop; it leaves before the loop runs it.
        let channel = EmbeddedChannel(loop: self.loop)
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
        try channel.pipeline.syncOperations.addHandler(decoder)
        try channel.pipeline.syncOperations.addHandler(HTTP1ServerHandler(loop: self.loopContext, decoder: decoder))
        try channel.connect(to: SocketAddress(ipAddress: "10.1.1.2", port: 5555)).wait()
        try channel.writeInbound(ByteBuffer(string: self.eventStreamRequest()))
        channel.close(promise: nil)
        self.loop.run()
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1, "counted right: only the first client")
        try self.sendEvent(self.origins[0], "data: still\n\n")
        XCTAssertTrue(try self.received(first).contains("data: still"))
    }

    func testPrivateStreamForAClientThatLeftIsNotMade() throws {
        var configuration = self.shared.configuration
        configuration.unsharedRoutes = ["/"]
        self.shared = GatewayShared(reloading: self.shared, configuration: configuration)
        self.loopContext.reload(self.shared)
        let client = try self.client(self.eventStreamRequest(headers: "Last-Event-ID: 7\r\n"))
        XCTAssertEqual(self.origins.count, 1)
        XCTAssertTrue(self.origins.requests[0].contains("Last-Event-ID: 7\r\n"), self.origins.requests[0])
        self.leave(client)
        XCTAssertFalse(self.origins[0].isActive, "its own origin request is dropped with it")
        XCTAssertEqual(self.shared.hub.streams.count, 0)
    }

    func testStreamEndsWhileTheClientStreams() throws {
        let client = try self.client(self.eventStreamRequest())
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "id: 1\ndata: a\n\n")
        // The origin ends; its reconnect is answered 204: the stream is over, the response ends.
        try self.origins[0].writeInbound(ByteBuffer(string: "0\r\n\r\n"))
        self.loop.run()
        self.loop.advanceTime(by: .seconds(4))
        XCTAssertEqual(self.origins.count, 2)
        XCTAssertTrue(self.origins.requests[1].contains("Last-Event-ID: 1\r\n"), self.origins.requests[1])
        try self.origins[1].writeInbound(ByteBuffer(string: "HTTP/1.1 204 No Content\r\n\r\n"))
        self.loop.run()
        let text = try self.received(client)
        XCTAssertTrue(text.hasSuffix("0\r\n\r\n"), "the chunked response ended cleanly: \(text.debugDescription)")
        XCTAssertEqual(self.shared.hub.streams.count, 0)
    }

    func testShutdownWhileOpeningThenTheStreamEnds() throws {
        let client = try self.client(self.eventStreamRequest())
        self.loopContext.beginShutdown()
        self.loop.run()
        try self.answerEventStream(self.origins[0])
        XCTAssertTrue(try self.received(client).hasPrefix("HTTP/1.1 200 OK"))
        for stream in self.shared.hub.streams { stream.shutdown() }
        self.loop.run()
        XCTAssertFalse(client.isActive, "closed after its stream ended at shutdown")
    }

    func testOriginThatFailsAtOnceGetsA502AndTheConnectionGoesOn() throws {
        // A connector can fail before `OriginConnection.open` returns (found by the http1-server
        // fuzz target: PlainProxy heard of the failure while it was still being made).
        var configuration = self.shared.configuration
        configuration.upstream.connector = OriginConnector { _, loop, _, _ in
            loop.makeFailedFuture(ChannelError.connectPending)
        }
        self.shared = GatewayShared(reloading: self.shared, configuration: configuration)
        self.loopContext.reload(self.shared)
        let client = try self.client("GET /page HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.loop.run()
        XCTAssertTrue(try self.received(client).hasPrefix("HTTP/1.1 502 "))
        XCTAssertTrue(client.isActive, "a plain failure keeps the connection")
        try client.writeInbound(ByteBuffer(string: "GET /_lifeline/client.js HTTP/1.1\r\nHost: gw\r\n\r\n"))
        self.loop.run()
        XCTAssertTrue(try self.received(client).hasPrefix("HTTP/1.1 200 "), "the next request is served")
    }

    // MARK: Drain

    // MARK: Private generations (a POST answered with an event stream)

    private func postRequest(_ body: String = "{}") -> String {
        "POST /v1/chat HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    /// A gateway of its own for one test, routing / to the in-memory origins, as `configure` says.
    private func useGateway(_ configure: (inout GatewayConfiguration) -> Void) throws {
        self.shared = nil
        var configuration = GatewayConfiguration()
        configuration.routes = [try Route.parse("/=http://origin.test:3000/").get()]
        configuration.upstream.connector = self.origins.connector
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        self.shared = GatewayShared(configuration: configuration, hub: StreamHub(), eventLoops: [self.loop], logger: logger)
        self.loopContext = LoopContext(eventLoop: self.loop, shared: self.shared)
    }

    func testAPostAnsweredWithAnEventStreamIsAPrivateGenerationWithHeartbeats() throws {
        try self.useGateway { $0.heartbeat = .seconds(1) }
        let client = try self.client(self.postRequest())
        XCTAssertTrue(self.origins.requests[0].hasPrefix("POST /v1/chat HTTP/1.1\r\n"), self.origins.requests[0])
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "data: tok\n\n")
        self.loop.advanceTime(by: .milliseconds(2500))
        let text = try self.received(client)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("data: tok\n\n"), text)
        XCTAssertTrue(text.contains(":heartbeat") || text.contains(": heartbeat"), "heartbeats in the pause: \(text)")
        XCTAssertEqual(self.shared.hub.streams.first?.sharing, .privateGeneration)
        // The origin ends its response: so does the client's, and nothing is asked again.
        try self.origins[0].writeInbound(ByteBuffer(string: "0\r\n\r\n"))
        self.loop.run()
        self.loop.advanceTime(by: .seconds(5))
        XCTAssertTrue(try self.received(client).hasSuffix("0\r\n\r\n"), "a clean end")
        XCTAssertEqual(self.origins.count, 1, "a POST is sent once")
        XCTAssertEqual(self.shared.hub.streams.count, 1, "kept for resumes")
        XCTAssertEqual(self.shared.generations.count, 1)
        self.loop.advanceTime(by: .minutes(5))
        XCTAssertEqual(self.shared.hub.streams.count, 0, "forgotten after --resume-window")
        XCTAssertEqual(self.shared.generations.count, 0)
    }

    func testAGetOnAnUnsharedRouteIsAPrivateGenerationSentOnce() throws {
        try self.useGateway {
            $0.unsharedRoutes = ["/"]
            $0.heartbeat = .seconds(1)
        }
        let client = try self.client(self.eventStreamRequest("/events?lastEventId=7"))
        XCTAssertTrue(self.origins.requests[0].contains("Last-Event-ID: 7\r\n"), "the query's id goes to the origin: \(self.origins.requests[0])")
        XCTAssertFalse(self.origins.requests[0].contains("lastEventId"), self.origins.requests[0])
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "id: 8\ndata: snapshot\n\n")
        self.loop.advanceTime(by: .milliseconds(2500))
        let text = try self.received(client)
        XCTAssertTrue(text.contains("Lifeline-Resume: /_lifeline/resume/"), text)
        XCTAssertTrue(text.contains("data: snapshot\n\n"), text)
        XCTAssertTrue(text.contains(":heartbeat") || text.contains(": heartbeat"), "heartbeats in the pause: \(text)")
        XCTAssertEqual(self.shared.hub.streams.first?.sharing, .privateGeneration)
        try self.origins[0].writeInbound(ByteBuffer(string: "0\r\n\r\n"))
        self.loop.run()
        self.loop.advanceTime(by: .seconds(10))
        XCTAssertTrue(try self.received(client).hasSuffix("0\r\n\r\n"), "the client's response ends with the origin's")
        XCTAssertEqual(self.origins.count, 1, "never requested again by the gateway: the client reconnects with its id")
    }

    func testAPrivateGenerationWhoseOriginBreaksOffBreaksTheClientsResponse() throws {
        let client = try self.client(self.postRequest())
        try self.answerEventStream(self.origins[0])
        try self.sendEvent(self.origins[0], "data: tok\n\n")
        // Closed before the terminating chunk: the response broke off.
        self.origins[0].close(promise: nil)
        self.loop.run()
        self.loop.advanceTime(by: .seconds(5))
        let text = try self.received(client)
        XCTAssertTrue(text.contains("data: tok\n\n"), text)
        XCTAssertFalse(text.hasSuffix("0\r\n\r\n"), "no clean end: \(text)")
        XCTAssertFalse(client.isActive, "the connection is closed")
        XCTAssertEqual(self.origins.count, 1, "and the POST is not sent again")
    }

    func testAPrivateGenerationRunsOnAfterItsClientLeftThenIsClosedAfterTheResumeWindow() throws {
        let client = try self.client(self.postRequest())
        try self.answerEventStream(self.origins[0])
        self.leave(client)
        self.loop.advanceTime(by: .seconds(15))
        XCTAssertTrue(self.origins[0].isActive, "the generation runs on, for a resume to join")
        self.loop.advanceTime(by: .minutes(5))
        XCTAssertFalse(self.origins[0].isActive, "closed once nobody came back within --resume-window")
        XCTAssertEqual(self.origins.count, 1, "and never requested again")
        XCTAssertEqual(self.shared.hub.streams.count, 0)
        XCTAssertEqual(self.shared.generations.count, 0)
    }

    func testDrainLetsEachStreamingClientGoAtItsMomentWithinTheWindow() throws {
        var clients = [try self.client(self.eventStreamRequest())]
        try self.answerEventStream(self.origins[0])
        for _ in 1..<20 {
            clients.append(try self.client(self.eventStreamRequest()))
        }
        try self.sendEvent(self.origins[0], "id: 1\ndata: a\n\n")
        for client in clients {
            XCTAssertTrue(try self.received(client).contains("id: 1\n"), "all 20 stream")
        }
        // Draws spread evenly over [0, 1): client i is let go at i × 0.3 s, with retry 500 + 50 i ms.
        // (The first 20 draws place the clients as they are added, the next 20 pick their retries.)
        var draws = ((0..<20).map { Double($0) / 20 } + (0..<20).map { Double($0) / 20 })[...]
        self.loopContext.drainClock.random = { draws.popFirst() ?? 0 }
        let start = self.loop.now
        self.loopContext.beginDrain(DrainSchedule(deadline: start + .seconds(6), retryRange: 500...1500))
        self.loop.run()

        var closedAt: [Int: TimeAmount] = [:]
        var texts = [String](repeating: "", count: clients.count)
        for step in 0...61 {
            if step > 0 { self.loop.advanceTime(by: .milliseconds(100)) }
            for (index, client) in clients.enumerated() where closedAt[index] == nil {
                texts[index] += try self.received(client)
                if !client.isActive { closedAt[index] = self.loop.now - start }
            }
            if step == 30 {
                // Live events still reach the clients that are left: the stream goes on.
                try self.sendEvent(self.origins[0], "id: 2\ndata: b\n\n")
            }
        }
        XCTAssertEqual(closedAt.count, 20, "every client let go within the window")
        XCTAssertLessThanOrEqual(closedAt.values.max() ?? .zero, .seconds(6))
        let perSecond = Dictionary(grouping: closedAt.values) { $0.nanoseconds / 1_000_000_000 }.mapValues(\.count)
        XCTAssertLessThanOrEqual(perSecond.values.max() ?? 0, 4, "spread: \(perSecond)")
        for (index, text) in texts.enumerated() {
            XCTAssertTrue(text.contains("retry: "), "client \(index) was told when to come back: \(text.debugDescription)")
            XCTAssertTrue(text.hasSuffix("0\r\n\r\n"), "its response ended cleanly: \(text.debugDescription)")
            let sawLive = text.contains("id: 2\n")
            XCTAssertEqual(sawLive, closedAt[index]! > .seconds(3), "client \(index), let go at \(closedAt[index]!)")
        }
        let retries = texts.compactMap { text -> Int? in
            guard let range = text.range(of: "retry: ") else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }
        XCTAssertEqual(retries.count, 20)
        XCTAssertTrue(retries.allSatisfy { (500...1500).contains($0) }, "\(retries)")
        XCTAssertEqual(Set(retries).count, 20, "reconnects spread further: \(retries)")
        XCTAssertEqual(self.origins.count, 1, "the origin connection stayed up through the drain")
    }

    func testClientArrivingDuringADrainIsLetGoBeforeItsEnd() throws {
        let first = try self.client(self.eventStreamRequest())
        try self.answerEventStream(self.origins[0])
        let start = self.loop.now
        self.loopContext.beginDrain(DrainSchedule(deadline: start + .seconds(2)))
        self.loop.run()
        self.loop.advanceTime(by: .seconds(1))
        let late = try self.client(self.eventStreamRequest())
        XCTAssertTrue(try self.received(late).hasPrefix("HTTP/1.1 200 OK"), "served while the window lasts")
        self.loop.advanceTime(by: .seconds(1))
        XCTAssertFalse(first.isActive)
        XCTAssertFalse(late.isActive, "let go within what was left of the window")
    }

    func testIdleKeepAliveConnectionClosesAtOnceWhenADrainBegins() throws {
        let idle = try self.client("GET /_lifeline/client.js HTTP/1.1\r\nHost: gw\r\n\r\n")
        XCTAssertTrue(try self.received(idle).hasPrefix("HTTP/1.1 200 OK"))
        XCTAssertTrue(idle.isActive, "kept alive")
        self.loopContext.beginDrain(DrainSchedule(deadline: self.loop.now + .seconds(10)))
        self.loop.run()
        XCTAssertFalse(idle.isActive)
    }
}

/// Origin connections as in-memory channels: the gateway's requests are read from them and the
/// test writes the origin's answers into them.
final class OriginChannels: @unchecked Sendable {
    private let loop: EmbeddedEventLoop
    private let channels = NIOLockedValueBox<[EmbeddedChannel]>([])

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    var connector: OriginConnector {
        let loop = self.loop
        let channels = self.channels
        return OriginConnector { _, _, _, initializer in
            let channel = EmbeddedChannel(loop: loop)
            channels.withLockedValue { $0.append(channel) }
            return initializer(channel).flatMap {
                channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: 3000))
            }.map { channel }
        }
    }

    var count: Int { self.channels.withLockedValue { $0.count } }

    subscript(index: Int) -> EmbeddedChannel {
        self.channels.withLockedValue { $0[index] }
    }

    private let sent = NIOLockedValueBox<[Int: String]>([:])

    /// What the gateway sent each origin connection so far.
    var requests: [String] {
        let channels = self.channels.withLockedValue { $0 }
        return self.sent.withLockedValue { sent in
            for (index, channel) in channels.enumerated() {
                while let data = try? channel.readOutbound(as: IOData.self) {
                    if case .byteBuffer(let buffer) = data { sent[index, default: ""] += String(buffer: buffer) }
                }
            }
            return channels.indices.map { sent[$0] ?? "" }
        }
    }
}

/// The heap is trimmed only after streams have ended, once per interval.
final class HeapTrimmerTests: XCTestCase {
    /// AddressSanitizer and ThreadSanitizer replace glibc's allocator, so malloc_trim has
    /// nothing to give back.
    static var underSanitizer: Bool {
        guard let process = dlopen(nil, RTLD_NOW) else { return false }
        defer { dlclose(process) }
        return dlsym(process, "__asan_init") != nil || dlsym(process, "__tsan_init") != nil
    }

    func testTrimReallyGivesMemoryBack() throws {
        try XCTSkipIf(Self.underSanitizer, "the sanitizer's allocator is not glibc's")
        #if os(Linux)
        // Free a few MiB of small blocks (a replay buffer's worth) but keep the last one, so the
        // space is in the allocator's free lists, not at the top of the heap. The shim once
        // tested __GLIBC__ before any header had defined it and was a no-op returning 0.
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<2000 {
            let block = UnsafeMutableRawPointer.allocate(byteCount: 4000, alignment: 16)
            block.storeBytes(of: 1, as: UInt8.self)
            blocks.append(block)
        }
        for block in blocks.dropLast() { block.deallocate() }
        XCTAssertEqual(lifeline_malloc_trim(), 1, "malloc_trim released nothing: is the CMalloc shim the stub?")
        blocks.last?.deallocate()
        #endif
    }

    func testTrimsOnlyWhenStreamsEndedSinceTheLastCheck() throws {
        let loop = EmbeddedEventLoop()
        let hub = StreamHub()
        let trimmer = HeapTrimmer(hub: hub, eventLoop: loop, interval: .seconds(10))
        trimmer.start()
        loop.advanceTime(by: .seconds(30))
        XCTAssertEqual(trimmer.trims, 0, "nothing ended: no trim")
        let stream = EventStream(
            key: StreamKey(method: "GET", origin: "o", path: "/", query: nil, headerValues: []),
            eventLoop: loop,
            configuration: StreamConfiguration(),
            reporting: .init(hub: hub)
        )
        stream.shutdown()
        loop.run()
        XCTAssertEqual(hub.endedStreamCount, 1)
        loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(trimmer.trims, 1)
        loop.advanceTime(by: .seconds(30))
        XCTAssertEqual(trimmer.trims, 1, "once per batch of ends")
        trimmer.stop()
        try loop.syncShutdownGracefully()
    }
}
