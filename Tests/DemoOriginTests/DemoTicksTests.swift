import Foundation
import XCTest

@testable import DemoOrigin

final class DemoTicksTests: XCTestCase {
    func testISOTimestampKnownValues() {
        XCTAssertEqual(DemoTicks.isoTimestamp(millis: 0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(DemoTicks.isoTimestamp(millis: 951_782_400_000), "2000-02-29T00:00:00.000Z")
        XCTAssertEqual(DemoTicks.isoTimestamp(millis: 1_700_000_000_123), "2023-11-14T22:13:20.123Z")
        XCTAssertEqual(DemoTicks.isoTimestamp(millis: 4_102_444_799_999), "2099-12-31T23:59:59.999Z")
    }

    func testISOTimestampAgreesWithFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let millis = Int64.random(in: 0...4_102_444_800_000, using: &generator)
            let expected = formatter.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
            XCTAssertEqual(DemoTicks.isoTimestamp(millis: millis), expected, "millis \(millis)")
        }
    }

    func testEventTextIsAPureFunctionOfTheTick() {
        XCTAssertEqual(
            DemoTicks.eventText(tick: 34_000_000_002, tickMillis: 50),
            "id: 34000000002\ndata: {\"tick\":34000000002,\"time\":\"2023-11-14T22:13:20.100Z\"}\n\n"
        )
        XCTAssertEqual(DemoTicks.tick(atMillis: 1_700_000_000_149, tickMillis: 50), 34_000_000_002)
    }
}
