import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SSE
import XCTest

@testable import LifelineCore

/// A stream on one loop, subscribers on another, events pushed while subscribers join.
final class StreamMultiLoopTests: XCTestCase {
    func testOrderAndReplaySeamAcrossLoopsWhileEventsArePushed() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let streamLoop = group.any()
        var subscriberLoop = group.next()
        while subscriberLoop === streamLoop { subscriberLoop = group.next() }
        let otherLoop = subscriberLoop

        let total = 3000
        let stream = EventStream(
            key: makeKey(),
            eventLoop: streamLoop,
            configuration: StreamConfiguration(replayLimits: .init(events: 10_000), replayMiss: .live)
        )
        let feed = FakeFeed()
        try streamLoop.submit {
            stream.start(upstream: feed)
            stream.upstreamConnected(isReconnect: false)
        }.wait()

        // Confined to `otherLoop`.
        final class Joiners: @unchecked Sendable {
            var subscribers: [(from: Int?, subscriber: FakeSubscriber)] = []
        }
        let joiners = Joiners()
        let witness = FakeSubscriber(eventLoop: otherLoop, name: "witness")
        // Every 97 live events the witness sees, a new client joins from its loop, resuming from
        // the id the witness has just seen or from a few events before it.
        var seen = 0
        witness.onDeliver = { witness in
            let ids = parseEvents([witness.chunks.last!.bytes]).map(\.lastEventID)
            for id in ids {
                seen += 1
                guard seen % 97 == 0, let last = Int(id) else { continue }
                for from in [last, max(1, last - 5)] {
                    let joiner = FakeSubscriber(eventLoop: otherLoop, name: "from \(from)")
                    joiners.subscribers.append((from, joiner))
                    stream.attach(joiner, lastEventID: String(from))
                }
                let live = FakeSubscriber(eventLoop: otherLoop, name: "live at \(last)")
                joiners.subscribers.append((nil, live))
                stream.attach(live, lastEventID: nil)
            }
        }
        try otherLoop.submit { stream.attach(witness, lastEventID: nil) }.wait()
        // The witness is attached once the attach hop back to its loop has run.
        try streamLoop.submit {}.wait()
        try otherLoop.submit {}.wait()

        // Push one event per loop task so that attaches interleave with the pushes; every tenth
        // task pushes a batch of three.
        let done = streamLoop.makePromise(of: Void.self)
        @Sendable func push(_ next: Int) {
            guard next <= total else { return done.succeed() }
            let count = next % 10 == 0 ? min(3, total - next + 1) : 1
            stream.upstreamReceived(outputs(Array(next..<(next + count))))
            streamLoop.execute { push(next + count) }
        }
        streamLoop.execute { push(1) }
        try done.futureResult.wait()

        // Let the last hops land: the witness has the last event (so no one joins any more) and
        // every joiner is attached (every later batch was queued behind its attach), or time runs out.
        let deadline = NIODeadline.now() + .seconds(10)
        while true {
            let settled = try otherLoop.submit {
                witness.allIDs.last == String(total)
                    && joiners.subscribers.allSatisfy { $0.subscriber.attachment != nil || !$0.subscriber.refusals.isEmpty }
            }.wait()
            if settled || NIODeadline.now() > deadline { break }
            try streamLoop.submit {}.wait()
        }

        try otherLoop.submit {
            XCTAssertEqual(witness.allIDs, (1...total).map(String.init), "in order, none missing")
            XCTAssertGreaterThan(joiners.subscribers.count, 60)
            for (from, subscriber) in joiners.subscribers {
                XCTAssertEqual(subscriber.refusals, [])
                let ids = subscriber.allIDs.compactMap { Int($0) }
                if let from {
                    XCTAssertEqual(subscriber.replayStatus, .hit, subscriber.name)
                    // Everything after its id, exactly once: the seam has no gap or duplicate.
                    XCTAssertEqual(ids, Array((from + 1)..<(total + 1)), subscriber.name)
                } else {
                    XCTAssertEqual(subscriber.replayStatus, StreamAttachment.Replay.none)
                    // Joined live (possibly after the last event): contiguous from wherever it joined.
                    if let first = ids.first {
                        XCTAssertEqual(ids, Array(first...total), "\(subscriber.name): contiguous and in order")
                    }
                }
            }
        }.wait()
        try streamLoop.submit { stream.shutdown() }.wait()
        try streamLoop.submit {}.wait()
        // The end reaches the subscribers' loop before they go away.
        try otherLoop.submit {
            XCTAssertEqual(witness.ended, [.shutdown])
            XCTAssertTrue(joiners.subscribers.allSatisfy { $0.subscriber.ended == [.shutdown] })
        }.wait()
    }
}
