import LifelineCore
import LifelineTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest

@testable import Server

/// Regression tests for what hostile or careless clients and origins did to the gateway: each
/// failed (or crashed the process) before its fix.
final class HardeningTests: XCTestCase {
    /// An origin that answers event-stream requests only after `delay`.
    private static func slowSSEOrigin(delay: TimeAmount) -> @Sendable (ScriptedOrigin.Request, OriginResponder) -> Void {
        { _, responder in
            MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: delay) {
                responder.sendHead()
                responder.send(": open\n\n")
            }
        }
    }

    // MARK: Defect 1: a client that leaves while its stream opens

    func testClientsLeavingBeforeTheOriginAnswersDoNotCrashTheGateway() async throws {
        let harness = try await GatewayHarness.start(origin: Self.slowSSEOrigin(delay: .milliseconds(200)))
        // Connect, send, leave at once: a browser tab closed while a slow origin opens.
        for round in 0..<20 {
            let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
            try await raw.send("GET /events?round=\(round % 4) HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await raw.close(reset: round % 2 == 0)
        }
        // The origin answers after the clients left; the gateway goes on serving.
        try await harness.origin.waitForRequests(count: 4)
        try await Task.sleep(nanoseconds: 400_000_000)
        let client = try await harness.client("/events?round=1")
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .ok)
        harness.origin.broadcast("id: 1\ndata: after\n\n")
        let events = try await client.waitForEvents(count: 1)
        XCTAssertEqual(events.map(\.data), ["after"])
        await client.close()
        await harness.shutdown()
    }

    func testClientLeavingBeforeAPlainAnswerDoesNotCrashTheGateway() async throws {
        // The origin answers the stream request with a 404 page, after the client left.
        let harness = try await GatewayHarness.start(origin: { _, responder in
            MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: .milliseconds(150)) {
                responder.sendHead(status: 404, headers: [("Content-Type", "text/plain"), ("Content-Length", "4")])
                responder.send("nope")
                responder.end()
            }
        })
        for _ in 0..<5 {
            let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
            try await raw.send("GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            await raw.close(reset: true)
        }
        try await harness.origin.waitForRequests(count: 1)
        try await Task.sleep(nanoseconds: 300_000_000)
        let client = try await harness.client("/events")
        let value1 = try await client.waitForHead().status
        XCTAssertEqual(value1, .notFound)
        await client.close()
        await harness.shutdown()
    }

    func testHTTP2ResetBeforeTheOriginAnswersDoesNotCrashTheGateway() async throws {
        let harness = try await GatewayHarness.start(origin: Self.slowSSEOrigin(delay: .milliseconds(500)))
        // h2c with prior knowledge: open streams, reset them once their requests reached the
        // origin (before it answers).
        let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
        var bytes = H2Bytes.preface
        let streamIDs = Array(stride(from: UInt32(1), through: 11, by: 2))
        for streamID in streamIDs {
            bytes += H2Bytes.headers(streamID: streamID, path: "/events?s=\(streamID % 3)", endStream: true)
        }
        try await raw.send(bytes: bytes)
        try await harness.origin.waitForRequests(count: 3)
        try await raw.send(bytes: streamIDs.flatMap { H2Bytes.reset(streamID: $0) })
        try await Task.sleep(nanoseconds: 800_000_000)
        await raw.close(reset: false)
        let client = try await harness.client("/events?s=1")
        let value2 = try await client.waitForHead().status
        XCTAssertEqual(value2, .ok)
        await client.close()
        await harness.shutdown()
    }

    // MARK: Defect 2: a Last-Event-ID that poisons a shared stream

    func testControlCharactersInLastEventIDAreIgnoredAndNeverSentUpstream() async throws {
        let harness = try await GatewayHarness.start()
        for (index, poison) in ["%0A", "%01", "%0D%0Ax-injected:%201", "%00", String(repeating: "a", count: 2000)].enumerated() {
            let path = "/events?n=\(index)&lastEventId=\(poison)"
            let poisoner = try await harness.client(path)
            let value3 = try await poisoner.waitForHead().status
            XCTAssertEqual(value3, .ok, "the poisoning client gets a stream")
            try await harness.origin.waitForStreams(count: index + 1)
            let request = try XCTUnwrap(harness.origin.requests.last)
            XCTAssertNil(request.lastEventID, "never sent upstream: \(request)")
            XCTAssertNil(request.header("x-injected"))
            // A later client of the same stream gets its events.
            let later = try await harness.client("/events?n=\(index)")
            let value4 = try await later.waitForHead().status
            XCTAssertEqual(value4, .ok)
            harness.origin.streamingResponders.last?.send("id: \(index)\ndata: live\n\n")
            let value5 = try await later.waitForEvents(count: 1).map(\.data)
            XCTAssertEqual(value5, ["live"])
            let value6 = try await poisoner.waitForEvents(count: 1).map(\.data)
            XCTAssertEqual(value6, ["live"])
            await poisoner.close()
            await later.close()
        }
        let rejected = await harness.gateway.metrics.snapshot().lastEventIDsRejected
        XCTAssertEqual(rejected, 5)
        await harness.shutdown()
    }

    // MARK: Defect 3: request bodies that grow memory without bound

    func testPipelinedEndlessBodyBehindAnEventStreamIsNotRead() async throws {
        let harness = try await GatewayHarness.start()
        let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
        try await raw.send(
            "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                + "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        let accepted = try await raw.pushChunkedBody(upTo: 256 << 20, stallFor: .seconds(1))
        // Before: the gateway read all of it (512 MiB sent, +505 MiB RSS). Now it stops reading:
        // only the kernel's socket buffers fill.
        XCTAssertLessThan(accepted, 32 << 20, "the gateway kept reading a parked request's body")
        // It still sees the client leave. (A FIN queued behind unread bytes cannot arrive, as with
        // any server that stops reading; a reset does.)
        await raw.close(reset: true)
        try await harness.gateway.waitForConnectionCount(0)

        // A parked request that fits the buffers: the client's FIN is seen without reading on.
        let small = try await RawSocket.connect(port: harness.port, group: harness.group)
        try await small.send(
            "GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                + "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"
        )
        try await small.waitForText(":ok")
        try await harness.gateway.waitForConnectionCount(1)
        await small.close(reset: false)
        try await harness.gateway.waitForConnectionCount(0)
        await harness.shutdown()
    }

    func testUploadToAnOriginThatDoesNotReadIsNotBuffered() async throws {
        // An origin that accepts connections and never reads from them.
        let deaf = try await OriginListener.start(autoRead: false)
        let harness = try await GatewayHarness.start(inFrontOf: deaf)
        let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
        try await raw.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        let accepted = try await raw.pushChunkedBody(upTo: 256 << 20, stallFor: .seconds(1))
        XCTAssertLessThan(accepted, 32 << 20, "the gateway read the body faster than its origin took it")
        await raw.close(reset: true)
        try await harness.gateway.waitForConnectionCount(0)
        await harness.shutdown()
        try await deaf.stop()
    }

    // MARK: Defect 4: reconnect storms against common origins

    func testAnOriginThatSendsOneEventAndExitsIsPolledNotHammered() async throws {
        // The PHP/CGI pattern: one event, then the response ends (no id, no retry).
        let harness = try await GatewayHarness.start(origin: { _, responder in
            responder.sendHead()
            responder.send("data: state\n\n")
            responder.end()
        })
        let client = try await harness.client("/events")
        let value7 = try await client.waitForHead().status
        XCTAssertEqual(value7, .ok)
        _ = try await client.waitForEvents(count: 1)
        try await Task.sleep(nanoseconds: 2_000_000_000)
        // Before: ~7 requests a second. A browser waits ~3 s between them.
        XCTAssertEqual(harness.origin.requests.count, 1, harness.origin.report())
        XCTAssertEqual(client.events.count, 1, "the client saw the message repeated")
        await client.close()
        await harness.shutdown()
    }

    func testAnOriginThatAcceptsAndResetsBacksOff() async throws {
        // Each connection: 200, one event (the next id), then a reset. Any event used to reset
        // the backoff, so such an origin was hit at the floor rate forever.
        let counter = NIOLockedValueBox(0)
        let harness = try await GatewayHarness.start(origin: { _, responder in
            let id = counter.withLockedValue { value -> Int in
                value += 1
                return value
            }
            responder.sendHead()
            responder.send("id: \(id)\ndata: event \(id)\n\n")
            responder.reset()
        }, configure: { configuration in
            configuration.upstream.reconnectMin = .milliseconds(20)
            configuration.upstream.reconnectMax = .seconds(2)
        })
        let client = try await harness.client("/events")
        _ = try await client.waitForEvents(count: 1)
        try await Task.sleep(nanoseconds: 2_000_000_000)
        // Backoff from 20 ms doubling to 2 s: at most ~8 attempts in 2 s, not 50+.
        XCTAssertLessThanOrEqual(harness.origin.requests.count, 10, harness.origin.report())
        // And the client got each event once, in order.
        let ids = client.events.compactMap { $0.id.flatMap(Int.init) }
        XCTAssertEqual(ids, Array(1...ids.count))
        await client.close()
        await harness.shutdown()
    }

    // MARK: Defect 5: CORS heads shared across sites

    func testPerSiteCORSHeadsAreNotSharedAcrossSites() async throws {
        for shareBy in [nil, "path,query"] {
            let harness = try await GatewayHarness.start(origin: { request, responder in
                responder.sendHead(headers: [
                    ("Content-Type", "text/event-stream"),
                    ("Access-Control-Allow-Origin", request.header("origin") ?? "*"),
                    ("Vary", "Origin"),
                ])
            }, configure: { configuration in
                if let shareBy {
                    configuration.sharePolicy = try! SharePolicy.parse(shareBy).get()
                }
            })
            let a = try await harness.client("/events", headers: [("Origin", "http://a.example")])
            let headA = try await a.waitForHead()
            let b = try await harness.client("/events", headers: [("Origin", "http://b.example")])
            let headB = try await b.waitForHead()
            let a2 = try await harness.client("/events", headers: [("Origin", "http://a.example")])
            let headA2 = try await a2.waitForHead()
            XCTAssertEqual(headA.headers.first(name: "access-control-allow-origin"), "http://a.example")
            XCTAssertEqual(headB.headers.first(name: "access-control-allow-origin"), "http://b.example", "\(shareBy ?? "default")")
            XCTAssertEqual(headA2.headers.first(name: "access-control-allow-origin"), "http://a.example")
            // The two a.example clients share one origin connection; b.example has its own.
            XCTAssertEqual(harness.origin.requests.count, 2, harness.origin.report())
            for client in [a, b, a2] { await client.close() }
            await harness.shutdown()
        }
    }

    // MARK: Defect 7: request targets, Host, Expect, encodings

    func testDotSegmentsCannotClimbOutOfARoute() async throws {
        let harness = try await GatewayHarness.start(routes: [("/events/", "/base/"), ("/admin/", "/admin/")])
        for target in ["/events/../admin/x", "/events/%2e%2e/admin/x", "/events/.%2E/admin/x", "/events/..%2fadmin", "/%2e%2e/x"] {
            let answer = try await RawHTTP.exchange(
                port: harness.port,
                send: "GET \(target) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                group: harness.group
            )
            // Either resolved to the admin route as a browser would (the origin sees a clean path)
            // or refused.
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400 ") || answer.hasPrefix("HTTP/1.1 200 "), "\(target): \(answer)")
        }
        for request in harness.origin.requests {
            XCTAssertTrue(request.path.hasPrefix("/base/") || request.path.hasPrefix("/admin/"), request.path)
            XCTAssertFalse(request.path.contains(".."), "\(request.path)")
            XCTAssertFalse(request.path.lowercased().contains("%2e"), "\(request.path)")
        }
        await harness.shutdown()
    }

    func testMissingOrRepeatedHostIsRefusedAndAbsoluteFormIsAccepted() async throws {
        let harness = try await GatewayHarness.start(origin: { request, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "2")])
            responder.send("ok")
            responder.end()
        })
        let missing = try await RawHTTP.exchange(port: harness.port, send: "GET /x HTTP/1.1\r\n\r\n", group: harness.group)
        XCTAssertTrue(missing.hasPrefix("HTTP/1.1 400 "), missing)
        let twice = try await RawHTTP.exchange(
            port: harness.port, send: "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", group: harness.group)
        XCTAssertTrue(twice.hasPrefix("HTTP/1.1 400 "), twice)
        let absolute = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET http://front.example/x?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(absolute.hasPrefix("HTTP/1.1 200 "), absolute)
        let request = try XCTUnwrap(harness.origin.requests.last)
        XCTAssertEqual(request.uri, "/x?q=1")
        XCTAssertEqual(request.header("x-forwarded-host"), "front.example")
        let http10 = try await RawHTTP.exchange(port: harness.port, send: "GET /x HTTP/1.0\r\n\r\n", group: harness.group)
        XCTAssertTrue(http10.hasPrefix("HTTP/1.0 200 ") || http10.hasPrefix("HTTP/1.1 200 "), http10)
        await harness.shutdown()
    }

    func testExpectContinueGetsAHundredBeforeTheBody() async throws {
        let harness = try await GatewayHarness.start(origin: { request, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "\(request.body.utf8.count)")])
            responder.send(request.body)
            responder.end()
        })
        let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
        try await raw.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        try await raw.waitForText("HTTP/1.1 100 Continue\r\n\r\n")
        try await raw.send("hello")
        try await raw.waitForText("\r\n\r\nhello")
        XCTAssertEqual(harness.origin.requests.last?.header("expect"), nil, "the gateway answered it itself")
        await raw.close(reset: false)
        await harness.shutdown()
    }

    func testAnEncodedEventStreamIsNotSilentlyEmpty() async throws {
        // An origin that ignores Accept-Encoding: identity. The client gets the bytes as they are
        // (its own decoder can read them) instead of a stream that never delivers anything.
        let harness = try await GatewayHarness.start(origin: { _, responder in
            responder.sendHead(headers: [("Content-Type", "text/event-stream"), ("Content-Encoding", "gzip")])
            responder.send("\u{1F}binary")
            responder.end()
        })
        let client = try await harness.client("/events")
        let head = try await client.waitForHead()
        XCTAssertEqual(head.headers.first(name: "content-encoding"), "gzip")
        XCTAssertEqual(harness.gateway.hub.streams.count, 0, "no stream made of an unreadable body")
        await client.close()
        await harness.shutdown()
    }
}

/// A client socket that sends raw bytes and sees what comes back, for peers that misbehave.
final class RawSocket: @unchecked Sendable {
    private let channel: Channel
    private let collector: RawCollector

    private init(channel: Channel, collector: RawCollector) {
        self.channel = channel
        self.collector = collector
    }

    static func connect(port: Int, group: EventLoopGroup) async throws -> RawSocket {
        let collector = RawCollector()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.so_sndbuf), value: 64 << 10)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawSocket(channel: channel, collector: collector)
    }

    func send(_ text: String) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(string: text))
    }

    func send(bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    var text: String { self.collector.text }

    func waitForText(_ needle: String, timeout: TimeAmount = .seconds(5)) async throws {
        let deadline = NIODeadline.now() + timeout
        while !self.text.contains(needle) {
            if NIODeadline.now() > deadline { throw TestWaitError("no \(needle.debugDescription) in \(self.text.debugDescription)") }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    /// Waits until the gateway has closed the connection (all it sent is in `text` then).
    func waitUntilClosed(timeout: TimeAmount = .seconds(5)) async throws {
        let deadline = NIODeadline.now() + timeout
        while self.channel.isActive {
            if NIODeadline.now() > deadline { throw TestWaitError("the connection stayed open; got \(self.text.debugDescription)") }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    /// Writes chunked-body chunks of 64 KiB until `limit` bytes went out or the peer has taken
    /// nothing for `stallFor`; returns the bytes the socket accepted.
    func pushChunkedBody(upTo limit: Int, stallFor: TimeAmount) async throws -> Int {
        var chunk = ByteBuffer(string: String(format: "%x\r\n", 64 << 10))
        chunk.writeRepeatingByte(UInt8(ascii: "x"), count: 64 << 10)
        chunk.writeString("\r\n")
        let written = NIOLockedValueBox(0)
        var lastProgress = NIODeadline.now()
        var lastCount = 0
        while written.withLockedValue({ $0 }) < limit {
            if self.channel.isWritable {
                let size = chunk.readableBytes
                self.channel.writeAndFlush(chunk).whenSuccess { written.withLockedValue { $0 += size } }
            } else {
                try await Task.sleep(nanoseconds: 2_000_000)
            }
            let count = written.withLockedValue { $0 }
            if count != lastCount {
                lastCount = count
                lastProgress = .now()
            } else if NIODeadline.now() - lastProgress > stallFor {
                break
            }
            if !self.channel.isActive { break }
        }
        return written.withLockedValue { $0 }
    }

    func close(reset: Bool) async {
        if reset {
            if let provider = self.channel as? SocketOptionProvider {
                try? await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
            }
        }
        try? await self.channel.close()
    }
}

/// Hand-made HTTP/2 frames for a client that resets its streams (HPACK literals, no Huffman).
enum H2Bytes {
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(type: 4, flags: 0, streamID: 0, payload: [])

    static func frame(type: UInt8, flags: UInt8, streamID: UInt32, payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags]
            + [UInt8(streamID >> 24 & 0x7F), UInt8(streamID >> 16 & 0xFF), UInt8(streamID >> 8 & 0xFF), UInt8(streamID & 0xFF)]
            + payload
    }

    static func headers(streamID: UInt32, path: String, endStream: Bool) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x"), ("accept", "text/event-stream")] {
            block.append(0x00)  // literal without indexing, new name
            block.append(UInt8(name.utf8.count))
            block += Array(name.utf8)
            block.append(UInt8(value.utf8.count))
            block += Array(value.utf8)
        }
        return frame(type: 1, flags: 0x4 | (endStream ? 0x1 : 0), streamID: streamID, payload: block)
    }

    static func reset(streamID: UInt32) -> [UInt8] {
        frame(type: 3, flags: 0, streamID: streamID, payload: [0, 0, 0, 8])
    }
}

/// Upstream reconnects behave as the browser's own would; per-route sharing.
final class UpstreamFidelityTests: XCTestCase {
    func testCookiesTheOriginSetsAreSentOnTheStreamsReconnects() async throws {
        let harness = try await GatewayHarness.start(origin: { request, responder in
            let count = request.header("cookie")?.contains("resume=") == true ? "again" : "first"
            responder.sendHead(headers: [
                ("Content-Type", "text/event-stream"),
                ("Set-Cookie", "resume=\(request.path.hasSuffix("a") ? "A" : "B")-\(count); Path=/"),
            ])
        })
        let a = try await harness.client("/events/a")
        _ = try await a.waitForHead()
        XCTAssertNil(a.head?.headers.first(name: "set-cookie"), "never repeated to clients")
        let b = try await harness.client("/events/b", headers: [("Cookie", "session=bob")])
        _ = try await b.waitForHead()
        try await harness.origin.waitForStreams(count: 2)
        harness.origin.closeAllConnections()
        try await harness.origin.waitForRequests(count: 4)
        let reconnects = harness.origin.requests.suffix(2)
        let cookieOf = { (suffix: String) in reconnects.first { $0.path.hasSuffix(suffix) }?.header("cookie") }
        XCTAssertEqual(cookieOf("/a"), "resume=A-first")
        XCTAssertEqual(cookieOf("/b"), "session=bob; resume=B-first", "one jar per stream, the client's own kept")
        for client in [a, b] { await client.close() }
        await harness.shutdown()
    }

    /// The jar is used only where a browser would send cookies: web-platform-tests'
    /// `request-credentials` through the gateway. A cross-origin EventSource without credentials
    /// must not get, on the gateway's reconnect, a cookie the origin set on the first response.
    func testTheJarFollowsTheBrowsersCredentialsRule() async throws {
        let harness = try await GatewayHarness.start(origin: { request, responder in
            responder.sendHead(headers: [
                ("Content-Type", "text/event-stream"),
                ("Set-Cookie", "resume=\(request.path.split(separator: "/").last ?? "")-first; Path=/"),
            ])
        })
        let host = "127.0.0.1:\(harness.port)"
        let cases: [(path: String, headers: [(String, String)], expected: String?)] = [
            ("cross-site", [("Origin", "https://other.example"), ("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "cors")], nil),
            ("same-site", [("Origin", "https://app.\(host)"), ("Sec-Fetch-Site", "same-site")], nil),
            ("same-origin", [("Origin", "http://\(host)"), ("Sec-Fetch-Site", "same-origin")], "resume=same-origin-first"),
            ("old-browser-cross", [("Origin", "https://other.example")], nil),
            ("old-browser-same", [("Origin", "http://\(host)")], "resume=old-browser-same-first"),
            ("opaque", [("Origin", "null")], nil),
            ("sdk", [], "resume=sdk-first"),
            ("with-credentials", [("Origin", "https://other.example"), ("Sec-Fetch-Site", "cross-site"), ("Cookie", "session=s")],
             "session=s; resume=with-credentials-first"),
        ]
        var clients: [SSETestClient] = []
        for item in cases {
            let client = try await harness.client("/events/\(item.path)", headers: item.headers)
            _ = try await client.waitForHead()
            clients.append(client)
        }
        try await harness.origin.waitForStreams(count: cases.count)
        harness.origin.closeAllConnections()
        try await harness.origin.waitForRequests(count: 2 * cases.count)
        let reconnects = harness.origin.requests.suffix(cases.count)
        for item in cases {
            let request = reconnects.first { $0.path.hasSuffix("/" + item.path) }
            XCTAssertNotNil(request, item.path)
            XCTAssertEqual(request?.header("cookie"), item.expected, item.path)
        }
        for client in clients { await client.close() }
        await harness.shutdown()
    }

    func testUnsharedRouteGivesEachClientItsOwnSnapshot() async throws {
        let harness = try await GatewayHarness.start(
            routes: [("/state", "/state")],
            origin: ScriptedOrigin.sseHandler(prelude: { request in
                "id: \(request.lastEventID ?? "0")\ndata: snapshot after \(request.lastEventID ?? "nothing")\n\n"
            }),
            configure: { configuration in
                configuration.unsharedRoutes = ["/state"]
            }
        )
        let first = try await harness.client("/state")
        let value101 = try await first.waitForEvents(count: 1).map(\.data)
        XCTAssertEqual(value101, ["snapshot after nothing"])
        let second = try await harness.client("/state")
        let value102 = try await second.waitForEvents(count: 1).map(\.data)
        XCTAssertEqual(value102, ["snapshot after nothing"])
        let resumed = try await harness.client("/state", headers: [("Last-Event-ID", "41")])
        let head = try await resumed.waitForHead()
        XCTAssertNil(head.headers.first(name: "lifeline-replay"), "the origin replays: no miss to report")
        let value103 = try await resumed.waitForEvents(count: 1).map(\.data)
        XCTAssertEqual(value103, ["snapshot after 41"])
        XCTAssertEqual(harness.origin.requests.count, 3)
        XCTAssertEqual(harness.origin.requests.last?.lastEventID, "41")
        for client in [first, second, resumed] { await client.close() }
        await harness.shutdown()
    }
}

/// The body of a refused reconnect answer must not become events. (Found by reading the code:
/// body bytes were parsed whatever the answer; over plaintext the close takes effect at once and
/// hides it, over TLS the close waits for close_notify and the page's events got through. This
/// test pins the behaviour; it does not fail on plaintext without the guard.)
final class RefusedAnswerBodyTests: XCTestCase {
    /// Answers the n-th connection's request with `answers[n]` (the last one again after that),
    /// written at once so that head and body arrive in one read; closes after it unless told not to.
    final class RawOrigin: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let answers: [(String, Bool)]
        let count: NIOLockedValueBox<Int>
        var answered = false
        init(answers: [(String, Bool)], count: NIOLockedValueBox<Int>) {
            self.answers = answers
            self.count = count
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard !self.answered else { return }
            self.answered = true
            let n = self.count.withLockedValue { value -> Int in
                value += 1
                return value
            }
            let (text, close) = self.answers[min(n, self.answers.count) - 1]
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: text))).whenComplete { _ in
                if close { loopContext.value.close(promise: nil) }
            }
        }
    }

    func testTheBodyOfARefusedReconnectAnswerIsNotParsedAsEvents() async throws {
        let sse = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        func chunk(_ text: String) -> String { String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n" }
        let page = "id: 666\ndata: error page\nretry: 1\n\n"
        let answers: [(String, Bool)] = [
            (sse + chunk("id: 1\ndata: first\n\n"), true),
            ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/event-stream\r\nContent-Length: \(page.utf8.count)\r\n\r\n" + page, false),
            (sse + chunk("id: 2\ndata: second\n\n"), false),
        ]
        let count = NIOLockedValueBox(0)
        let origin = try await OriginListener.start { RawOrigin(answers: answers, count: count) }
        let harness = try await GatewayHarness.start(inFrontOf: origin)
        let client = try await harness.client("/events")
        let events = try await client.waitForEvents(count: 2)
        XCTAssertEqual(events.map(\.data), ["first", "second"], "nothing of the 503 page")
        XCTAssertEqual(events.map(\.id), ["1", "2"])
        await client.close()
        await harness.shutdown()
        try await origin.stop()
    }
}
