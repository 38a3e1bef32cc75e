import HTTP2
import HTTP2TestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

/// An `HTTP2ServerHandler` on an `EmbeddedChannel`, with a hand-driven client.
final class EmbeddedH2 {
    let channel = EmbeddedChannel()
    let handler: HTTP2ServerHandler
    private let box: Box
    private var pending: [UInt8] = []
    private(set) var frames: [H2.Frame] = []
    let decoder = HPACKDecoder()

    final class Box {
        var streams: [HTTP2ServerStream] = []
        var delegates: [Int32: RecordingDelegate] = [:]
        var onRequest: ((HTTP2ServerStream) -> Void)?
    }

    var streams: [HTTP2ServerStream] { self.box.streams }
    func delegate(_ id: Int32) -> RecordingDelegate? { self.box.delegates[id] }
    var onRequest: ((HTTP2ServerStream) -> Void)? {
        get { self.box.onRequest }
        set { self.box.onRequest = newValue }
    }

    init(_ configuration: HTTP2ServerConfiguration = HTTP2ServerConfiguration(), clientSettings: [(H2.Setting, UInt32)] = []) throws {
        let box = Box()
        self.box = box
        self.handler = HTTP2ServerHandler(configuration: configuration) { stream in
            box.streams.append(stream)
            let delegate = RecordingDelegate()
            box.delegates[stream.streamID] = delegate
            stream.delegate = delegate
            box.onRequest?(stream)
        }
        try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try self.channel.pipeline.syncOperations.addHandler(self.handler)
        try self.send(H2.preface + H2.settings(clientSettings) + H2.settingsAck)
    }

    func send(_ bytes: [UInt8]) throws {
        var buffer = self.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        try self.channel.writeInbound(buffer)
        self.channel.embeddedEventLoop.run()
    }

    /// Runs pending tasks and returns the frames written since the last call.
    @discardableResult
    func read() throws -> [H2.Frame] {
        self.channel.embeddedEventLoop.run()
        while let buffer = try self.channel.readOutbound(as: ByteBuffer.self) {
            self.pending += buffer.readableBytesView
        }
        let (frames, consumed) = H2.parse(self.pending)
        self.pending.removeFirst(consumed)
        self.frames += frames
        return frames
    }

    func status(of frame: H2.Frame) -> String? {
        self.decoder.decode(frame.headerBlock)?.first { $0.0 == ":status" }?.1
    }
}

final class EmbeddedHandlerTests: XCTestCase {
    private var harnesses: [EmbeddedH2] = []

    override func tearDown() {
        for h2 in self.harnesses {
            _ = try? h2.channel.finish(acceptAlreadyClosed: true)
        }
        self.harnesses.removeAll()
    }

    private func make(
        _ configuration: HTTP2ServerConfiguration = HTTP2ServerConfiguration(),
        clientSettings: [(H2.Setting, UInt32)] = []
    ) throws -> EmbeddedH2 {
        let h2 = try EmbeddedH2(configuration, clientSettings: clientSettings)
        self.harnesses.append(h2)
        return h2
    }

    func testRequestHeadFromPseudoHeadersAndCookieCrumbs() throws {
        let h2 = try self.make()
        try h2.send(
            H2.request(
                1,
                method: "POST",
                path: "/events/x?a=1",
                authority: "example.com:8443",
                headers: [("cookie", "a=1"), ("last-event-id", "42"), ("cookie", "b=2"), ("host", "ignored")],
                endStream: false
            )
        )
        XCTAssertEqual(h2.streams.count, 1)
        let head = try XCTUnwrap(h2.streams.first?.head)
        XCTAssertEqual(head.method, .POST)
        XCTAssertEqual(head.uri, "/events/x?a=1")
        XCTAssertEqual(head.version, HTTPVersion(major: 2, minor: 0))
        XCTAssertEqual(head.headers["host"], ["example.com:8443"])
        XCTAssertEqual(head.headers["cookie"], ["a=1; b=2"])
        XCTAssertEqual(head.headers["last-event-id"], ["42"])
        XCTAssertEqual(h2.streams.first?.scheme, "http")
        XCTAssertEqual(h2.streams.first?.streamID, 1)
        XCTAssertFalse(h2.delegate(1)!.ended)
        try h2.send(H2.data(1, Array("hello".utf8), endStream: true))
        XCTAssertEqual(h2.delegate(1)?.bodies, ["hello"])
        XCTAssertTrue(h2.delegate(1)!.ended)
    }

    func testResponseRespectsTheClientWindowAndResumes() throws {
        let h2 = try self.make(clientSettings: [(.initialWindowSize, 10)])
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [("content-type", "text/plain")])
            stream.write(ByteBuffer(string: "0123456789abcdefghij"))
            stream.write(ByteBuffer(string: "ABCDE"))
            stream.end()
        }
        try h2.send(H2.request(1, path: "/"))
        var frames = try h2.read()
        let head = frames.first { $0.kind == .headers }
        XCTAssertEqual(head.flatMap { h2.status(of: $0) }, "200")
        XCTAssertEqual(frames.filter { $0.kind == .data }.map(\.data), [Array("0123456789".utf8)])
        XCTAssertEqual(h2.streams[0].bufferedBytes, 15)

        try h2.send(H2.windowUpdate(1, increment: 10))
        frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map { String(decoding: $0.data, as: UTF8.self) }, ["abcdefghij"])
        XCTAssertFalse(frames.contains { $0.endStream })

        try h2.send(H2.windowUpdate(1, increment: 100))
        frames = try h2.read()
        let last = frames.filter { $0.kind == .data }
        XCTAssertEqual(last.map { String(decoding: $0.data, as: UTF8.self) }, ["ABCDE"])
        XCTAssertEqual(last.last?.endStream, true)
        XCTAssertEqual(h2.streams[0].bufferedBytes, 0)
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.finished])
        XCTAssertTrue(h2.streams[0].isClosed)
    }

    func testDeferredDataProviderResumesWhenBytesAreFlushed() throws {
        let h2 = try self.make()
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream")])
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/sse"))
        var frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .headers && $0.streamID == 1 }.count, 1)
        XCTAssertEqual(frames.filter { $0.kind == .data }.count, 0)
        let stream = h2.streams[0]

        // Written but not flushed: stays queued.
        stream.write(ByteBuffer(string: "data: 1\n\n"))
        frames = try h2.read()
        XCTAssertTrue(frames.isEmpty)
        XCTAssertEqual(stream.bufferedBytes, 9)

        stream.flush()
        frames = try h2.read()
        XCTAssertEqual(frames.map { String(decoding: $0.data, as: UTF8.self) }, ["data: 1\n\n"])
        XCTAssertEqual(stream.bufferedBytes, 0)

        // Several streams' flushes in one tick share one socket write.
        stream.write(ByteBuffer(string: "data: 2\n\n"))
        stream.flush()
        stream.write(ByteBuffer(string: "data: 3\n\n"))
        stream.flush()
        h2.channel.embeddedEventLoop.run()
        var writes = 0
        var bytes: [UInt8] = []
        while let buffer = try h2.channel.readOutbound(as: ByteBuffer.self) {
            writes += 1
            bytes += buffer.readableBytesView
        }
        XCTAssertEqual(writes, 1)
        XCTAssertEqual(H2.parse(bytes).frames.flatMap(\.data), Array("data: 2\n\ndata: 3\n\n".utf8))

        stream.end()
        frames = try h2.read()
        XCTAssertEqual(frames.count, 1)
        XCTAssertEqual(frames.first?.kind, .data)
        XCTAssertEqual(frames.first?.endStream, true)
        XCTAssertEqual(frames.first?.payload.count, 0)
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.finished])
    }

    func testStreamBufferLimitDrivesIsWritableAndTheDelegate() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.streamBufferLimit = 100
        // The client's window is 0: nothing drains until it opens it.
        let h2 = try self.make(configuration, clientSettings: [(.initialWindowSize, 0)])
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [])
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/"))
        try h2.read()
        let stream = h2.streams[0]
        let delegate = try XCTUnwrap(h2.delegate(1))
        stream.write(ByteBuffer(repeating: 0x61, count: 60))
        stream.flush()
        try h2.read()
        XCTAssertTrue(stream.isWritable)
        stream.write(ByteBuffer(repeating: 0x62, count: 60))
        XCTAssertFalse(stream.isWritable)
        XCTAssertEqual(stream.bufferedBytes, 120)
        stream.flush()
        try h2.read()
        XCTAssertEqual(delegate.writability, [false])

        // Back under the limit (the high watermark) is not enough: the stream stays unwritable
        // until the queue has drained to half of it (the low watermark, 50).
        try h2.send(H2.windowUpdate(1, increment: 50))
        var frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map(\.data.count), [50])
        XCTAssertEqual(stream.bufferedBytes, 70)
        XCTAssertFalse(stream.isWritable)
        XCTAssertEqual(delegate.writability, [false])

        try h2.send(H2.windowUpdate(1, increment: 20))
        frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map(\.data.count), [20])
        XCTAssertEqual(stream.bufferedBytes, 50)
        XCTAssertTrue(stream.isWritable)
        XCTAssertEqual(delegate.writability, [false, true])
    }

    func testPumpStopsWhileTheChannelIsNotWritable() throws {
        let h2 = try self.make()
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [])
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/"))
        try h2.read()
        let stream = h2.streams[0]
        h2.channel.isWritable = false
        stream.write(ByteBuffer(string: "held back"))
        stream.flush()
        XCTAssertTrue(try h2.read().isEmpty)
        XCTAssertEqual(stream.bufferedBytes, 9, "nghttp2 has not pulled the bytes")
        h2.channel.isWritable = true
        h2.channel.pipeline.fireChannelWritabilityChanged()
        let frames = try h2.read()
        XCTAssertEqual(frames.map { String(decoding: $0.data, as: UTF8.self) }, ["held back"])
    }

    func testLargeOutputIsWrittenInChunksUntilTheChannelIsFull() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.outputChunkSize = 16 << 10
        let h2 = try self.make(configuration, clientSettings: [(.initialWindowSize, 1 << 20)])
        try h2.send(H2.windowUpdate(0, increment: 1 << 20))
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [])
            stream.write(ByteBuffer(repeating: 0x78, count: 200_000))
            stream.end()
        }
        try h2.send(H2.request(1, path: "/"))
        let frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map(\.data.count).reduce(0, +), 200_000)
        XCTAssertEqual(frames.last?.endStream, true)
    }

    func testClientResetTellsTheDelegateAndLaterWritesAreIgnored() throws {
        let h2 = try self.make()
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [])
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/") + H2.request(3, path: "/"))
        try h2.read()
        try h2.send(H2.rstStream(1, errorCode: 0x8))
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.reset(errorCode: 0x8)])
        XCTAssertEqual(h2.delegate(3)?.closeReasons, [])
        XCTAssertTrue(h2.streams[0].isClosed)
        h2.streams[0].write(ByteBuffer(string: "late"))
        h2.streams[0].flush()
        h2.streams[1].write(ByteBuffer(string: "alive"))
        h2.streams[1].flush()
        let frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map(\.streamID), [3])
        XCTAssertEqual(h2.handler.openStreamCount, 1)
    }

    func testServerResetSendsRstStream() throws {
        let h2 = try self.make()
        try h2.send(H2.request(1, path: "/"))
        try h2.read()
        h2.streams[0].write(ByteBuffer(string: "dropped"))
        h2.streams[0].reset(errorCode: 0x2)
        let frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .rstStream }.map(\.errorCode), [0x2])
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.resetLocally(errorCode: 0x2)])
    }

    func testRequestBodyReleasesTheWindowAsItIsDelivered() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.initialWindowSize = 1000
        let h2 = try self.make(configuration)
        try h2.send(H2.request(1, method: "POST", path: "/upload", endStream: false))
        try h2.read()
        try h2.send(H2.data(1, Array(repeating: 0x41, count: 600)))
        XCTAssertEqual(h2.delegate(1)?.bodies.map(\.count), [600])
        let updates = try h2.read().filter { $0.kind == .windowUpdate && $0.streamID == 1 }
        XCTAssertEqual(updates.map(\.windowIncrement), [600])
        // Past the window the client would be in error; within it all is fine.
        try h2.send(H2.data(1, Array(repeating: 0x42, count: 900), endStream: true))
        XCTAssertEqual(h2.delegate(1)?.bodies.map(\.count), [600, 900])
        XCTAssertEqual(h2.delegate(1)?.ended, true)
        XCTAssertFalse(try h2.read().contains { $0.kind == .goAway })
    }

    func testPausedBodyHoldsTheWindowUntilResumed() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.initialWindowSize = 1000
        let h2 = try self.make(configuration)
        try h2.send(H2.request(1, method: "POST", path: "/upload", endStream: false))
        try h2.read()
        let stream = try XCTUnwrap(h2.streams.first)
        // The body's destination is not taking bytes: no window goes back, so the client can
        // send at most one window more (before, the window was returned at once: no bound).
        stream.pauseBody()
        try h2.send(H2.data(1, Array(repeating: 0x41, count: 600)))
        try h2.send(H2.data(1, Array(repeating: 0x42, count: 400)))
        XCTAssertEqual(h2.delegate(1)?.bodies.map(\.count), [600, 400], "delivered, but held")
        XCTAssertTrue(try h2.read().filter { $0.kind == .windowUpdate && $0.streamID == 1 }.isEmpty)
        stream.resumeBody()
        let updates = try h2.read().filter { $0.kind == .windowUpdate && $0.streamID == 1 }
        XCTAssertEqual(updates.map(\.windowIncrement).reduce(0) { $0 + ($1 ?? 0) }, 1000)
        try h2.send(H2.data(1, Array(repeating: 0x43, count: 10), endStream: true))
        XCTAssertEqual(h2.delegate(1)?.ended, true)
        XCTAssertFalse(try h2.read().contains { $0.kind == .goAway })
    }

    func testConnectionCloseTellsOpenStreams() throws {
        let h2 = try self.make()
        try h2.send(H2.request(1, path: "/") + H2.request(3, path: "/"))
        XCTAssertEqual(h2.streams.count, 2)
        h2.channel.pipeline.fireChannelInactive()
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.connectionClosed])
        XCTAssertEqual(h2.delegate(3)?.closeReasons, [.connectionClosed])
        XCTAssertTrue(h2.streams.allSatisfy(\.isClosed))
        _ = try? h2.channel.finish()
    }

    func testResetBeforeDeliveryIsNeverSeenByTheApplication() throws {
        let h2 = try self.make()
        try h2.send(H2.request(1, path: "/") + H2.rstStream(1) + H2.request(3, path: "/"))
        XCTAssertEqual(h2.streams.map(\.streamID), [3])
    }

    func testRapidResetIsMeasuredAgainstTime() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.maxClientResetsPerSecond = 20
        let h2 = try self.make(configuration)
        // 60 resets at 10 a second (virtual time): fine.
        for i in 0..<60 as Range<UInt32> {
            try h2.send(H2.request(2 * i + 1, path: "/") + H2.rstStream(2 * i + 1))
            h2.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        }
        XCTAssertFalse(try h2.read().contains { $0.kind == .goAway })
        // 21 at once: over the limit.
        var burst: [UInt8] = []
        for i in 60..<81 as Range<UInt32> {
            burst += H2.request(2 * i + 1, path: "/") + H2.rstStream(2 * i + 1)
        }
        try h2.send(burst)
        let goAway = try h2.read().first { $0.kind == .goAway }
        XCTAssertEqual(goAway?.errorCode, 0xb)
        XCTAssertTrue(h2.handler.terminationReason?.contains("rapid reset") ?? false)
    }

    func testGracefulShutdownBySendingTheUserEvent() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.gracefulShutdownPingTimeout = .milliseconds(100)
        let h2 = try self.make(configuration)
        try h2.send(H2.request(1, path: "/"))
        try h2.read()
        try h2.channel.triggerUserOutboundEvent(HTTP2ServerHandler.GracefulShutdown()).wait()
        var frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .goAway }.map(\.lastStreamID), [0x7fff_ffff])
        XCTAssertEqual(frames.filter { $0.kind == .ping }.count, 1)
        h2.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .goAway }.map(\.lastStreamID), [1])
        XCTAssertTrue(h2.channel.isActive, "stream 1 is still open")
        h2.streams[0].sendHead(status: .noContent, headers: [], endStream: true)
        frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .headers }.first?.endStream, true)
        h2.channel.embeddedEventLoop.run()
        XCTAssertFalse(h2.channel.isActive, "the last stream ended: the connection closes")
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.finished])
    }

    func testGracefulShutdownAskedForBeforeTheStartBeginsWithTheSession() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.gracefulShutdownPingTimeout = .milliseconds(100)
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        let handler = HTTP2ServerHandler(configuration: configuration) { _ in }
        try channel.pipeline.syncOperations.addHandler(handler)
        handler.beginGracefulShutdown()
        XCTAssertNil(try channel.readOutbound(as: ByteBuffer.self), "nothing before the start")
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += buffer.readableBytesView }
        let frames = H2.parse(bytes).frames
        XCTAssertEqual(frames.first?.kind, .settings)
        XCTAssertEqual(frames.filter { $0.kind == .goAway }.map(\.lastStreamID), [0x7fff_ffff])
        XCTAssertEqual(frames.filter { $0.kind == .ping }.count, 1)
        XCTAssertEqual(handler.terminationReason, "graceful shutdown")
    }

    func testResponseHeadersAreSanitized() throws {
        let h2 = try self.make()
        h2.onRequest = { stream in
            stream.sendHead(
                status: .ok,
                headers: [
                    ("Content-Type", "text/event-stream"), ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"),
                    ("X-Bad", "a\r\nb"), ("bad name", "x"), ("TE", "gzip"), ("X-Accel-Buffering", "no"),
                ],
                endStream: true
            )
        }
        try h2.send(H2.request(1, path: "/"))
        let head = try XCTUnwrap(try h2.read().first { $0.kind == .headers })
        let fields = try XCTUnwrap(h2.decoder.decode(head.headerBlock))
        XCTAssertEqual(fields.map(\.0), [":status", "content-type", "x-accel-buffering"])
    }
}

final class FrameRateLimiterTests: XCTestCase {
    func testBurstThenRefill() {
        // FrameRateLimiter is internal; its behaviour is covered through the handler here.
        var configuration = HTTP2ServerConfiguration()
        configuration.maxControlFramesPerSecond = 5
        let h2 = try? EmbeddedH2(configuration)
        guard let h2 else { return XCTFail("setup") }
        defer { _ = try? h2.channel.finish(acceptAlreadyClosed: true) }
        // The client's SETTINGS in the handshake used one token; 4 PINGs fit, then time refills.
        try? h2.send(H2.ping(1) + H2.ping(2) + H2.ping(3) + H2.ping(4))
        XCTAssertFalse((try? h2.read())?.contains { $0.kind == .goAway } ?? true)
        h2.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        try? h2.send(H2.ping(5) + H2.ping(6) + H2.ping(7) + H2.ping(8) + H2.ping(9))
        XCTAssertFalse((try? h2.read())?.contains { $0.kind == .goAway } ?? true)
        try? h2.send(H2.ping(10))
        XCTAssertEqual((try? h2.read())?.first { $0.kind == .goAway }?.errorCode, 0xb)
    }
}
