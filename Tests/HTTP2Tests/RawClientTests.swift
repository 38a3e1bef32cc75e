import Foundation
import HTTP2
import HTTP2TestSupport
import NIOCore
import NIOPosix
import XCTest

/// `HTTP2ServerHandler` on loopback against a hand-driven HTTP/2 client (raw frames over TCP):
/// resets, limits, graceful shutdown, bad input and floods.
final class RawClientTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: TestH2Server!
    private var clients: [RawH2Client] = []

    override func setUpWithError() throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDownWithError() throws {
        for client in self.clients { client.close() }
        self.clients = []
        self.server?.stop()
        self.server = nil
        try self.group.syncShutdownGracefully()
        self.group = nil
    }

    private func start(_ configuration: HTTP2ServerConfiguration = HTTP2ServerConfiguration()) throws {
        self.server = try TestH2Server.start(group: self.group, configuration: configuration)
    }

    private func connect() throws -> RawH2Client {
        let client = try RawH2Client.connect(port: self.server.port, group: self.group)
        self.clients.append(client)
        return client
    }

    private static func dataFrames(_ frames: [H2.Frame], stream: UInt32) -> Int {
        frames.filter { $0.kind == .data && $0.streamID == stream }.count
    }

    private static func goAways(_ frames: [H2.Frame]) -> [H2.Frame] {
        frames.filter { $0.kind == .goAway }
    }

    func testServerSendsSettingsFromTheConfiguration() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.maxConcurrentStreams = 7
        configuration.maxHeaderListSize = 12_345
        configuration.initialWindowSize = 100_000
        configuration.connectionWindowSize = 2_000_000
        try self.start(configuration)
        let client = try self.connect()
        try client.handshake()
        client.wait("server SETTINGS and connection WINDOW_UPDATE") { frames, _ in
            frames.contains { $0.kind == .settings && $0.flags == 0 } && frames.contains { $0.kind == .windowUpdate }
        }
        let settings = client.frames.first { $0.kind == .settings && $0.flags == 0 }?.settings ?? []
        let values = Dictionary(settings, uniquingKeysWith: { $1 })
        XCTAssertEqual(values[H2.Setting.maxConcurrentStreams.rawValue], 7)
        XCTAssertEqual(values[H2.Setting.maxHeaderListSize.rawValue], 12_345)
        XCTAssertEqual(values[H2.Setting.initialWindowSize.rawValue], 100_000)
        let update = client.frames.first { $0.kind == .windowUpdate }
        XCTAssertEqual(update?.streamID, 0)
        XCTAssertEqual(update?.windowIncrement, 2_000_000 - 65_535)
    }

    func testClientResetEndsOnlyThatStream() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        try client.send(H2.request(1, path: "/sse?count=0&interval=30") + H2.request(3, path: "/sse?count=0&interval=30"))
        client.wait("events on both streams") { frames, _ in
            Self.dataFrames(frames, stream: 1) >= 3 && Self.dataFrames(frames, stream: 3) >= 3
        }
        try client.send(H2.rstStream(1, errorCode: 0x8))
        eventually("the server's stream sees the reset") { self.server.closes(path: "/sse") == [.reset(errorCode: 0x8)] }
        let afterReset1 = Self.dataFrames(client.frames, stream: 1)
        let afterReset3 = Self.dataFrames(client.frames, stream: 3)
        client.wait("stream 3 keeps going") { frames, _ in Self.dataFrames(frames, stream: 3) >= afterReset3 + 5 }
        XCTAssertEqual(Self.dataFrames(client.frames, stream: 1), afterReset1, "no data after the reset")
        XCTAssertTrue(Self.goAways(client.frames).isEmpty)
        XCTAssertFalse(client.isClosed)
        XCTAssertEqual(self.server.closes(path: "/sse"), [.reset(errorCode: 0x8)], "stream 3 is still open")
    }

    func testStreamsOverTheAdvertisedLimitAreRefused() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.maxConcurrentStreams = 3
        try self.start(configuration)
        let client = try self.connect()
        try client.handshake()
        client.wait("server SETTINGS") { frames, _ in frames.contains { $0.kind == .settings && $0.flags == 0 } }
        let advertised = client.frames.first { $0.kind == .settings && $0.flags == 0 }?.settings
            .first { $0.0 == H2.Setting.maxConcurrentStreams.rawValue }?.1
        XCTAssertEqual(advertised, 3)
        // Before it has acknowledged the SETTINGS the client may not know the limit: the stream
        // over it is refused (a stream error), the others are served.
        var requests: [UInt8] = []
        for id in [1, 3, 5, 7] as [UInt32] {
            requests += H2.request(id, path: "/sse?count=0&interval=30")
        }
        try client.send(requests)
        client.wait("RST_STREAM REFUSED_STREAM on stream 7") { frames, _ in
            frames.contains { $0.kind == .rstStream && $0.streamID == 7 && $0.errorCode == 0x7 }
        }
        client.wait("events on the three admitted streams") { frames, _ in
            [1, 3, 5].allSatisfy { Self.dataFrames(frames, stream: $0) >= 2 }
        }
        XCTAssertEqual(Self.dataFrames(client.frames, stream: 7), 0)
        XCTAssertEqual(self.server.requestCount, 3)
        XCTAssertTrue(Self.goAways(client.frames).isEmpty)
    }

    func testOversizedHeaderBlockIsRejectedWithoutHurtingOtherStreams() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.maxHeaderListSize = 4096
        try self.start(configuration)
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        try client.send(H2.request(1, path: "/sse?count=0&interval=30"))
        client.wait("events on stream 1") { frames, _ in Self.dataFrames(frames, stream: 1) >= 2 }
        try client.send(H2.request(3, path: "/hello", headers: [("x-big", String(repeating: "b", count: 6000))]))
        client.wait("a response on stream 3") { frames, _ in frames.contains { $0.kind == .headers && $0.streamID == 3 } }
        let before = Self.dataFrames(client.frames, stream: 1)
        try client.send(H2.request(5, path: "/hello"))
        client.wait("stream 5 served, stream 1 still going") { frames, _ in
            frames.contains { $0.kind == .data && $0.streamID == 5 && $0.endStream } && Self.dataFrames(frames, stream: 1) >= before + 3
        }
        // Decode the response heads in order (HPACK state is per connection).
        let decoder = HPACKDecoder()
        var statuses: [UInt32: String] = [:]
        for frame in client.frames where frame.kind == .headers {
            let fields = decoder.decode(frame.headerBlock)
            XCTAssertNotNil(fields)
            statuses[frame.streamID] = fields?.first { $0.0 == ":status" }?.1
            if frame.streamID == 3 {
                XCTAssertTrue(frame.endStream, "the 431 ends the stream")
            }
        }
        XCTAssertEqual(statuses, [1: "200", 3: "431", 5: "200"])
        XCTAssertEqual(client.body(of: 5), "hello, world\n")
        XCTAssertTrue(Self.goAways(client.frames).isEmpty)
        XCTAssertEqual(self.server.log.withLockedValue { $0.requests.map(\.uri) }, ["/sse?count=0&interval=30", "/hello"])
    }

    func testGracefulShutdownSendsGoAwayAndLetsTheActiveStreamFinish() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        try client.send(H2.request(1, path: "/sse?count=12&interval=40"))
        client.wait("first events") { frames, _ in Self.dataFrames(frames, stream: 1) >= 2 }
        self.server.gracefulShutdown()
        client.wait("the shutdown notice and its PING") { frames, _ in
            Self.goAways(frames).count >= 1 && frames.contains { $0.kind == .ping && $0.flags == 0 }
        }
        let notice = Self.goAways(client.frames)[0]
        XCTAssertEqual(notice.lastStreamID, 0x7fff_ffff, "the notice says: no new streams soon")
        XCTAssertEqual(notice.errorCode, 0)
        let ping = client.frames.first { $0.kind == .ping && $0.flags == 0 }!
        try client.send(H2.frame(.ping, flags: H2.Flag.ack, payload: ping.payload))
        client.wait("the final GOAWAY") { frames, _ in Self.goAways(frames).count >= 2 }
        let final = Self.goAways(client.frames)[1]
        XCTAssertEqual(final.lastStreamID, 1)
        XCTAssertEqual(final.errorCode, 0)
        XCTAssertFalse(client.isClosed, "the active stream keeps the connection open")
        // A stream opened after the GOAWAY is not served.
        try client.send(H2.request(3, path: "/hello"))
        client.wait(timeout: 5, "the stream's end, then the connection's") { frames, closed in
            closed && frames.contains { $0.kind == .data && $0.streamID == 1 && $0.endStream }
        }
        XCTAssertTrue(client.body(of: 1).contains("data: event 12\n\n"))
        XCTAssertFalse(client.frames.contains { $0.streamID == 3 && ($0.kind == .headers || $0.kind == .data) })
        XCTAssertEqual(self.server.closes(path: "/sse"), [.finished])
        XCTAssertEqual(self.server.requestCount, 1)
    }

    func testGracefulShutdownWithoutPingAckStillSendsTheFinalGoAway() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.gracefulShutdownPingTimeout = .milliseconds(200)
        try self.start(configuration)
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        client.wait("server SETTINGS") { frames, _ in frames.contains { $0.kind == .settings } }
        self.server.gracefulShutdown()
        // No streams: after the final GOAWAY (last stream 0) the connection closes.
        client.wait("two GOAWAYs and the close") { frames, closed in closed && Self.goAways(frames).count == 2 }
        XCTAssertEqual(Self.goAways(client.frames).last?.lastStreamID, 0)
    }

    func testGarbageInsteadOfThePrefaceClosesTheConnection() throws {
        try self.start()
        let client = try self.connect()
        try client.send(Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8))
        client.wait("the connection closes") { _, closed in closed }
        eventually("the server saw it end") { self.server.log.withLockedValue { $0.connectionsClosed } == 1 }
        let reason = self.server.log.withLockedValue { $0.terminationReasons.first } ?? ""
        XCTAssertTrue(reason.contains("preface"), reason)
        XCTAssertEqual(self.server.requestCount, 0)
    }

    func testProtocolViolationGetsGoAwayAndClose() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.request(1, path: "/sse?count=0&interval=30"))
        client.wait("events") { frames, _ in Self.dataFrames(frames, stream: 1) >= 1 }
        try client.send(H2.data(0, Array("not on stream 0".utf8)))  // DATA on stream 0: connection error
        client.wait("GOAWAY PROTOCOL_ERROR and the close") { frames, closed in
            closed && Self.goAways(frames).contains { $0.errorCode == 0x1 }
        }
        eventually("the open stream hears that the connection closed") {
            self.server.closes(path: "/sse") == [.connectionClosed]
        }
    }

    func testRapidResetFloodGetsGoAwayEnhanceYourCalm() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        var flood: [UInt8] = []
        for i in 0..<500 as Range<UInt32> {
            flood += H2.request(2 * i + 1, path: "/sse?count=0") + H2.rstStream(2 * i + 1)
        }
        try? client.send(flood)
        client.wait("GOAWAY ENHANCE_YOUR_CALM and the close") { frames, closed in
            closed && Self.goAways(frames).contains { $0.errorCode == 0xb }
        }
        eventually("the server logged why") {
            self.server.log.withLockedValue { $0.terminationReasons.first?.contains("rapid reset") ?? false }
        }
        XCTAssertLessThan(self.server.requestCount, 500)
    }

    func testSlowResetsAreFine() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.settingsAck)
        // 60 open-and-cancel pairs at about 20 a second: a busy browser, not an attack.
        for i in 0..<60 as Range<UInt32> {
            try client.send(H2.request(2 * i + 1, path: "/sse?count=0") + H2.rstStream(2 * i + 1))
            Thread.sleep(forTimeInterval: 0.005)
        }
        try client.send(H2.request(121, path: "/hello"))
        client.wait("the last request is served") { frames, _ in
            frames.contains { $0.kind == .data && $0.streamID == 121 && $0.endStream }
        }
        XCTAssertTrue(Self.goAways(client.frames).isEmpty)
    }

    func testPingFloodGetsGoAwayEnhanceYourCalm() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        var flood: [UInt8] = []
        for i in 0..<1000 as Range<UInt64> {
            flood += H2.ping(i)
        }
        try? client.send(flood)
        client.wait("GOAWAY ENHANCE_YOUR_CALM and the close") { frames, closed in
            closed && Self.goAways(frames).contains { $0.errorCode == 0xb }
        }
        let acks = client.frames.filter { $0.kind == .ping && $0.flags == H2.Flag.ack }.count
        XCTAssertLessThanOrEqual(acks, 201, "the flood was cut short")
    }

    func testSettingsFloodGetsGoAwayEnhanceYourCalm() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        var flood: [UInt8] = []
        for _ in 0..<1000 {
            flood += H2.settings([(.maxFrameSize, 16_384)])
        }
        try? client.send(flood)
        client.wait("GOAWAY ENHANCE_YOUR_CALM and the close") { frames, closed in
            closed && Self.goAways(frames).contains { $0.errorCode == 0xb }
        }
    }

    func testContinuationFloodGetsGoAway() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.request(1, path: "/sse?count=0&interval=30"))
        client.wait("events") { frames, _ in Self.dataFrames(frames, stream: 1) >= 1 }
        // A HEADERS frame that never ends: CONTINUATION after CONTINUATION (CVE-2024-27316 style).
        var flood = H2.frame(.headers, flags: H2.Flag.endStream, stream: 3, payload: [0x20] + H2.hpackLiterals([(":method", "GET")]))
        for i in 0..<50 {
            flood += H2.frame(.continuation, stream: 3, payload: H2.hpackLiterals([("x-filler-\(i)", "y")]))
        }
        try? client.send(flood)
        client.wait("GOAWAY ENHANCE_YOUR_CALM and the close") { frames, closed in
            closed && Self.goAways(frames).contains { $0.errorCode == 0xb }
        }
        eventually("the open stream hears that the connection closed") {
            self.server.closes(path: "/sse") == [.connectionClosed]
        }
        XCTAssertEqual(self.server.requestCount, 1)
    }

    func testClientGoAwayAndCloseEndTheConnectionCleanly() throws {
        try self.start()
        let client = try self.connect()
        try client.handshake()
        try client.send(H2.request(1, path: "/sse?count=0&interval=30"))
        client.wait("events") { frames, _ in Self.dataFrames(frames, stream: 1) >= 1 }
        client.close()
        eventually("the open stream hears that the connection closed") {
            self.server.closes(path: "/sse") == [.connectionClosed]
        }
    }
}
