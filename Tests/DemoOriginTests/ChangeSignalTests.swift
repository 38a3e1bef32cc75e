import LifelineTestSupport
import NIOCore
import NIOEmbedded
import XCTest

/// The wait under every test client and scripted origin (`SSETestClient.waitForClose` and the
/// rest): a wait ends when its condition holds, and fails at once, not at its timeout, when no
/// further change can help.
final class ChangeSignalTests: XCTestCase {
    private struct WaitFailure: Error {
        let reason: String
    }

    /// One wait on a signal nobody notifies: it ends on its first looks, or at `timeout`.
    private func wait(
        timeout: TimeAmount = .seconds(5), until condition: () -> Bool, hopeless: () -> Bool
    ) async throws {
        let signal = ChangeSignal(eventLoop: EmbeddedEventLoop())
        try await signal.wait(
            timeout: timeout, until: condition, hopeless: hopeless, failure: { WaitFailure(reason: $0) })
    }

    /// The connection closes between the wait's look at its condition and its look at hope. A
    /// wait for the close itself has then got what it waited for: it succeeds. (It failed with
    /// "gave up: the connection is closed", now and then, in sanitizer runs, where the gap
    /// between the two looks is wide.)
    func testAWaitSucceedsWhenTheChangeThatEndsHopeIsWhatItWaitedFor() async throws {
        var closed = false
        try await self.wait(
            until: { closed },
            hopeless: {
                closed = true  // closes right after the condition was found false
                return closed
            }
        )
        XCTAssertTrue(closed)
    }

    func testAHopelessWaitFailsAtOnceNotAtItsTimeout() async throws {
        let start = NIODeadline.now()
        do {
            try await self.wait(timeout: .seconds(30), until: { false }, hopeless: { true })
            XCTFail("a hopeless wait returned")
        } catch let failure as WaitFailure {
            XCTAssertEqual(failure.reason, "gave up: the connection is closed")
        }
        XCTAssertLessThan(NIODeadline.now() - start, .seconds(5))
    }

    func testAWaitWhoseConditionHoldsReturnsWithoutLookingAtHope() async throws {
        var hopeAsked = false
        try await self.wait(
            until: { true },
            hopeless: {
                hopeAsked = true
                return true
            }
        )
        XCTAssertFalse(hopeAsked)
    }
}
