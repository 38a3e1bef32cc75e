import NIOCore
import XCTest

@testable import Upstream

final class ReconnectBackoffTests: XCTestCase {
    private let justUnderOne = 1.0 - 1e-12

    private func ms(_ amount: TimeAmount) -> Double {
        Double(amount.nanoseconds) / 1e6
    }

    func testRandomZeroIsTheFloorAtEveryAttempt() {
        let backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10))
        for attempt in [0, 1, 5, 40, 1000] {
            XCTAssertEqual(backoff.delay(attempt: attempt, random: 0), .milliseconds(100), "attempt \(attempt)")
        }
    }

    func testGrowthDoublesUpToTheCap() {
        let backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10))
        let tops = (0..<10).map { self.ms(backoff.delay(attempt: $0, random: self.justUnderOne)) }
        // The first reconnect is spread over [min, 2·min] too, so a crowd does not come back at once.
        let expected: [Double] = [200, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        for (top, value) in zip(tops, expected) {
            XCTAssertEqual(top, value, accuracy: 0.01)
        }
        // Huge attempt numbers do not overflow.
        XCTAssertEqual(self.ms(backoff.delay(attempt: Int.max, random: self.justUnderOne)), 10_000, accuracy: 0.01)
    }

    func testJitterIsUniformBetweenFloorAndTop() {
        let backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10))
        // Attempt 3: between 100 ms and 800 ms.
        XCTAssertEqual(self.ms(backoff.delay(attempt: 3, random: 0.5)), 450, accuracy: 0.01)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 3, random: 0.25)), 275, accuracy: 0.01)
        // Out-of-range randoms are clamped.
        XCTAssertEqual(backoff.delay(attempt: 3, random: -1), .milliseconds(100))
        XCTAssertEqual(self.ms(backoff.delay(attempt: 3, random: 7)), 800, accuracy: 0.01)
    }

    func testOriginRetryIsTheBase() {
        var backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(30))
        backoff.originRetry = .seconds(3)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 0, random: self.justUnderOne)), 3000, accuracy: 0.01)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 2, random: self.justUnderOne)), 12_000, accuracy: 0.01)
        XCTAssertEqual(backoff.delay(attempt: 0, random: 0), .milliseconds(100), "the floor stays --reconnect-min")
    }

    func testOriginRetryIsClampedToMinAndMax() {
        var backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10))
        backoff.originRetry = .milliseconds(1)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 0, random: self.justUnderOne)), 200, accuracy: 0.01)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 1, random: self.justUnderOne)), 200, accuracy: 0.01)
        backoff.originRetry = .seconds(3600)
        XCTAssertEqual(self.ms(backoff.delay(attempt: 0, random: self.justUnderOne)), 10_000, accuracy: 0.01)
        backoff.originRetry = .zero
        XCTAssertEqual(self.ms(backoff.delay(attempt: 0, random: self.justUnderOne)), 200, accuracy: 0.01)
    }

    func testMaximumBelowMinimumIsRaisedToIt() {
        let backoff = ReconnectBackoff(minimum: .seconds(2), maximum: .seconds(1))
        XCTAssertEqual(backoff.maximum, .seconds(2))
        XCTAssertEqual(backoff.delay(attempt: 5, random: self.justUnderOne), .seconds(2))
    }

    /// BUG (design: "exponential backoff with full jitter"): the first reconnect, the one every
    /// stream of a restarted origin makes at the same moment, has no jitter at all: with no
    /// `retry:` from the origin, attempt 0 waits exactly --reconnect-min whatever the random
    /// draw, so the whole herd arrives together.
    func testFirstReconnectIsSpread() {
        let backoff = ReconnectBackoff(minimum: .milliseconds(100), maximum: .seconds(10))
        XCTAssertLessThan(backoff.delay(attempt: 0, random: 0), backoff.delay(attempt: 0, random: self.justUnderOne))
    }
}
