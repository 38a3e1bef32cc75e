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
        try self.objectsAfter { channel, _ in try script(channel) }.handler
    }

    /// Objects held weakly (a tuple of optionals would hold them).
    final class Freed {
        weak var handler: HTTP1ServerHandler?
        weak var exchange: ClientExchange?
    }

    /// Plays `script` on a new client connection and returns its handler and the exchange that
    /// was current when the script called its second argument, both weakly.
    private func objectsAfter(_ script: (EmbeddedChannel, _ noteExchange: () -> Void) throws -> Void) throws -> Freed {
        let freed = Freed()
        try {
            let channel = try self.gateway.connectHTTP1 { freed.handler = $0 }
            try script(channel) {
                freed.exchange = freed.handler?.exchange
                XCTAssertNotNil(freed.exchange, "the connection has an exchange")
            }
            self.loop.run()
            while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        }()
        return freed
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

    // A stream holds its subscribers (exchanges) strongly until they leave, and an opener or
    // the hub's callback its client until it leaves or hears back: each way out must let go.

    func testAStreamingClientThatLeavesIsFreed() throws {
        let freed = try self.objectsAfter { channel, noteExchange in
            try self.send(channel, self.eventStreamRequest())
            try self.answerEventStream(self.origins[0])
            noteExchange()
            XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1)
            try channel.close().wait()
        }
        XCTAssertNil(freed.handler)
        XCTAssertNil(freed.exchange, "the stream let go of its subscriber")
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 0)
    }

    func testAClientWhoseStreamEndsIsFreed() throws {
        let freed = try self.objectsAfter { channel, noteExchange in
            try self.send(channel, self.eventStreamRequest())
            try self.answerEventStream(self.origins[0])
            noteExchange()
            for stream in self.shared.hub.streams { stream.shutdown() }
            self.loop.run()
            XCTAssertFalse(channel.isActive, "a streaming-only connection closes when its stream ends")
        }
        XCTAssertNil(freed.handler)
        XCTAssertNil(freed.exchange)
    }

    func testAClientThatLeavesWhileItsStreamOpensIsFreed() throws {
        let freed = try self.objectsAfter { channel, noteExchange in
            try self.send(channel, self.eventStreamRequest())
            noteExchange()
            try channel.close().wait()
        }
        XCTAssertNil(freed.handler)
        XCTAssertNil(freed.exchange, "the opener let go of its client")
        try self.answerEventStream(self.origins[0])
    }

    func testAClientThatLeavesWhileWaitingForAnotherOpeningIsFreedWhenTheOpeningEnds() throws {
        let opener = try self.gateway.connectHTTP1()
        try self.send(opener, self.eventStreamRequest())
        let freed = try self.objectsAfter { channel, noteExchange in
            try self.send(channel, self.eventStreamRequest())
            noteExchange()
            try channel.close().wait()
        }
        XCTAssertNil(freed.handler)
        XCTAssertNotNil(freed.exchange, "held by the hub's callback while the opening runs")
        try self.answerEventStream(self.origins[0])
        XCTAssertNil(freed.exchange, "the hub's callback let go of it once the opening ended")
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1, "only the opener joined")
        try opener.close().wait()
        self.loop.run()
    }

    func testAClientThatLeavesBeforeItsAttachRunsIsFreed() throws {
        let first = try self.gateway.connectHTTP1()
        try self.send(first, self.eventStreamRequest())
        try self.answerEventStream(self.origins[0])
        let freed = try self.objectsAfter { channel, noteExchange in
            // The attach is a task of its own: the client goes before it runs.
            try channel.writeInbound(ByteBuffer(string: self.eventStreamRequest()))
            noteExchange()
            try channel.close().wait()
        }
        XCTAssertNil(freed.handler)
        XCTAssertNil(freed.exchange, "its attach found it gone and let go")
        XCTAssertEqual(self.shared.hub.streams.first?.subscriberCount, 1, "counted out again")
        try first.close().wait()
        self.loop.run()
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
