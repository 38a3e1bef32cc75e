import LifelineCore
import Logging
import NIOCore
import NIOPosix
import Redis
import RedisTestSupport
import XCTest

@testable import RedisStore

/// One stream's history against a real `redis-server`: the scripts' rules (lease, fencing, gaps,
/// bounds, epochs, lookups), script loading, and a follower's blocking reads.
final class RedisStreamHistoryTests: XCTestCase {
    var server: RedisServerProcess!
    private var group: MultiThreadedEventLoopGroup!
    var loop: EventLoop!

    override func setUpWithError() throws {
        do {
            self.server = try RedisServerProcess()
        } catch RedisServerProcess.Failure.notInstalled {
            throw XCTSkip("redis-server is not installed")
        }
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = self.group.next()
    }

    override func tearDownWithError() throws {
        self.server?.stop()
        try self.group?.syncShutdownGracefully()
    }

    func store(instance: String, maxEvents: Int = 1000, maxAge: TimeAmount = .minutes(10), lease: TimeAmount = .seconds(5)) -> RedisHistoryStore {
        let endpoint = RedisEndpoint(topology: .standalone(self.server.address), commandTimeout: .seconds(2))
        return RedisHistoryStore(
            configuration: .init(endpoint: endpoint, lease: lease, maxEvents: maxEvents, maxAge: maxAge),
            instanceName: instance, eventLoops: [self.loop], logger: Logger(label: "test"))
    }

    /// Runs `body` on the loop and waits for the value it hands to its completion. The test
    /// thread only waits meanwhile, so what `body` captures is used on the loop alone.
    @discardableResult
    func onLoop<T>(_ body: @escaping (@escaping (T) -> Void) -> Void) throws -> T {
        let work = Unchecked(body)
        let promise = self.loop.makePromise(of: Unchecked<T>.self)
        self.loop.execute { work.value { promise.succeed(Unchecked($0)) } }
        return try promise.futureResult.wait().value
    }

    /// `body`'s value, computed on the loop.
    func onLoop<T>(_ body: @escaping () -> T) throws -> T {
        try self.onLoop { done in done(body()) }
    }

    private func history(_ store: RedisHistoryStore, _ name: String = "s1") throws -> StreamHistory {
        let loop = self.loop!
        return try self.onLoop { store.history(named: SharedStreamName(name), on: loop) }
    }

    private func claim(_ history: StreamHistory, fresh: Bool = false, next: UInt64 = 1) throws -> HistoryClaim {
        try self.onLoop { done in history.claim(startFresh: fresh, nextSequence: next) { done($0) } }
    }

    private func append(_ history: StreamHistory, _ events: [EncodedEvent], token: String, epoch: String) throws -> HistoryAppend {
        try self.onLoop { done in history.append(events, token: token, epoch: epoch, originHeaders: [("x-a", "1")]) { done($0) } }
    }

    private func lookup(_ history: StreamHistory, _ id: String) throws -> HistoryLookup {
        try self.onLoop { done in history.events(after: id) { done($0) } }
    }

    func events(_ range: ClosedRange<UInt64>) -> [EncodedEvent] {
        range.map { sequence in
            EncodedEvent(sequence: sequence, id: "id\(sequence)", bytes: ByteBuffer(string: "id: id\(sequence)\ndata: \(sequence)\n\n"),
                         receivedAt: .now())
        }
    }

    private func owner(_ claim: HistoryClaim) -> (token: String, position: HistoryPosition)? {
        if case .owner(let token, let position) = claim { return (token, position) }
        return nil
    }

    func testOneInstanceWinsTheLeaseTheOtherFollowsWithTheOwnersHeaders() throws {
        let a = try self.history(self.store(instance: "a"))
        let b = try self.history(self.store(instance: "b"))
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(won.position.lastSequence, 0)
        XCTAssertEqual(try self.append(a, self.events(1...3), token: won.token, epoch: won.position.epoch), .stored)
        guard case .follower(let owner, let position, let headers) = try self.claim(b) else { return XCTFail("b should follow") }
        XCTAssertEqual(owner, "a")
        XCTAssertEqual(position, HistoryPosition(epoch: won.position.epoch, lastSequence: 3, lastEventID: "id3"))
        XCTAssertEqual(headers.map { "\($0.0)=\($0.1)" }, ["x-a=1"])
    }

    func testAnAppendUnderAnExpiredOrForeignTokenStoresNothing() throws {
        let a = try self.history(self.store(instance: "a", lease: .milliseconds(300)))
        let b = try self.history(self.store(instance: "b"))
        let first = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...2), token: first.token, epoch: first.position.epoch), .stored)
        Thread.sleep(forTimeInterval: 0.4)
        // a's lease ran out (nobody took it yet): a's late write is refused all the same.
        XCTAssertEqual(try self.append(a, self.events(3...3), token: first.token, epoch: first.position.epoch), .notOwner)
        let second = try XCTUnwrap(self.owner(try self.claim(b)))
        XCTAssertNotEqual(second.token, first.token)
        XCTAssertEqual(try self.append(a, self.events(3...3), token: first.token, epoch: first.position.epoch), .notOwner)
        XCTAssertEqual(try self.append(b, self.events(3...4), token: second.token, epoch: second.position.epoch), .stored)
        guard case .hit(_, let sequence, let after) = try self.lookup(b, "id1") else { return XCTFail("id1 is stored") }
        XCTAssertEqual(sequence, 1)
        XCTAssertEqual(after.map(\.sequence), [2, 3, 4])
        XCTAssertEqual(after.map { String(buffer: $0.bytes) }, (2...4).map { "id: id\($0)\ndata: \($0)\n\n" })
    }

    func testABatchThatDoesNotContinueTheHistoryIsRefusedAndARepeatIsIgnored() throws {
        let a = try self.history(self.store(instance: "a"))
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...2), token: won.token, epoch: won.position.epoch), .stored)
        guard case .unavailable(let why) = try self.append(a, self.events(4...4), token: won.token, epoch: won.position.epoch) else {
            return XCTFail("a gap must be refused")
        }
        XCTAssertTrue(why.contains("GAP"), why)
        // A batch sent again (its answer was lost) stores only what is new.
        XCTAssertEqual(try self.append(a, self.events(2...3), token: won.token, epoch: won.position.epoch), .stored)
        guard case .hit(_, _, let after) = try self.lookup(a, "id1") else { return XCTFail() }
        XCTAssertEqual(after.map(\.sequence), [2, 3])
    }

    func testTheHistoryKeepsTheLastMaxEventsAndAnOlderIDIsAMiss() throws {
        let a = try self.history(self.store(instance: "a", maxEvents: 5))
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...12), token: won.token, epoch: won.position.epoch), .stored)
        // Five are kept, 8...12: an id is found only while its own event is (as in the ring).
        guard case .miss = try self.lookup(a, "id7") else { return XCTFail("id7 was trimmed") }
        guard case .hit(_, 8, let after) = try self.lookup(a, "id8") else { return XCTFail("id8 is kept") }
        XCTAssertEqual(after.map(\.sequence), [9, 10, 11, 12])
    }

    func testEventsOlderThanMaxAgeAreTrimmed() throws {
        let a = try self.history(self.store(instance: "a", maxAge: .milliseconds(300)))
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...3), token: won.token, epoch: won.position.epoch), .stored)
        Thread.sleep(forTimeInterval: 0.4)
        XCTAssertEqual(try self.append(a, self.events(4...4), token: won.token, epoch: won.position.epoch), .stored)
        guard case .miss = try self.lookup(a, "id2") else { return XCTFail("id2 is too old") }
        guard case .hit(_, 4, let after) = try self.lookup(a, "id4") else { return XCTFail("id4 is kept") }
        XCTAssertEqual(after.count, 0)
    }

    func testAFreshEpochDropsTheOldHistoryAndOldIDsMiss() throws {
        let a = try self.history(self.store(instance: "a"))
        let first = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...3), token: first.token, epoch: first.position.epoch), .stored)
        try self.onLoop { (done: @escaping (Bool) -> Void) in a.release(token: first.token); done(true) }
        Thread.sleep(forTimeInterval: 0.1)
        let fresh = try XCTUnwrap(self.owner(try self.claim(a, fresh: true, next: 50)))
        XCTAssertNotEqual(fresh.position.epoch, first.position.epoch)
        XCTAssertEqual(fresh.position.lastSequence, 49)
        XCTAssertNil(fresh.position.lastEventID)
        guard case .miss = try self.lookup(a, "id2") else { return XCTFail("the old history is gone") }
        // The old epoch's owner cannot write into the new one.
        XCTAssertEqual(try self.append(a, self.events(4...4), token: fresh.token, epoch: first.position.epoch), .notOwner)
    }

    func testScriptsAreLoadedAgainAfterTheServerForgetsThem() throws {
        let a = try self.history(self.store(instance: "a"))
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        let connection = try RedisConnection.connect(to: self.server.address, configuration: .init(), on: self.loop).wait()
        _ = try connection.send(RESPCommand("SCRIPT", "FLUSH")).wait()
        connection.close()
        XCTAssertEqual(try self.append(a, self.events(1...1), token: won.token, epoch: won.position.epoch), .stored)
    }

    func testAFollowerGetsEveryStoredEventInOrderInBatches() throws {
        let store = self.store(instance: "a")
        let a = try self.history(store)
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...2), token: won.token, epoch: won.position.epoch), .stored)
        let delegate = RecordingFollower(loop: self.loop)
        let following = try self.onLoop { a.follow(after: 1, epoch: won.position.epoch, delegate: delegate) }
        for batch in [3...5, 6...6, 7...40] as [ClosedRange<UInt64>] {
            XCTAssertEqual(try self.append(a, self.events(batch), token: won.token, epoch: won.position.epoch), .stored)
        }
        try delegate.waitFor(sequences: 39)
        XCTAssertEqual(delegate.sequences, Array(2...40))
        XCTAssertLessThan(delegate.batches, 39, "reads come in batches")
        // The server dies: the follow breaks instead of waiting for ever.
        self.server.kill()
        try delegate.waitForFailure()
        try self.onLoop { following.stop() }
    }
}

/// Carries what the test hands to the loop and back; only one side uses it at a time.
struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

final class RecordingFollower: HistoryFollowerDelegate, @unchecked Sendable {
    private let loop: EventLoop
    private(set) var sequences: [UInt64] = []
    private(set) var batches = 0
    private(set) var failure: String?
    private(set) var ended: StreamEndReason?
    private(set) var bytes: [String] = []

    init(loop: EventLoop) { self.loop = loop }

    func historyReceived(_ events: [EncodedEvent]) {
        self.loop.preconditionInEventLoop()
        self.sequences += events.map(\.sequence)
        self.bytes += events.map { String(buffer: $0.bytes) }
        self.batches += 1
    }

    func historyFollowFailed(_ reason: String) {
        self.failure = reason
    }

    func historyEnded(_ reason: StreamEndReason) {
        self.loop.preconditionInEventLoop()
        self.ended = reason
    }

    func waitForEnd(timeout: TimeInterval = 10) throws -> StreamEndReason? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let ended = try self.loop.submit({ self.ended }).wait() { return ended }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return nil
    }

    func waitFor(sequences count: Int, timeout: TimeInterval = 5) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if try self.loop.submit({ self.sequences.count }).wait() >= count { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTFail("got \(try self.loop.submit({ self.sequences.count }).wait()) of \(count) events")
    }

    func waitForFailure(timeout: TimeInterval = 10) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if try self.loop.submit({ self.failure }).wait() != nil { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTFail("the follow did not notice the server died")
    }
}

/// What a careless or hostile writer of the history's keys can put there.
final class HostileHistoryTests: XCTestCase {
    func testOnlyWellFormedEventBlocksAreAccepted() {
        XCTAssertTrue(StoredEntry.isOneEventBlock(ByteBuffer(string: "id: 1\ndata: a\n\n")))
        XCTAssertTrue(StoredEntry.isOneEventBlock(ByteBuffer(string: "data: a\u{0}b\n\n")))
        for bad in ["", "\n", "data: a\n", "data: a\n\ndata: b\n\n", "data: a\r\n\r\n", "data: a\n\n\n", "\n\n\n"] {
            XCTAssertFalse(StoredEntry.isOneEventBlock(ByteBuffer(string: bad)), bad.debugDescription)
        }
    }
}

extension RedisStreamHistoryTests {
    /// Entries written into the history by something other than an owner: the follow breaks
    /// (the stream falls back to its origin) and a lookup says unavailable; nothing traps and no
    /// client gets the bytes.
    func testForeignEntriesBreakTheFollowAndTheLookupInsteadOfReachingClients() throws {
        let store = self.store(instance: "a")
        let a = try self.history(store)
        let won = try XCTUnwrap(self.owner(try self.claim(a)))
        XCTAssertEqual(try self.append(a, self.events(1...2), token: won.token, epoch: won.position.epoch), .stored)
        let delegate = RecordingFollower(loop: self.loop)
        let following = try self.onLoop { a.follow(after: 2, epoch: won.position.epoch, delegate: delegate) }
        let keys = HistoryKeys(SharedStreamName("s1"))
        let connection = try RedisConnection.connect(to: self.server.address, configuration: .init(), on: self.loop).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.history), "3-0", "i", "=id3", "e", "data: evil\n", "t", "0",
                                            .string("p"), .string(won.position.epoch))).wait()
        try delegate.waitForFailure()
        XCTAssertEqual(try self.loop.submit { delegate.sequences }.wait(), [])
        guard case .unavailable = try self.lookup(a, "id2") else { return XCTFail("a lookup over a bad entry is not a hit") }
        // An entry of another epoch.
        _ = try connection.send(RESPCommand("DEL", .string(keys.history))).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.history), "1-0", "i", "=x", "e", "data: x\n\n", "t", "0",
                                            "p", "other")).wait()
        let second = RecordingFollower(loop: self.loop)
        let again = try self.onLoop { a.follow(after: 0, epoch: won.position.epoch, delegate: second) }
        try second.waitForFailure()
        connection.close()
        try self.onLoop { following.stop(); again.stop() }
    }
}
