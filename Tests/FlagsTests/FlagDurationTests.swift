import Flags
import XCTest

final class FlagDurationTests: XCTestCase {
    private func parse(_ text: String) -> Result<FlagDuration, FlagValueError> {
        FlagDuration.parse(text)
    }

    private func message(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        switch self.parse(text) {
        case .success(let value):
            XCTFail("\(text) parsed as \(value)", file: file, line: line)
            return nil
        case .failure(let error):
            return error.message
        }
    }

    func testAcceptedForms() throws {
        let cases: [(String, Int64)] = [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500_000_000),
            ("15s", 15_000_000_000),
            ("2m", 120_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1m30s", 90_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1h0m5s", 3_605_000_000_000),
            ("2.25h", 8_100_000_000_000),
            ("250us", 250_000),
            ("250\u{B5}s", 250_000),
            ("250\u{3BC}s", 250_000),
            ("7ns", 7),
            ("1.0000000001s", 1_000_000_000),
            ("0.1234567891s", 123_456_789),
        ]
        for (text, nanoseconds) in cases {
            XCTAssertEqual(try self.parse(text).get().nanoseconds, nanoseconds, text)
        }
    }

    func testRejectsNegative() {
        XCTAssertEqual(self.message("-5s"), "invalid duration \"-5s\": must not be negative")
    }

    func testRejectsMissingUnit() {
        XCTAssertEqual(
            self.message("15"), "invalid duration \"15\": missing unit (ns, us, ms, s, m, h), e.g. 15s; only 0 may omit it")
        XCTAssertEqual(
            self.message("1m30"), "invalid duration \"1m30\": missing unit (ns, us, ms, s, m, h), e.g. 1m30s; only 0 may omit it")
        XCTAssertNotNil(self.message("0.0"))
        XCTAssertNotNil(self.message("00"))
    }

    func testRejectsUnknownUnit() {
        XCTAssertEqual(self.message("5d"), "invalid duration \"5d\": unknown unit \"d\" (use ns, us, ms, s, m, h)")
        XCTAssertEqual(self.message("5S"), "invalid duration \"5S\": unknown unit \"S\" (use ns, us, ms, s, m, h)")
        XCTAssertEqual(self.message("5sec"), "invalid duration \"5sec\": unknown unit \"sec\" (use ns, us, ms, s, m, h)")
    }

    func testRejectsMalformed() {
        let invalid = "expected a number and a unit (ns, us, ms, s, m, h), e.g. 500ms, 15s or 1m30s"
        XCTAssertEqual(self.message("s"), "invalid duration \"s\": \(invalid)")
        XCTAssertEqual(self.message("1.s"), "invalid duration \"1.s\": \(invalid)")
        XCTAssertEqual(self.message("1 s"), "invalid duration \"1 s\": \(invalid)")
        XCTAssertEqual(self.message("+1s"), "invalid duration \"+1s\": \(invalid)")
        XCTAssertEqual(self.message("1s "), "invalid duration \"1s \": \(invalid)")
        XCTAssertEqual(self.message(""), "empty duration; expected e.g. 500ms, 15s, 2m or 1m30s")
    }

    func testRejectsOverflow() {
        XCTAssertEqual(self.message("99999999999h"), "invalid duration \"99999999999h\": too large")
        XCTAssertEqual(self.message("99999999999999999999ns"), "invalid duration \"99999999999999999999ns\": too large")
        XCTAssertEqual(self.message("2562047h2562047h"), "invalid duration \"2562047h2562047h\": too large")
    }

    func testDescriptionRoundTrips() throws {
        let cases: [(FlagDuration, String)] = [
            (.zero, "0s"),
            (.milliseconds(500), "500ms"),
            (.microseconds(250), "250us"),
            (.nanoseconds(7), "7ns"),
            (.seconds(15), "15s"),
            (.seconds(90), "1m30s"),
            (.hours(1), "1h"),
            (.seconds(3605), "1h5s"),
            (.milliseconds(1500), "1.5s"),
            (.nanoseconds(61_000_000_001), "1m1.000000001s"),
        ]
        for (duration, text) in cases {
            XCTAssertEqual(duration.description, text)
            XCTAssertEqual(try FlagDuration.parse(text).get(), duration, text)
        }
    }

    func testComparableAndSeconds() {
        XCTAssertLessThan(FlagDuration.milliseconds(999), .seconds(1))
        XCTAssertEqual(FlagDuration.milliseconds(1500).seconds, 1.5)
        XCTAssertEqual(FlagDuration.minutes(2), .seconds(120))
    }
}
