import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import Server

/// An HTTP/1.1 connection's handler and its exchange hold each other strongly while the exchange
/// runs (the exchange lets go of its responder when it finishes; the handler drops the exchange
/// when the response is over or the connection goes), and the head timer holds the handler while
/// armed: whichever way a connection ends, its handler is freed with it.
final class ClientLifetimeTests: XCTestCase {
    private var gateway: EmbeddedGateway!
    private var loop: EmbeddedEventLoop { self.gateway.loop }
    private var origins: OriginChannels { self.gateway.origins }
    private var shared: GatewayShared { self.gateway.shared }
    private var loopContext: LoopContext { self.gateway.loopContext }

    override func setUp() {
        self.gateway = EmbeddedGateway { configuration in
            configuration.heartbeat = .seconds(15)
        }
    }

    override func tearDown() {
        self.gateway.shutdown()
    }

    /// Plays `script` on a new client connection and returns its handler, weakly.
    private func handlerAfter(_ script: (EmbeddedChannel) throws -> Void) throws -> HTTP1ServerHandler? {
        weak var weakHandler: HTTP1ServerHandler?
        try {
            let channel = try self.gateway.connectHTTP1 { weakHandler = $0 }
            try script(channel)
            self.loop.run()
            while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        }()
        return weakHandler
    }

    private func send(_ channel: EmbeddedChannel, _ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
        self.loop.run()
    }

    private func eventStreamRequest() -> String {
        "GET /events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n"
    }

    private func answerEventStream(_ origin: EmbeddedChannel) throws {
        try origin.writeInbound(ByteBuffer(
            string: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        self.loop.run()
    }

    func testAStreamingClientThatLeavesIsFreed() throws {
        let handler = try self.handlerAfter { channel in
            try self.send(channel, self.eventStreamRequest())
            try self.answerEventStream(self.origins[0])
            XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1)
            try channel.close().wait()
        }
        XCTAssertNil(handler)
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 0)
    }

    func testAClientWhoseStreamEndsIsFreed() throws {
        let handler = try self.handlerAfter { channel in
            try self.send(channel, self.eventStreamRequest())
            try self.answerEventStream(self.origins[0])
            for stream in self.shared.hub.streams { stream.shutdown() }
            self.loop.run()
            XCTAssertFalse(channel.isActive, "a streaming-only connection closes when its stream ends")
        }
        XCTAssertNil(handler)
    }

    func testAClientThatLeavesWhileItsStreamOpensIsFreed() throws {
        let handler = try self.handlerAfter { channel in
            try self.send(channel, self.eventStreamRequest())
            try channel.close().wait()
        }
        XCTAssertNil(handler)
        try self.answerEventStream(self.origins[0])
    }

    func testAProxiedResponseThenAClosedConnectionIsFreed() throws {
        let handler = try self.handlerAfter { channel in
            try self.send(channel, "GET /page HTTP/1.1\r\nHost: gw\r\n\r\n")
            try self.origins[0].writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            self.loop.run()
            XCTAssertTrue(channel.isActive, "kept alive for the next request")
            try channel.close().wait()
        }
        XCTAssertNil(handler)
    }

    func testAnIdleKeepAliveConnectionClosedByItsTimerIsFreed() throws {
        let handler = try self.handlerAfter { channel in
            try self.send(channel, "GET /_lifeline/client.js HTTP/1.1\r\nHost: gw\r\n\r\n")
            self.loop.advanceTime(by: self.shared.configuration.requestHeadTimeout)
            XCTAssertFalse(channel.isActive)
        }
        XCTAssertNil(handler)
    }
}
