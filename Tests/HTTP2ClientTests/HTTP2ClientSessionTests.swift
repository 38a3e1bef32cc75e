import HTTP2
import HTTP2Client
import HTTP2TestSupport
import NIOCore
import NIOEmbedded
import XCTest

/// What an `HTTP2ClientSession`'s delegate hears, in order.
final class ClientRecorder: HTTP2ClientSessionDelegate {
    enum Event: Hashable {
        case response(Int32, status: Int, contentType: String?)
        case closed(Int32, errorCode: UInt32)
        case goAway(errorCode: UInt32, lastStreamID: Int32)
    }

    var events: [Event] = []
    /// Body bytes by stream, in the order they arrived.
    var bodies: [Int32: [UInt8]] = [:]

    func http2Response(streamID: Int32, status: Int, contentType: String?) {
        self.events.append(.response(streamID, status: status, contentType: contentType))
    }

    func http2Data(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        self.bodies[streamID, default: []] += bytes
    }

    func http2StreamClosed(streamID: Int32, errorCode: UInt32) {
        self.events.append(.closed(streamID, errorCode: errorCode))
    }

    func http2GoAway(errorCode: UInt32, lastStreamID: Int32) {
        self.events.append(.goAway(errorCode: errorCode, lastStreamID: lastStreamID))
    }

    var closes: [Event] {
        self.events.filter { if case .closed = $0 { true } else { false } }
    }

    func body(_ streamID: Int32) -> String {
        String(decoding: self.bodies[streamID] ?? [], as: UTF8.self)
    }
}

/// An `HTTP2ClientSession` talking to the project's `HTTP2ServerHandler` on an `EmbeddedChannel`:
/// bytes are moved between the two by hand, so every step is deterministic.
final class ClientServerPair {
    let recorder = ClientRecorder()
    let client: HTTP2ClientSession
    let channel = EmbeddedChannel()
    let server: HTTP2ServerHandler
    /// The server's streams by id, and what their delegates heard.
    private(set) var serverStreams: [Int32: HTTP2ServerStream] = [:]
    private(set) var serverDelegates: [Int32: RecordingDelegate] = [:]
    /// Called when a request reaches the server (to answer it).
    var onRequest: ((HTTP2ServerStream) -> Void)?
    /// Frames each side sent (the client's without its preface).
    private(set) var clientFrames: [H2.Frame] = []
    private(set) var serverFrames: [H2.Frame] = []
    private var clientBytes: [UInt8] = []
    private var serverBytes: [UInt8] = []
    private var prefaceSkipped = false

    init(clientSettings: HTTP2ClientSession.Settings = HTTP2ClientSession.Settings()) throws {
        self.client = try HTTP2ClientSession(delegate: self.recorder, settings: clientSettings)
        // The handler's callback needs `self`, which is not available before `server` is set.
        let box = CallbackBox()
        self.server = HTTP2ServerHandler(configuration: HTTP2ServerConfiguration()) { box.onRequest?($0) }
        box.onRequest = { [unowned self] stream in
            let delegate = RecordingDelegate()
            stream.delegate = delegate
            self.serverStreams[stream.streamID] = stream
            self.serverDelegates[stream.streamID] = delegate
            self.onRequest?(stream)
        }
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.channel.pipeline.syncOperations.addHandler(self.server)
    }

    private final class CallbackBox {
        var onRequest: ((HTTP2ServerStream) -> Void)?
    }

    /// Client output to the server. Returns how many bytes went.
    @discardableResult
    func clientToServer() throws -> Int {
        var buffer = self.channel.allocator.buffer(capacity: 1024)
        guard try self.client.writePending(into: &buffer) else { return 0 }
        var bytes = Array(buffer.readableBytesView)
        if !self.prefaceSkipped {
            XCTAssertEqual(Array(bytes.prefix(H2.preface.count)), H2.preface, "the client preface comes first")
            bytes.removeFirst(H2.preface.count)
            self.prefaceSkipped = true
        }
        self.clientFrames += Self.parse(bytes, pending: &self.clientBytes)
        try self.channel.writeInbound(buffer)
        self.channel.embeddedEventLoop.run()
        return buffer.readableBytes
    }

    /// Server output to the client. Returns how many bytes went.
    @discardableResult
    func serverToClient() throws -> Int {
        self.channel.embeddedEventLoop.run()
        var total = 0
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            total += buffer.readableBytes
            self.serverFrames += Self.parse(Array(buffer.readableBytesView), pending: &self.serverBytes)
            try buffer.withUnsafeReadableBytes { raw throws(HTTP2ClientSession.Failure) in
                try self.client.receive(raw)
            }
        }
        return total
    }

    /// Moves bytes both ways until neither side has anything more to say.
    func exchange() throws {
        var rounds = 0
        while try self.clientToServer() + self.serverToClient() > 0 {
            rounds += 1
            guard rounds < 1000 else { return XCTFail("the two sessions never went quiet") }
        }
    }

    private static func parse(_ bytes: [UInt8], pending: inout [UInt8]) -> [H2.Frame] {
        pending += bytes
        let (frames, consumed) = H2.parse(pending)
        pending.removeFirst(consumed)
        return frames
    }

    func submitGET(_ path: String, headers: [(String, String)] = []) throws -> Int32 {
        try self.client.submitRequest(method: "GET", scheme: "http", authority: "example.com", path: path, headers: headers)
    }
}

final class HTTP2ClientSessionTests: XCTestCase {
    private func makePair(clientSettings: HTTP2ClientSession.Settings = HTTP2ClientSession.Settings()) throws -> ClientServerPair {
        let pair = try ClientServerPair(clientSettings: clientSettings)
        self.addTeardownBlock { _ = try? pair.channel.finish(acceptAlreadyClosed: true) }
        return pair
    }

    /// A pair with `count` requests answered `200 text/event-stream` and left open.
    private func makePairWithOpenStreams(_ count: Int) throws -> (ClientServerPair, [Int32]) {
        let pair = try self.makePair()
        pair.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream")])
            stream.flush()
        }
        let ids = try (1...count).map { try pair.submitGET("/\($0)") }
        try pair.exchange()
        XCTAssertEqual(pair.recorder.events.count, count, "every stream has its head")
        return (pair, ids)
    }

    // MARK: Connection start

    func testPrefaceSettingsAndConnectionWindowGoOutFirst() throws {
        var settings = HTTP2ClientSession.Settings()
        settings.streamWindow = 100_000
        settings.connectionWindow = 1 << 20
        let pair = try self.makePair(clientSettings: settings)
        XCTAssertTrue(pair.client.wantsWrite, "the preface is due before any request")
        XCTAssertTrue(pair.client.isAlive)
        try pair.clientToServer()
        XCTAssertFalse(pair.client.wantsWrite)

        let first = try XCTUnwrap(pair.clientFrames.first)
        XCTAssertEqual(first.kind, .settings)
        XCTAssertEqual(first.flags, 0)
        let sent = Dictionary(uniqueKeysWithValues: first.settings)
        XCTAssertEqual(sent[H2.Setting.enablePush.rawValue], 0)
        XCTAssertEqual(sent[H2.Setting.initialWindowSize.rawValue], 100_000)
        let connectionUpdate = pair.clientFrames.first { $0.kind == .windowUpdate && $0.streamID == 0 }
        XCTAssertEqual(connectionUpdate?.windowIncrement, UInt32((1 << 20) - 65_535))

        // The server answers with its SETTINGS and an ACK; the client ACKs the server's.
        try pair.exchange()
        XCTAssertEqual(pair.serverFrames.filter { $0.kind == .settings && $0.flags == 0 }.count, 1)
        XCTAssertEqual(pair.serverFrames.filter { $0.kind == .settings && $0.flags & H2.Flag.ack != 0 }.count, 1)
        XCTAssertEqual(pair.clientFrames.filter { $0.kind == .settings && $0.flags & H2.Flag.ack != 0 }.count, 1)
        XCTAssertFalse(pair.serverFrames.contains { $0.kind == .goAway })
        XCTAssertTrue(pair.recorder.events.isEmpty)
        XCTAssertTrue(pair.client.isAlive)
        XCTAssertTrue(pair.channel.isActive)
    }

    func testDefaultConnectionWindowNeedsNoUpdate() throws {
        var settings = HTTP2ClientSession.Settings()
        settings.connectionWindow = 65_535
        let pair = try self.makePair(clientSettings: settings)
        try pair.clientToServer()
        XCTAssertEqual(pair.clientFrames.map(\.kind), [.settings])
    }

    // MARK: Requests and responses

    func testRequestsAreSentAsGivenAndEachGetsItsResponseHead() throws {
        let pair = try self.makePair()
        pair.onRequest = { stream in
            switch stream.head.uri {
            case "/events": stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream")])
            case "/missing": stream.sendHead(status: .notFound, headers: [("content-type", "text/plain"), ("x-other", "1")])
            default: stream.sendHead(status: .noContent, headers: [], endStream: true)
            }
            stream.flush()
        }
        let ids = [
            try pair.submitGET("/events", headers: [("accept", "text/event-stream"), ("last-event-id", "41")]),
            try pair.submitGET("/missing"),
            try pair.submitGET("/gone"),
        ]
        XCTAssertEqual(ids, [1, 3, 5])
        try pair.exchange()

        let head = try XCTUnwrap(pair.serverStreams[1]?.head)
        XCTAssertEqual(head.method, .GET)
        XCTAssertEqual(head.uri, "/events")
        XCTAssertEqual(head.headers["host"], ["example.com"])
        XCTAssertEqual(head.headers["accept"], ["text/event-stream"])
        XCTAssertEqual(head.headers["last-event-id"], ["41"])
        XCTAssertEqual(pair.serverStreams[1]?.scheme, "http")
        XCTAssertEqual(pair.serverStreams.keys.sorted(), [1, 3, 5])

        XCTAssertEqual(
            pair.recorder.events,
            [
                .response(1, status: 200, contentType: "text/event-stream"),
                .response(3, status: 404, contentType: "text/plain"),
                .response(5, status: 204, contentType: nil),
                .closed(5, errorCode: 0),
            ]
        )
    }

    func testDataReachesItsOwnStreamInOrderAndEndStreamClosesIt() throws {
        let (pair, ids) = try self.makePairWithOpenStreams(2)
        let (a, b) = (ids[0], ids[1])
        let streamA = try XCTUnwrap(pair.serverStreams[a])
        let streamB = try XCTUnwrap(pair.serverStreams[b])

        // Interleaved on the connection: a, b, a, b, each in its own flush.
        for i in 1...3 {
            streamA.write(ByteBuffer(string: "data: a\(i)\n\n"))
            streamA.flush()
            streamB.write(ByteBuffer(string: "data: b\(i)\n\n"))
            streamB.flush()
            try pair.exchange()
        }
        XCTAssertEqual(pair.recorder.body(a), "data: a1\n\ndata: a2\n\ndata: a3\n\n")
        XCTAssertEqual(pair.recorder.body(b), "data: b1\n\ndata: b2\n\ndata: b3\n\n")
        XCTAssertEqual(pair.recorder.closes, [])

        streamB.write(ByteBuffer(string: "data: last\n\n"))
        streamB.end()
        try pair.exchange()
        XCTAssertEqual(pair.recorder.body(b), "data: b1\n\ndata: b2\n\ndata: b3\n\ndata: last\n\n")
        XCTAssertEqual(pair.recorder.events.last, .closed(b, errorCode: 0))
        XCTAssertEqual(pair.serverDelegates[b]?.closeReasons, [.finished])

        // The other stream is still open and still delivers.
        streamA.write(ByteBuffer(string: "data: a4\n\n"))
        streamA.flush()
        try pair.exchange()
        XCTAssertEqual(pair.recorder.body(a), "data: a1\n\ndata: a2\n\ndata: a3\n\ndata: a4\n\n")
        XCTAssertTrue(pair.client.isAlive)
    }

    func testServerResetIsReportedWithItsStreamAndErrorCode() throws {
        let (pair, ids) = try self.makePairWithOpenStreams(3)
        let (reset, other) = (ids[1], ids[2])
        pair.serverStreams[reset]?.reset(errorCode: 0x2)  // INTERNAL_ERROR
        try pair.exchange()
        XCTAssertEqual(pair.recorder.events.last, .closed(reset, errorCode: 0x2))
        XCTAssertEqual(pair.recorder.closes, [.closed(reset, errorCode: 0x2)])

        pair.serverStreams[other]?.write(ByteBuffer(string: "still here"))
        pair.serverStreams[other]?.flush()
        try pair.exchange()
        XCTAssertEqual(pair.recorder.body(other), "still here")
    }

    func testClientResetSendsRstStreamAndReportsTheClose() throws {
        let (pair, ids) = try self.makePairWithOpenStreams(2)
        let (first, second) = (ids[0], ids[1])
        pair.client.resetStream(first)
        XCTAssertTrue(pair.client.wantsWrite)
        try pair.exchange()
        XCTAssertEqual(pair.clientFrames.filter { $0.kind == .rstStream }.map(\.streamID), [UInt32(first)])
        XCTAssertEqual(pair.clientFrames.first { $0.kind == .rstStream }?.errorCode, 0x8)
        XCTAssertEqual(pair.serverDelegates[first]?.closeReasons, [.reset(errorCode: 0x8)])
        XCTAssertEqual(pair.recorder.events.last, .closed(first, errorCode: 0x8))
        XCTAssertEqual(pair.serverDelegates[second]?.closeReasons, [])
    }

    // MARK: GOAWAY

    func testGracefulShutdownLetsOpenStreamsFinishAndRefusesNewOnes() throws {
        let (pair, ids) = try self.makePairWithOpenStreams(2)
        let (first, second) = (ids[0], ids[1])

        pair.server.beginGracefulShutdown()
        try pair.exchange()
        // The notice (last stream id 2^31-1), then, once the client answered the PING, the final one.
        XCTAssertEqual(
            pair.recorder.events.suffix(2),
            [.goAway(errorCode: 0, lastStreamID: 0x7fff_ffff), .goAway(errorCode: 0, lastStreamID: second)]
        )
        XCTAssertEqual(pair.clientFrames.filter { $0.kind == .ping }.map(\.flags), [H2.Flag.ack])

        // A request after GOAWAY is refused locally (REFUSED_STREAM: safe to retry elsewhere).
        let late = try pair.submitGET("/late")
        try pair.exchange()
        XCTAssertEqual(pair.recorder.events.last, .closed(late, errorCode: 0x7))
        XCTAssertNil(pair.serverStreams[late])
        XCTAssertTrue(pair.client.isAlive, "two streams are still open")

        pair.serverStreams[first]?.write(ByteBuffer(string: "bye"))
        pair.serverStreams[first]?.end()
        pair.serverStreams[second]?.end()
        try pair.exchange()
        XCTAssertEqual(pair.recorder.body(first), "bye")
        XCTAssertEqual(pair.recorder.events.suffix(2), [.closed(first, errorCode: 0), .closed(second, errorCode: 0)])
        XCTAssertFalse(pair.client.isAlive, "GOAWAY and no stream left: the connection is done")
        pair.channel.embeddedEventLoop.run()
        XCTAssertFalse(pair.channel.isActive, "the server closed too")
    }

    func testGoAwayClosesStreamsTheServerDidNotProcess() throws {
        let (client, recorder, ids) = try self.rawClient(requests: 3)
        try client.receive(H2.goAway(lastStreamID: 1, errorCode: 0x2))
        XCTAssertEqual(
            recorder.events,
            [
                .goAway(errorCode: 0x2, lastStreamID: 1),
                .closed(ids[1], errorCode: 0x7),
                .closed(ids[2], errorCode: 0x7),
            ]
        )
        XCTAssertTrue(client.isAlive, "stream 1 may still complete")
    }

    func testTerminateSendsGoAwayAndEndsTheSession() throws {
        let pair = try self.makePair()
        try pair.exchange()
        pair.client.terminate()
        try pair.clientToServer()
        XCTAssertEqual(pair.clientFrames.filter { $0.kind == .goAway }.map(\.errorCode), [0])
        XCTAssertFalse(pair.client.isAlive)
        XCTAssertEqual(pair.server.terminationReason, "client GOAWAY (NO_ERROR)")
    }

    // MARK: Flow control

    func testWindowUpdatesLetMoreThanAStreamWindowThrough() throws {
        var settings = HTTP2ClientSession.Settings()
        settings.streamWindow = 65_535
        settings.connectionWindow = 65_535
        let pair = try self.makePair(clientSettings: settings)
        let size = 300 << 10
        pair.onRequest = { stream in
            let byte: UInt8 = stream.streamID == 1 ? 0x61 : 0x62
            stream.sendHead(status: .ok, headers: [])
            stream.write(ByteBuffer(repeating: byte, count: size))
            stream.end()
        }
        let a = try pair.submitGET("/a")
        let b = try pair.submitGET("/b")
        try pair.clientToServer()

        // Until the client's WINDOW_UPDATEs reach it, the server stays within the windows.
        while try pair.serverToClient() > 0 {}
        let received = pair.recorder.bodies.values.map(\.count).reduce(0, +)
        XCTAssertLessThanOrEqual(received, 65_535)
        XCTAssertGreaterThan(received, 0)

        try pair.exchange()
        XCTAssertEqual(pair.recorder.bodies[a], [UInt8](repeating: 0x61, count: size))
        XCTAssertEqual(pair.recorder.bodies[b], [UInt8](repeating: 0x62, count: size))
        XCTAssertEqual(
            Set(pair.recorder.closes),
            [.closed(a, errorCode: 0), .closed(b, errorCode: 0)]
        )
        let updates = pair.clientFrames.filter { $0.kind == .windowUpdate }
        XCTAssertTrue(updates.contains { $0.streamID == 0 }, "the connection window was given back")
        XCTAssertTrue(updates.contains { $0.streamID == UInt32(a) })
        XCTAssertTrue(updates.contains { $0.streamID == UInt32(b) })
        XCTAssertFalse(pair.serverFrames.contains { $0.kind == .goAway || $0.kind == .rstStream })
    }

    // MARK: Heads from a hand-written server

    /// A client whose requests have gone out, fed the server's frames by hand.
    private func rawClient(requests: Int = 1, handshake: Bool = true) throws -> (HTTP2ClientSession, ClientRecorder, [Int32]) {
        let recorder = ClientRecorder()
        let client = try HTTP2ClientSession(delegate: recorder)
        let ids = try (0..<requests).map { _ in
            try client.submitRequest(method: "GET", scheme: "http", authority: "x", path: "/")
        }
        var output = ByteBuffer()
        try client.writePending(into: &output)
        if handshake {
            try client.receive(H2.settings() + H2.settingsAck)
        }
        return (client, recorder, ids)
    }

    private static func headers(_ stream: Int32, _ fields: [(String, String)], endStream: Bool = false) -> [UInt8] {
        H2.frame(
            .headers, flags: H2.Flag.endHeaders | (endStream ? H2.Flag.endStream : 0), stream: UInt32(stream),
            payload: H2.hpackLiterals(fields))
    }

    func testInformationalResponsesAreSkippedAndTheFinalHeadIsReported() throws {
        let (client, recorder, ids) = try self.rawClient()
        try client.receive(Self.headers(ids[0], [(":status", "100")]))
        try client.receive(Self.headers(ids[0], [(":status", "103"), ("link", "</a.css>; rel=preload")]))
        XCTAssertEqual(recorder.events, [])
        try client.receive(Self.headers(ids[0], [(":status", "200"), ("content-type", "text/event-stream")]))
        XCTAssertEqual(recorder.events, [.response(ids[0], status: 200, contentType: "text/event-stream")])
        try client.receive(Self.headers(ids[0], [("x-checksum", "1")], endStream: true))
        XCTAssertEqual(
            recorder.events,
            [.response(ids[0], status: 200, contentType: "text/event-stream"), .closed(ids[0], errorCode: 0)]
        )
    }

    func testTrailersAreNotASecondHead() throws {
        let (client, recorder, ids) = try self.rawClient()
        try client.receive(
            Self.headers(ids[0], [(":status", "200"), ("content-type", "text/plain")])
                + H2.data(UInt32(ids[0]), Array("body".utf8))
                + Self.headers(ids[0], [("grpc-status", "0")], endStream: true)
        )
        XCTAssertEqual(
            recorder.events,
            [.response(ids[0], status: 200, contentType: "text/plain"), .closed(ids[0], errorCode: 0)]
        )
        XCTAssertEqual(recorder.body(ids[0]), "body")
    }

    // MARK: A broken peer

    func testNotHTTP2FromThePeerIsAnError() throws {
        let (client, recorder, _) = try self.rawClient(handshake: false)
        XCTAssertThrowsError(try client.receive(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)))
        // Whatever comes next is ignored, and the GOAWAY says why.
        XCTAssertNoThrow(try client.receive(H2.settings()))
        var output = ByteBuffer()
        try client.writePending(into: &output)
        let frames = H2.parse(Array(output.readableBytesView)).frames
        XCTAssertEqual(frames.filter { $0.kind == .goAway }.map(\.errorCode), [0x1])  // PROTOCOL_ERROR
        XCTAssertFalse(frames.contains { $0.kind == .settings && $0.flags & H2.Flag.ack != 0 })
        XCTAssertFalse(client.isAlive)
        XCTAssertEqual(recorder.events, [])
    }

    func testBrokenFramesAfterTheHandshakeAreAnError() throws {
        let cases: [(name: String, bytes: [UInt8], goAwayCode: UInt32)] = [
            ("DATA on stream 0", H2.data(0, [1, 2, 3]), 0x1),  // PROTOCOL_ERROR
            ("HEADERS that are not HPACK", H2.frame(.headers, flags: H2.Flag.endHeaders, stream: 1, payload: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 0x9),  // COMPRESSION_ERROR
            ("frame over the maximum size", Array(H2.frame(.data, stream: 1, payload: [UInt8](repeating: 0, count: 20_000)).prefix(9)), 0x6),  // FRAME_SIZE_ERROR
        ]
        for (name, bytes, goAwayCode) in cases {
            let (client, _, _) = try self.rawClient()
            XCTAssertThrowsError(try client.receive(bytes), name)
            var output = ByteBuffer()
            try client.writePending(into: &output)
            let goAway = H2.parse(Array(output.readableBytesView)).frames.first { $0.kind == .goAway }
            XCTAssertEqual(goAway?.errorCode, goAwayCode, name)
            XCTAssertFalse(client.isAlive, name)
        }
    }

    func testAMalformedResponseResetsOnlyItsStream() throws {
        let (client, recorder, ids) = try self.rawClient(requests: 2)
        // A response without :status is a stream error, not a connection error.
        XCTAssertNoThrow(try client.receive(Self.headers(ids[0], [("content-type", "text/plain")])))
        var output = ByteBuffer()
        try client.writePending(into: &output)
        let resets = H2.parse(Array(output.readableBytesView)).frames.filter { $0.kind == .rstStream }
        XCTAssertEqual(resets.map(\.streamID), [UInt32(ids[0])])
        XCTAssertEqual(resets.map(\.errorCode), [0x1])
        XCTAssertEqual(recorder.events, [.closed(ids[0], errorCode: 0x1)])

        try client.receive(Self.headers(ids[1], [(":status", "200")]) + H2.data(UInt32(ids[1]), Array("ok".utf8)))
        XCTAssertEqual(recorder.events.last, .response(ids[1], status: 200, contentType: nil))
        XCTAssertEqual(recorder.body(ids[1]), "ok")
        XCTAssertTrue(client.isAlive)
    }

    func testAGoAwayDuringTheHandshakeIsNotMistakenForAnError() throws {
        let (client, recorder, _) = try self.rawClient(handshake: false)
        XCTAssertNoThrow(try client.receive(H2.settings() + H2.goAway(lastStreamID: 0, errorCode: 0x0)))
        XCTAssertEqual(recorder.events, [.goAway(errorCode: 0, lastStreamID: 0), .closed(1, errorCode: 0x7)])
    }
}

extension HTTP2ClientSession {
    /// Test convenience: `receive` from an array.
    func receive(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try self.receive($0) }
    }
}
