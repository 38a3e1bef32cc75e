import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import Server

/// `--request-head-timeout` over HTTP/1.1 on virtual time: the loop's `idleTimers` (one scheduled
/// task per loop) refuse a client that does not finish its head in time (408, slowloris), close
/// an idle keep-alive connection, and leave alone a client that sends its request in time.
final class HeadTimerTests: XCTestCase {
    private var gateway: EmbeddedGateway!
    private var loop: EmbeddedEventLoop { self.gateway.loop }
    private var origins: OriginChannels { self.gateway.origins }
    private var shared: GatewayShared { self.gateway.shared }
    private var loopContext: LoopContext { self.gateway.loopContext }

    override func setUp() {
        self.gateway = EmbeddedGateway(route: "/events=http://origin.test:3000/") { configuration in
            configuration.requestHeadTimeout = .seconds(10)
        }
    }

    override func tearDown() {
        self.gateway.shutdown()
    }

    private func connect() throws -> EmbeddedChannel {
        try self.gateway.connectHTTP1()
    }

    private func send(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        self.loop.run()
    }

    private func received(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    private func advance(seconds: Int64) {
        self.loop.advanceTime(by: .seconds(seconds))
    }

    func testAHeadNotFinishedInTimeIsRefusedWith408AtTheTimeout() throws {
        let channel = try self.connect()
        try self.send(channel, "GET /events HTTP/1.1\r\nHost: gw\r\n")
        self.advance(seconds: 9)
        try self.send(channel, "Accept: text/event-stream\r\n")  // still not a whole head
        XCTAssertTrue(channel.isActive, "bytes do not move the timer, but it has not run out")
        XCTAssertEqual(try self.received(channel), "")
        self.advance(seconds: 1)
        XCTAssertTrue(try self.received(channel).hasPrefix("HTTP/1.1 408 "))
        XCTAssertFalse(channel.isActive)
        XCTAssertEqual(self.loopContext.counters.values.refused[RequestRefusal.headTimeout.reason], 1)
        XCTAssertEqual(self.loopContext.idleTimers.count, 0)
        XCTAssertEqual(self.loopContext.connectionCount, 0)
    }

    func testAClientThatSendsNothingIsRefusedAtTheTimeoutAndOthersAtTheirs() throws {
        let first = try self.connect()
        self.advance(seconds: 4)
        let second = try self.connect()
        XCTAssertEqual(self.loopContext.idleTimers.count, 2)
        self.advance(seconds: 6)
        XCTAssertTrue(try self.received(first).hasPrefix("HTTP/1.1 408 "))
        XCTAssertFalse(first.isActive)
        XCTAssertTrue(second.isActive, "its own timeout is 4 s later")
        XCTAssertEqual(try self.received(second), "")
        self.advance(seconds: 4)
        XCTAssertTrue(try self.received(second).hasPrefix("HTTP/1.1 408 "))
        XCTAssertFalse(second.isActive)
        XCTAssertEqual(self.loopContext.counters.values.refused[RequestRefusal.headTimeout.reason], 2)
    }

    func testAHeadInTimeIsServedAndTheIdleKeepAliveConnectionClosesAtItsTimeout() throws {
        let channel = try self.connect()
        self.advance(seconds: 9)
        try self.send(channel, "GET /nowhere HTTP/1.1\r\nHost: gw\r\n\r\n")
        XCTAssertTrue(try self.received(channel).hasPrefix("HTTP/1.1 404 "))
        XCTAssertTrue(channel.isActive, "a 404 keeps the connection")
        self.advance(seconds: 9)
        XCTAssertTrue(channel.isActive, "not refused at the first timeout: the head came in time")
        XCTAssertEqual(try self.received(channel), "")
        self.advance(seconds: 1)
        XCTAssertFalse(channel.isActive, "idle for the timeout after its response")
        XCTAssertEqual(try self.received(channel), "", "an idle keep-alive connection closes without a response")
        XCTAssertEqual(self.loopContext.counters.values.refused[RequestRefusal.headTimeout.reason], 0)
        XCTAssertEqual(self.loopContext.idleTimers.count, 0)
    }

    func testAStreamingClientHasNoTimerAndOutlivesTheTimeout() throws {
        let channel = try self.connect()
        try self.send(channel, "GET /events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n")
        try self.origins[0].writeInbound(ByteBuffer(
            string: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        self.loop.run()
        XCTAssertTrue(try self.received(channel).hasPrefix("HTTP/1.1 200 OK"))
        XCTAssertEqual(self.loopContext.idleTimers.count, 0, "the request took the connection's timer off the loop's list")
        self.advance(seconds: 60)
        XCTAssertTrue(channel.isActive)
    }

    func testAClosedConnectionLeavesTheLoopsTimerList() throws {
        let channel = try self.connect()
        XCTAssertEqual(self.loopContext.idleTimers.count, 1)
        try channel.close().wait()
        self.loop.run()
        XCTAssertEqual(self.loopContext.idleTimers.count, 0)
        self.advance(seconds: 10)
        XCTAssertEqual(try self.received(channel), "")
        XCTAssertEqual(self.loopContext.counters.values.refused[RequestRefusal.headTimeout.reason], 0)
    }

    /// The timer holds the handler strongly while armed; once it fired or was cancelled the
    /// handler goes with its channel.
    func testTheTimerDoesNotKeepAClosedConnectionsHandler() throws {
        weak var weakHandler: HTTP1ServerHandler?
        try {
            let channel = try self.connect()
            weakHandler = try channel.pipeline.syncOperations.handler(type: HTTP1ServerHandler.self)
            try channel.close().wait()
            self.loop.run()
        }()
        XCTAssertNil(weakHandler)
    }

    // MARK: Before the first bytes (the plaintext listener's preface sniffer)

    func testAPlaintextClientThatSendsNothingIsRefusedFromTheLoopsTimerList() throws {
        let channel = try self.gateway.connectPlaintext()
        XCTAssertEqual(self.loopContext.idleTimers.count, 1, "an entry in the loop's list, not a task of its own")
        self.advance(seconds: 9)
        XCTAssertTrue(channel.isActive)
        XCTAssertEqual(try self.received(channel), "")
        self.advance(seconds: 1)
        XCTAssertTrue(try self.received(channel).hasPrefix("HTTP/1.1 408 "))
        XCTAssertFalse(channel.isActive)
        XCTAssertEqual(self.loopContext.idleTimers.count, 0)
    }

    func testAPlaintextClientsFirstBytesTakeTheSniffersTimerOffTheList() throws {
        let channel = try self.gateway.connectPlaintext()
        self.advance(seconds: 5)
        try self.send(channel, "GET /events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n")
        try self.origins[0].writeInbound(ByteBuffer(
            string: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        self.loop.run()
        XCTAssertTrue(try self.received(channel).hasPrefix("HTTP/1.1 200 OK"))
        XCTAssertEqual(self.loopContext.idleTimers.count, 0, "neither the sniffer's entry nor the front end's is left")
        self.advance(seconds: 60)
        XCTAssertTrue(channel.isActive, "the sniffer's timeout does not fire after it stepped aside")
        XCTAssertFalse(try self.received(channel).contains("408"))
    }

    func testAPlaintextClientThatLeavesBeforeItsFirstBytesLeavesTheList() throws {
        weak var weakChannel: EmbeddedChannel?
        try {
            let channel = try self.gateway.connectPlaintext()
            weakChannel = channel
            XCTAssertEqual(self.loopContext.idleTimers.count, 1)
            try channel.close().wait()
            self.loop.run()
        }()
        XCTAssertEqual(self.loopContext.idleTimers.count, 0)
        XCTAssertNil(weakChannel, "the entry let go of the connection")
    }
}
