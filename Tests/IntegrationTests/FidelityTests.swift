import LifelineTestSupport
import NIOCore
import XCTest

/// What an EventSource sees through Lifeline is what it would see from the origin directly
/// (heartbeats and the opening comment aside).
final class FidelityTests: XCTestCase {
    /// Awkward but valid event-stream bytes, each piece sent as its own chunk so that lines and
    /// line endings are split across reads.
    static let pieces: [String] = [
        "\u{FEFF}",                                      // a BOM at the start of the stream
        ": origin comment\r\n",
        "id: 1\r\ndata: crlf line endings\r\n\r\n",
        "id: 2\rdata: cr line endings\r\r",
        "data: two\ndata:  lines, one with a kept space\n\n",
        "event: custom\nid: 3\ndata\n\n",                 // data without a colon: empty data
        "unknown: ignored\ndata: after unknown field\n\n",
        "id: 4\u{0}bad\ndata: id with NUL is ignored\n\n",
        "retry: 1500\nretry: bogus\ndata: with retry\n\n",
        "id\ndata: id reset to empty\n\n",
        "data: unicode é ✓ 𝄞\n\n",
        "id: 5\n\n",                                      // an id-only block: no event, new lastEventId
        "data: sp",
        "lit across chunks\n",
        "\n",
        "data: incomplete block at the end is discarded",
    ]

    func testClientSeesWhatTheOriginSent() async throws {
        let harness = try await GatewayHarness.start()
        let client = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        for piece in Self.pieces {
            harness.origin.broadcast(piece)
        }
        var direct = TestSSEParser()
        direct.feed(Array(Self.pieces.joined().utf8))
        let expected = direct.events
        XCTAssertEqual(expected.count, 10, "the test's own expectation")
        try await client.waitForEvents(count: expected.count)
        // lastEventID is what EventSource reports as `e.lastEventId`.
        XCTAssertEqual(client.events, expected, client.report())
        XCTAssertEqual(client.events.map(\.lastEventID), expected.map(\.lastEventID))
        XCTAssertEqual(client.retry, 1500)
        // The id-only block changed the id in force; the next event shows it.
        harness.origin.broadcast("data: after id-only\n\n")
        try await client.waitForEvents(count: expected.count + 1)
        XCTAssertEqual(client.events.last?.lastEventID, "5")
        await client.close()
        await harness.shutdown()
    }
}
