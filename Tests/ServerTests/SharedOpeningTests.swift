import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Upstream
import XCTest

@testable import Server

/// Opening a stream when several instances share a store (`--redis`): the claim comes first, and
/// every order of "claim answered", "client leaves", "origin answers" is played on one
/// `EmbeddedEventLoop` with a store whose answers the test gives by hand.
final class SharedOpeningTests: XCTestCase {
    private var gateway: EmbeddedGateway!
    private var loop: EmbeddedEventLoop { self.gateway.loop }
    private var origins: OriginChannels { self.gateway.origins }
    private var shared: GatewayShared { self.gateway.shared }
    private var loopContext: LoopContext { self.gateway.loopContext }
    private var store: ScriptedStore!

    override func setUp() {
        let store = ScriptedStore()
        self.store = store
        self.gateway = EmbeddedGateway { configuration in
            configuration.sharedGateway = SharedGateway(
                store: store, namer: SharedStreamNamer { Array($0.suffix(16)) }, lease: .seconds(5))
        }
    }

    override func tearDown() {
        self.gateway.shutdown()
    }

    private func client(lastEventID: String? = nil) throws -> EmbeddedChannel {
        let channel = try self.gateway.connectHTTP1()
        let resume = lastEventID.map { "Last-Event-ID: \($0)\r\n" } ?? ""
        try channel.writeInbound(ByteBuffer(string: "GET /events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\(resume)\r\n"))
        self.loop.run()
        return channel
    }

    private func received(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += String(buffer: buffer)
        }
        return text
    }

    private func answer(_ origin: EmbeddedChannel, _ head: String) throws {
        try origin.writeInbound(ByteBuffer(string: head))
        self.loop.run()
    }

    private func position(_ last: UInt64, _ id: String?) -> HistoryPosition {
        HistoryPosition(epoch: "e", lastSequence: last, lastEventID: id)
    }

    func testAFollowerOpensNoOriginConnectionAndServesTheOwnersEvents() throws {
        let client = try self.client()
        XCTAssertEqual(self.origins.count, 0, "nothing opens before the store answers")
        XCTAssertEqual(self.store.history.claims.count, 1)
        self.store.history.answerClaim(.follower(owner: "other", position: self.position(4, "4"),
                                                 originHeaders: [("Access-Control-Allow-Origin", "*")]))
        self.loop.run()
        XCTAssertEqual(self.origins.count, 0, "the owner elsewhere holds the origin connection")
        self.store.history.deliver([EncodedEvent(sequence: 5, id: "5", bytes: ByteBuffer(string: "id: 5\ndata: x\n\n"), receivedAt: .now())])
        self.loop.run()
        let text = try self.received(client)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("Access-Control-Allow-Origin: *"), "the owner's shared headers: \(text)")
        XCTAssertTrue(text.contains("id: 5\ndata: x\n\n"), text)
        XCTAssertEqual(self.store.history.followedAfter, [4])
    }

    func testTheOwnerOpensTheOriginFromTheHistorysLastIDAndTheClientsResumeGoesToTheHistory() throws {
        let client = try self.client(lastEventID: "2")
        self.store.history.answerClaim(.owner(token: "1/me", position: self.position(7, "7")))
        self.loop.run()
        XCTAssertEqual(self.origins.count, 1)
        XCTAssertTrue(self.origins.requests[0].contains("Last-Event-ID: 7\r\n"), self.origins.requests[0])
        try self.answer(self.origins[0], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        XCTAssertEqual(self.store.history.lookups, ["2"], "the client's own id is looked up in the history")
        self.store.history.answerLookup(.hit(epoch: "e", sequence: 2, events: (3...7).map {
            EncodedEvent(sequence: UInt64($0), id: "\($0)", bytes: ByteBuffer(string: "id: \($0)\ndata: h\n\n"), receivedAt: .now())
        }))
        self.loop.run()
        let text = try self.received(client)
        XCTAssertTrue(text.contains("Lifeline-Replay: hit\r\n"), text)
        XCTAssertTrue(text.contains("id: 3\n") && text.contains("id: 7\n"), text)
    }

    func testTheClientLeavesWhileTheClaimIsOutTheOpeningGoesOnForOthers() throws {
        let first = try self.client()
        first.close(promise: nil)
        self.loop.run()
        let second = try self.client()
        XCTAssertEqual(self.store.history.claims.count, 1, "the second waits for the first's opening")
        self.store.history.answerClaim(.owner(token: "1/me", position: self.position(0, nil)))
        self.loop.run()
        try self.answer(self.origins[0], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        try self.origins[0].writeInbound(ByteBuffer(string: "f\r\nid: 1\ndata: a\n\n\r\n"))
        self.loop.run()
        XCTAssertTrue(try self.received(second).contains("id: 1\ndata: a\n\n"))
        second.close(promise: nil)
        self.loop.run()
        self.loop.advanceTime(by: .seconds(31))
        XCTAssertEqual(self.shared.hub.streams.count, 0)
        XCTAssertEqual(self.store.history.released, ["1/me"], "the ended stream gave its lease back")
    }

    func testAPlainAnswerToTheOwnerGivesTheLeaseBackAndReachesTheClient() throws {
        let client = try self.client()
        self.store.history.answerClaim(.owner(token: "1/me", position: self.position(0, nil)))
        self.loop.run()
        try self.answer(self.origins[0], "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
        XCTAssertTrue(try self.received(client).hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        XCTAssertEqual(self.store.history.released, ["1/me"])
        XCTAssertEqual(self.shared.hub.streams.count, 0)
    }

    func testStoreUnavailableTheInstanceReadsTheOriginWithTheClientsID() throws {
        let client = try self.client(lastEventID: "9")
        self.store.history.answerClaim(.unavailable("down"))
        self.loop.run()
        XCTAssertEqual(self.origins.count, 1)
        XCTAssertTrue(self.origins.requests[0].contains("Last-Event-ID: 9\r\n"), self.origins.requests[0])
        try self.answer(self.origins[0], "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        XCTAssertEqual(self.origins.count, 1, "the opener's connection is the stream's")
        XCTAssertEqual(self.shared.hub.streams.first?.status().role, .fallback)
        XCTAssertTrue(try self.received(client).contains("Lifeline-Replay: miss\r\n"), "the origin replays; the buffer could not")
    }
}

/// A store whose every answer the test gives by hand.
final class ScriptedStore: SharedHistoryStore, @unchecked Sendable {
    let history = ScriptedHistory()
    let instanceName = "me"
    var isReachable: Bool { true }
    func history(named name: SharedStreamName, on eventLoop: EventLoop) -> StreamHistory { self.history }
}

final class ScriptedHistory: StreamHistory, HistoryFollowing {
    private(set) var claims: [(HistoryClaim) -> Void] = []
    private(set) var lookups: [String] = []
    private var lookupAnswers: [(HistoryLookup) -> Void] = []
    private(set) var released: [String] = []
    private(set) var followedAfter: [UInt64] = []
    private weak var follower: HistoryFollowerDelegate?

    func answerClaim(_ claim: HistoryClaim) { self.claims.removeFirst()(claim) }
    func answerLookup(_ lookup: HistoryLookup) { self.lookupAnswers.removeFirst()(lookup) }
    func deliver(_ events: [EncodedEvent]) { self.follower?.historyReceived(events) }

    func claim(startFresh: Bool, nextSequence: UInt64, completion: @escaping (HistoryClaim) -> Void) {
        self.claims.append(completion)
    }
    func renew(token: String, completion: @escaping (Bool?) -> Void) { completion(true) }
    func append(_ events: [EncodedEvent], token: String, epoch: String, originHeaders: [(String, String)]?,
                completion: @escaping (HistoryAppend) -> Void) { completion(.stored) }
    func follow(after sequence: UInt64, epoch: String, delegate: HistoryFollowerDelegate) -> HistoryFollowing {
        self.followedAfter.append(sequence)
        self.follower = delegate
        return self
    }
    func events(after lastEventID: String, completion: @escaping (HistoryLookup) -> Void) {
        self.lookups.append(lastEventID)
        self.lookupAnswers.append(completion)
    }
    func release(token: String) { self.released.append(token) }
    func stop() { self.follower = nil }
}
