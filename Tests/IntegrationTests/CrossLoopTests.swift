import Atomics
import LifelineTestSupport
import NIOCore
import Upstream
import XCTest

/// What a subscriber needs from its stream reaches it by value, on its own loop: nothing of a
/// stream is read from another loop while the stream's loop changes it. Run under
/// `scripts/test --sanitize=thread` to see a race; in a plain build the test checks that every
/// client got a whole, correct head.
final class CrossLoopTests: XCTestCase {
    /// Clients attach from both event loops while the origin drops the stream every 3 events
    /// and the gateway reconnects within milliseconds, each time with new response headers.
    /// (Before the fix, a subscriber built its head from the stream's headers on its own loop
    /// while the stream's loop replaced them at each reconnect: ThreadSanitizer reported it
    /// within seconds, and the release build could crash on freed array storage.)
    func testAttachesFromEveryLoopWhileTheOriginReconnectsGetTheHeadersOfOneResponse() async throws {
        let generation = ManagedAtomic(0)
        let nextID = ManagedAtomic(0)
        let handler: @Sendable (ScriptedOrigin.Request, OriginResponder) -> Void = { _, responder in
            let n = generation.wrappingIncrementThenLoad(ordering: .relaxed)
            responder.sendHead(headers: [
                ("Content-Type", "text/event-stream"),
                ("Access-Control-Allow-Origin", "https://gen-\(n).example"),
                ("Access-Control-Expose-Headers", "X-Generation"),
                ("X-Generation", "\(n)"),
            ])
            var text = ""
            for _ in 0..<3 {
                let id = nextID.wrappingIncrementThenLoad(ordering: .relaxed)
                text += "id: \(id)\ndata: \(id)\n\n"
            }
            responder.send(text)
            responder.end()
        }
        let harness = try await GatewayHarness.start(origin: handler) { configuration in
            configuration.upstream.reconnectMin = .milliseconds(1)
            configuration.upstream.reconnectMax = .milliseconds(3)
            // An origin that ends its response cleanly is normally given a browser's 3 s.
            configuration.upstream.pacing = UpstreamPacing(
                defaultReconnectionTime: .milliseconds(1), minimumReconnectionTime: .milliseconds(1), stableAfter: .milliseconds(1)
            )
        }
        // The stream exists and reconnects on its own from now on.
        let keeper = try await harness.client()
        _ = try await keeper.waitForHead()

        let deadline = NIODeadline.now() + .seconds(3)
        let attaches = ManagedAtomic(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while NIODeadline.now() < deadline {
                        let client = try await harness.client()
                        let head = try await client.waitForHead()
                        XCTAssertEqual(head.status, .ok)
                        let allowOrigin = head.headers["access-control-allow-origin"]
                        let generationHeader = head.headers["x-generation"]
                        XCTAssertEqual(allowOrigin.count, 1, "\(head.headers)")
                        XCTAssertEqual(generationHeader.count, 1, "\(head.headers)")
                        // The headers of one origin response, not a mix of two.
                        if let value = generationHeader.first {
                            XCTAssertEqual(allowOrigin.first, "https://gen-\(value).example")
                        }
                        XCTAssertEqual(
                            head.headers["access-control-expose-headers"].first,
                            "X-Generation, Lifeline-Replay, Lifeline-Heartbeat"
                        )
                        await client.close()
                        attaches.wrappingIncrement(ordering: .relaxed)
                    }
                }
            }
            try await group.waitForAll()
        }
        XCTAssertGreaterThan(attaches.load(ordering: .relaxed), 50)
        XCTAssertGreaterThan(generation.load(ordering: .relaxed), 20, "the origin was reconnected again and again")
        // The keeper saw every event once, in order, across all those reconnects.
        let ids = keeper.events.compactMap { Int($0.id ?? "") }
        XCTAssertEqual(ids, Array(1..<(ids.count + 1)), "no gap, no duplicate")
        XCTAssertFalse(keeper.isClosed)
        await keeper.close()
        await harness.shutdown()
    }
}
