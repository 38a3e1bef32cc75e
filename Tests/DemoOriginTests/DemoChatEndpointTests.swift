import Foundation
import LifelineTestSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import XCTest

@testable import DemoOrigin

/// `POST /demo/chat` of the demo origin: on an `EmbeddedChannel` with the standard pacing in
/// virtual time, then on loopback sockets with a fast one.
final class DemoChatEndpointTests: XCTestCase {
    // MARK: On an EmbeddedChannel

    /// A connection's handler with HTTP parts going in and out directly (no codec).
    private struct Connection {
        let channel = EmbeddedChannel()
        let controls = DemoControls()
        var loop: EmbeddedEventLoop { self.channel.embeddedEventLoop }

        init() throws {
            let broadcaster = DemoTickBroadcaster(eventLoop: self.channel.embeddedEventLoop, tickMillis: 1000)
            try self.channel.pipeline.syncOperations.addHandler(
                DemoOriginHandler(configuration: DemoOriginConfiguration(), broadcaster: broadcaster, controls: self.controls)
            )
            try self.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func send(_ method: HTTPMethod, _ uri: String, body: [String] = [], headers: [(String, String)] = []) throws {
            let head = HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
            try self.channel.writeInbound(HTTPServerRequestPart.head(head))
            for part in body {
                try self.channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: part)))
            }
            try self.channel.writeInbound(HTTPServerRequestPart.end(nil))
        }

        var chats: DemoControls.ChatCounts { self.controls.chats.withLockedValue { $0 } }
    }

    /// What came out of a connection so far.
    private struct Response {
        var head: HTTPResponseHead?
        var body = ""
        var ended = false

        /// The complete events of the body, each with its blank line.
        var events: [String] {
            var events = self.body.components(separatedBy: "\n\n").dropLast().map { $0 + "\n\n" }
            events.removeAll { $0.hasPrefix(":") }
            return events
        }

        /// Reads what the channel wrote since the last call; returns whether there was anything.
        @discardableResult
        mutating func read(from channel: EmbeddedChannel) throws -> Bool {
            var any = false
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                any = true
                switch part {
                case .head(let head):
                    XCTAssertNil(self.head, "a second head")
                    self.head = head
                case .body(.byteBuffer(let buffer)):
                    XCTAssertFalse(self.ended, "a body part after the end")
                    self.body += String(buffer: buffer)
                case .body(.fileRegion):
                    XCTFail("a file region")
                case .end:
                    self.ended = true
                }
            }
            return any
        }
    }

    func testAnswerStreamsTheTokensInOrderWithThePauseThenDoneAndCountsThePost() throws {
        let connection = try Connection()
        let loop = connection.loop
        let start = loop.now
        try connection.send(
            .POST, "/demo/chat", body: [#"{"prompt":"#, #""why?"}"#], headers: [("Content-Type", "application/json")]
        )
        var response = Response()
        try response.read(from: connection.channel)
        XCTAssertEqual(response.head?.status, .ok)
        XCTAssertEqual(response.head?.headers.first(name: "Content-Type"), "text/event-stream")
        XCTAssertEqual(response.head?.headers.first(name: "Cache-Control"), "no-cache")
        XCTAssertNil(response.head?.headers.first(name: "Content-Length"))
        XCTAssertEqual(connection.chats.requests, 1)
        XCTAssertEqual(connection.chats.open, 1)

        // 10 ms steps of virtual time: when each event arrived.
        var arrivals: [TimeAmount] = []
        while !response.ended, loop.now - start < .seconds(60) {
            loop.advanceTime(by: .milliseconds(10))
            try response.read(from: connection.channel)
            arrivals += Array(repeating: loop.now - start, count: response.events.count - arrivals.count)
        }
        XCTAssertTrue(response.ended)
        let events = response.events
        XCTAssertEqual(events.last, "data: [DONE]\n\n")
        XCTAssertEqual(try events.dropLast().map(DemoChatTests.content(ofEvent:)), DemoChat.tokens)
        XCTAssertEqual(events.joined(), response.body, "nothing but the events: no ids, no comments")
        XCTAssertEqual(arrivals.last, DemoChat.Pacing.standard.total)

        // The one long silence is the thinking pause, before the second paragraph.
        let gaps = zip(arrivals.dropFirst(), arrivals).map { $0 - $1 }
        let longest = gaps.indices.max { gaps[$0] < gaps[$1] }!
        XCTAssertEqual(longest + 1, DemoChat.pauseBefore)
        XCTAssertEqual(gaps[longest], DemoChat.Pacing.standard.thinking)
        XCTAssertTrue(gaps.enumerated().allSatisfy { $0.offset == longest || $0.element <= .milliseconds(100) })
        XCTAssertEqual(connection.chats.requests, 1)
        XCTAssertEqual(connection.chats.open, 0)

        // The answer ended: the same connection takes the next request.
        try connection.send(.GET, "/demo/stats")
        var stats = Response()
        try stats.read(from: connection.channel)
        XCTAssertEqual(stats.head?.status, .ok)
        XCTAssertTrue(stats.body.contains(#""chatRequests":1,"openChats":0}"#), stats.body)
        XCTAssertTrue(connection.channel.isActive)
        _ = try connection.channel.finish()
    }

    func testClosingTheConnectionMidAnswerStopsIt() throws {
        let connection = try Connection()
        try connection.send(.POST, "/demo/chat", body: ["hi"])
        var response = Response()
        connection.loop.advanceTime(by: .seconds(2))
        try response.read(from: connection.channel)
        XCTAssertGreaterThan(response.events.count, 5)
        XCTAssertEqual(connection.chats.open, 1)

        try connection.channel.close().wait()
        XCTAssertEqual(connection.chats.open, 0, "the answer stopped with the connection")
        connection.loop.advanceTime(by: .seconds(60))
        XCTAssertFalse(try response.read(from: connection.channel), "nothing after the close")
        XCTAssertFalse(response.ended)
        XCTAssertEqual(connection.chats.requests, 1)
    }

    func testPromptsOver16KiBAreRefusedWith413() throws {
        // Exactly the limit, in two parts: answered.
        let fits = try Connection()
        let half = String(repeating: "a", count: DemoChat.maxPromptBytes / 2)
        try fits.send(.POST, "/demo/chat", body: [half, half])
        var answered = Response()
        try answered.read(from: fits.channel)
        XCTAssertEqual(answered.head?.status, .ok)
        try fits.channel.close().wait()

        // One byte more: the rest is read and dropped, then 413 and the connection closes.
        let over = try Connection()
        try over.send(.POST, "/demo/chat", body: [half, half, "a", String(repeating: "b", count: 100_000)])
        var refused = Response()
        try refused.read(from: over.channel)
        XCTAssertEqual(refused.head?.status, .payloadTooLarge)
        XCTAssertEqual(refused.head?.headers.first(name: "Connection"), "close")
        XCTAssertTrue(refused.ended)
        XCTAssertFalse(over.channel.isActive)
        XCTAssertEqual(over.chats.requests, 1, "a refused POST counts too: the origin received it")
        XCTAssertEqual(over.chats.open, 0)
        over.loop.advanceTime(by: .seconds(60))
        XCTAssertFalse(try refused.read(from: over.channel))
    }

    func testOtherMethodsGet405() throws {
        let connection = try Connection()
        try connection.send(.GET, "/demo/chat")
        var response = Response()
        try response.read(from: connection.channel)
        XCTAssertEqual(response.head?.status, .methodNotAllowed)
        XCTAssertEqual(response.head?.headers.first(name: "Allow"), "POST")
        XCTAssertEqual(connection.chats.requests, 0)
        _ = try connection.channel.finish()
    }

    // MARK: On loopback sockets

    private static let fast = DemoChat.Pacing(
        firstToken: .milliseconds(10), betweenTokens: .milliseconds(2), thinking: .milliseconds(200)
    )

    private func withOrigin(pacing: DemoChat.Pacing, _ body: (DemoOriginServer, EventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = DemoOriginConfiguration(dropEvery: nil)
        configuration.chatPacing = pacing
        let origin = try await DemoOriginServer.start(host: "127.0.0.1", port: 0, configuration: configuration, group: group)
        do {
            try await body(origin, group)
        } catch {
            try? await origin.stop()
            try? await group.shutdownGracefully()
            throw error
        }
        try await origin.stop()
        try await group.shutdownGracefully()
    }

    private static func stats(of origin: DemoOriginServer, group: EventLoopGroup) async throws -> [String: Any] {
        let client = try await SSETestClient.connect(port: origin.port, path: "/demo/stats", group: group)
        try await client.waitForClose()
        let object = try JSONSerialization.jsonObject(with: Data(client.body.utf8))
        return try XCTUnwrap(object as? [String: Any], client.body)
    }

    func testAnswerOverALoopbackSocket() async throws {
        try await self.withOrigin(pacing: Self.fast) { origin, group in
            let page = try await SSETestClient.connect(port: origin.port, path: "/", group: group)
            try await page.waitForClose()
            XCTAssertTrue(page.body.contains("lifelineFetchEvents(\"/demo/chat\""), "the page has the chat panel")

            let client = try await SSETestClient.connect(
                port: origin.port, path: "/demo/chat", headers: [("Content-Type", "text/plain")], group: group,
                method: .POST, body: "Why do long answers die behind load balancers?"
            )
            try await client.waitForClose()
            XCTAssertTrue(client.endedCleanly, client.report())
            XCTAssertEqual(client.head?.headers.first(name: "Transfer-Encoding"), "chunked")
            let events = client.events
            XCTAssertEqual(events.map(\.id), Array(repeating: nil, count: events.count), "no ids")
            XCTAssertEqual(events.last?.data, "[DONE]")
            let contents = try events.dropLast().map { try DemoChatTests.content(ofEvent: "data: \($0.data)\n\n") }
            XCTAssertEqual(contents.joined(), DemoChat.answer)
            XCTAssertEqual(contents, DemoChat.tokens)
            XCTAssertEqual(client.comments, [])

            let stats = try await Self.stats(of: origin, group: group)
            XCTAssertEqual(stats["chatRequests"] as? Int, 1, "\(stats)")
            XCTAssertEqual(stats["openChats"] as? Int, 0, "\(stats)")
            XCTAssertNotNil(stats["streamRequests"] as? [String: Any], "the older figures stay")
        }
    }

    func testAClientLeavingMidAnswerStopsItAndA413ClosesTheConnection() async throws {
        let slow = DemoChat.Pacing(firstToken: .milliseconds(10), betweenTokens: .milliseconds(50), thinking: .seconds(5))
        try await self.withOrigin(pacing: slow) { origin, group in
            let leaving = try await SSETestClient.connect(
                port: origin.port, path: "/demo/chat", group: group, method: .POST, body: "hi"
            )
            try await leaving.waitForEvents(count: 3)
            let answering = try await Self.stats(of: origin, group: group)
            XCTAssertEqual(answering["openChats"] as? Int, 1, "\(answering)")
            await leaving.close()
            try await eventually { origin.openConnectionCount == 0 }
            let left = try await Self.stats(of: origin, group: group)
            XCTAssertEqual(left["openChats"] as? Int, 0, "the answer stopped with its connection: \(left)")

            let refused = try await SSETestClient.connect(
                port: origin.port, path: "/demo/chat", group: group, method: .POST,
                body: String(repeating: "x", count: DemoChat.maxPromptBytes + 1)
            )
            try await refused.waitForClose()
            XCTAssertEqual(refused.head?.status, .payloadTooLarge, refused.report())
            XCTAssertTrue(refused.endedCleanly, refused.report())
            XCTAssertNil(refused.error, refused.report())

            let stats = try await Self.stats(of: origin, group: group)
            XCTAssertEqual(stats["chatRequests"] as? Int, 2, "\(stats)")
            XCTAssertEqual(stats["openChats"] as? Int, 0, "\(stats)")
        }
    }

}
