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

    /// The connection closes between the wait's look at its condition and its look at hope. A
    /// wait for the close itself has then got what it waited for: it succeeds. (It failed with
    /// "gave up: the connection is closed", now and then, in sanitizer runs, where the gap
    /// between the two looks is wide.)
    func testAWaitSucceedsWhenTheChangeThatEndsHopeIsWhatItWaitedFor() async throws {
        let signal = ChangeSignal(eventLoop: EmbeddedEventLoop())
        var closed = false
        try await signal.wait(
            timeout: .seconds(5),
            until: { closed },
            hopeless: {
                closed = true  // closes right after the condition was found false
                return closed
            },
            failure: { WaitFailure(reason: $0) }
        )
        XCTAssertTrue(closed)
    }

    func testAHopelessWaitFailsAtOnceNotAtItsTimeout() async throws {
        let signal = ChangeSignal(eventLoop: EmbeddedEventLoop())
        let start = NIODeadline.now()
        do {
            try await signal.wait(
                timeout: .seconds(30),
                until: { false },
                hopeless: { true },
                failure: { WaitFailure(reason: $0) }
            )
            XCTFail("a hopeless wait returned")
        } catch let failure as WaitFailure {
            XCTAssertEqual(failure.reason, "gave up: the connection is closed")
        }
        XCTAssertLessThan(NIODeadline.now() - start, .seconds(5))
    }

    func testAWaitWhoseConditionHoldsReturnsWithoutLookingAtHope() async throws {
        let signal = ChangeSignal(eventLoop: EmbeddedEventLoop())
        var hopeAsked = false
        try await signal.wait(
            timeout: .seconds(5),
            until: { true },
            hopeless: {
                hopeAsked = true
                return true
            },
            failure: { WaitFailure(reason: $0) }
        )
        XCTAssertFalse(hopeAsked)
    }
}
