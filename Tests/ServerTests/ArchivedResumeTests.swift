import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import Server

/// A resume whose token this instance does not hold asks the store of kept generations
/// (`--redis`); every order of "store answers" and "client leaves" on one `EmbeddedEventLoop`,
/// with an archive whose answers the test gives by hand.
final class ArchivedResumeTests: XCTestCase {
    private var gateway: EmbeddedGateway!
    private var loop: EmbeddedEventLoop { self.gateway.loop }
    private var archive: ScriptedArchive!
    private var shared: GatewayShared { self.gateway.shared }
    private var loopContext: LoopContext { self.gateway.loopContext }
    private let token = ResumeToken.random()

    override func setUp() {
        let archive = ScriptedArchive()
        self.archive = archive
        self.gateway = EmbeddedGateway { configuration in
            configuration.sharedGateway = SharedGateway(
                store: ScriptedStore(), namer: SharedStreamNamer { Array($0.suffix(16)) }, lease: .seconds(5),
                archive: archive)
        }
    }

    override func tearDown() {
        self.gateway.shutdown()
    }

    private func resume(from count: Int) throws -> EmbeddedChannel {
        let channel = try self.gateway.connectHTTP1()
        try channel.writeInbound(ByteBuffer(string: "GET /_lifeline/resume/\(self.token.value) HTTP/1.1\r\nHost: gw\r\n"
            + "Authorization: Bearer k\r\nLifeline-Resume-From: \(count)\r\n\r\n"))
        self.loop.run()
        return channel
    }

    private func received(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    private func generation(end: StreamEndReason? = nil) -> ArchivedGeneration {
        let events = (1...3).map { n in
            EncodedEvent(sequence: UInt64(n), id: nil, bytes: ByteBuffer(string: "data: t\(n)\n\n"), receivedAt: self.loop.now)
        }
        return ArchivedGeneration(
            facts: .init(caller: .init(authorization: "Bearer k", cookie: nil), responseHeaders: [("x-request-id", "r1")],
                         displayPath: "/v1/chat", routePrefix: "/", method: "POST"),
            events: events, end: end, keptFor: .seconds(60))
    }

    func testAClientThatLeavesWhileTheStoreIsAskedLeavesNothingBehind() throws {
        let client = try self.resume(from: 1)
        XCTAssertEqual(self.archive.opens.count, 1)
        client.close(promise: nil)
        self.loop.run()
        self.archive.answer(.found(self.generation()))
        self.loop.run()
        XCTAssertEqual(self.shared.hub.streams.count, 0, "no copy made for a client that is gone")
        XCTAssertEqual(self.shared.generations.count, 0)
        XCTAssertEqual(self.archive.follows, 0)
    }

    func testAFoundGenerationServesTheResumeAndLaterResumesHereJoinItsCopy() throws {
        let first = try self.resume(from: 1)
        self.archive.answer(.found(self.generation()))
        self.loop.run()
        let text = try self.received(first)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("x-request-id: r1\r\n"), "the origin's headers, as kept: \(text)")
        XCTAssertTrue(text.contains("data: t2\n\n") && text.contains("data: t3\n\n") && !text.contains("data: t1\n"), text)
        XCTAssertEqual(self.archive.follows, 1, "a running generation is followed")
        let second = try self.resume(from: 2)
        XCTAssertEqual(self.archive.opens.count, 0, "answered from this instance's copy")
        XCTAssertTrue(try self.received(second).contains("data: t3\n\n"))
    }

    func testAnUnknownTokenIs404AndAStoreThatDoesNotAnswerIs503() throws {
        let unknown = try self.resume(from: 0)
        self.archive.answer(.notFound)
        self.loop.run()
        XCTAssertTrue(try self.received(unknown).hasPrefix("HTTP/1.1 404"))
        let unreachable = try self.resume(from: 0)
        self.archive.answer(.unavailable("down"))
        self.loop.run()
        XCTAssertTrue(try self.received(unreachable).hasPrefix("HTTP/1.1 503"))
        XCTAssertEqual(self.shared.hub.streams.count, 0)
    }
}

final class ScriptedArchive: GenerationArchive, @unchecked Sendable {
    private(set) var opens: [(ArchivedGenerationLookup) -> Void] = []
    private(set) var follows = 0

    func answer(_ lookup: ArchivedGenerationLookup) { self.opens.removeFirst()(lookup) }

    func record(_ token: ResumeToken, _ facts: ArchivedGenerationFacts, on eventLoop: EventLoop) -> GenerationRecording {
        NoRecording()
    }

    func open(_ token: ResumeToken, caller: CallerHeaders, on eventLoop: EventLoop,
              completion: @escaping (ArchivedGenerationLookup) -> Void) {
        self.opens.append(completion)
    }

    func follow(_ token: ResumeToken, after sequence: UInt64, on eventLoop: EventLoop,
                delegate: HistoryFollowerDelegate) -> HistoryFollowing {
        self.follows += 1
        return NoFollowing()
    }

    private final class NoRecording: GenerationRecording {
        func append(_ events: [EncodedEvent], keptFrom: UInt64) {}
        func finish(_ reason: StreamEndReason) {}
    }

    private final class NoFollowing: HistoryFollowing {
        func stop() {}
    }
}
