import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import XCTest

@testable import LifelineCore

final class StreamHubTests: XCTestCase {
    private var loop: EmbeddedEventLoop!

    override func setUp() { self.loop = EmbeddedEventLoop() }
    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
    }

    private func stream(_ key: StreamKey, hub: StreamHub) -> EventStream {
        let stream = EventStream(key: key, eventLoop: self.loop, configuration: StreamConfiguration(), reporting: .init(hub: hub))
        stream.start(upstream: FakeFeed())
        return stream
    }

    func testFirstOpensOthersWaitThenJoin() {
        let hub = StreamHub()
        let key = makeKey()
        let outcomes = NIOLockedValueBox<[String]>([])
        guard case .open(let ticket) = hub.lookup(key, on: self.loop, onOpened: { _ in XCTFail("the opener is not called back") })
        else { return XCTFail("first lookup must open") }
        for name in ["b", "c"] {
            guard case .wait = hub.lookup(key, on: self.loop, onOpened: { outcome in
                if case .stream = outcome { outcomes.withLockedValue { $0.append(name) } }
            }) else { return XCTFail("later lookups wait") }
        }
        XCTAssertNil(hub.stream(for: key))
        let stream = self.stream(key, hub: hub)
        hub.promote(ticket, to: stream)
        XCTAssertEqual(outcomes.withLockedValue { $0 }, [], "called back on the waiter's loop, not inline")
        self.loop.run()
        XCTAssertEqual(outcomes.withLockedValue { $0 }, ["b", "c"])
        guard case .stream(let found) = hub.lookup(key, on: self.loop, onOpened: { _ in }) else {
            return XCTFail("the key has a stream now")
        }
        XCTAssertTrue(found === stream)
        XCTAssertEqual(hub.streams.count, 1)
    }

    func testAbandonTellsWaitersAndFreesTheKey() {
        let hub = StreamHub()
        let key = makeKey()
        let notAStream = NIOLockedValueBox(0)
        guard case .open(let ticket) = hub.lookup(key, on: self.loop, onOpened: { _ in }) else { return XCTFail() }
        _ = hub.lookup(key, on: self.loop) { outcome in
            if case .notAStream = outcome { notAStream.withLockedValue { $0 += 1 } }
        }
        hub.abandon(ticket)
        self.loop.run()
        XCTAssertEqual(notAStream.withLockedValue { $0 }, 1)
        guard case .open = hub.lookup(key, on: self.loop, onOpened: { _ in }) else {
            return XCTFail("the next client opens again")
        }
    }

    func testDifferentKeysAreIndependent() {
        let hub = StreamHub()
        guard case .open = hub.lookup(makeKey("/a"), on: self.loop, onOpened: { _ in }) else { return XCTFail() }
        guard case .open = hub.lookup(makeKey("/b"), on: self.loop, onOpened: { _ in }) else { return XCTFail() }
    }

    func testEndedStreamDoesNotRemoveItsSuccessor() {
        let hub = StreamHub()
        let key = makeKey()
        guard case .open(let firstTicket) = hub.lookup(key, on: self.loop, onOpened: { _ in }) else { return XCTFail() }
        let first = self.stream(key, hub: hub)
        hub.promote(firstTicket, to: first)
        first.shutdown()
        self.loop.run()
        XCTAssertNil(hub.stream(for: key))
        guard case .open(let secondTicket) = hub.lookup(key, on: self.loop, onOpened: { _ in }) else { return XCTFail() }
        let second = self.stream(key, hub: hub)
        hub.promote(secondTicket, to: second)
        first.shutdown()  // again: must not touch the successor's entry
        self.loop.run()
        XCTAssertTrue(hub.stream(for: key) === second)
        second.shutdown()
        self.loop.run()
    }

    func testPrivateStreamsAreListedUntilTheyEndButNeverFoundByKey() {
        let hub = StreamHub()
        let key = makeKey()
        let stream = EventStream(key: key, eventLoop: self.loop, configuration: StreamConfiguration(), sharing: .varyMismatch,
                                 reporting: .init(hub: hub))
        stream.start(upstream: FakeFeed())
        hub.registerPrivate(stream)
        XCTAssertTrue(hub.streams.contains { $0 === stream })
        XCTAssertNil(hub.stream(for: key), "no one else joins a private stream")
        guard case .open = hub.lookup(key, on: self.loop, onOpened: { _ in }) else {
            return XCTFail("a shared stream for the same key is opened separately")
        }
        stream.shutdown()
        self.loop.run()
        XCTAssertFalse(hub.streams.contains { $0 === stream })
    }
}
