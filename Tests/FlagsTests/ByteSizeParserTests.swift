import Flags
import XCTest

final class ByteSizeParserTests: XCTestCase {
    private let parser = FlagValueParser<Int>.byteSize

    private func message(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        switch self.parser.parse(text) {
        case .success(let value):
            XCTFail("\(text) parsed as \(value)", file: file, line: line)
            return nil
        case .failure(let error):
            return error.message
        }
    }

    func testAcceptedForms() throws {
        let cases: [(String, Int)] = [
            ("0", 0),
            ("1024", 1024),
            ("17B", 17),
            ("64KiB", 65_536),
            ("4MiB", 4_194_304),
            ("1GiB", 1_073_741_824),
            ("2TiB", 2_199_023_255_552),
            ("64KB", 64_000),
            ("3MB", 3_000_000),
            ("1GB", 1_000_000_000),
            ("5TB", 5_000_000_000_000),
        ]
        for (text, bytes) in cases {
            XCTAssertEqual(try self.parser.parse(text).get(), bytes, text)
        }
        XCTAssertEqual(self.parser.valueName, "SIZE")
    }

    func testRejections() {
        let units = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        XCTAssertEqual(self.message("-1KiB"), "invalid size \"-1KiB\": must not be negative")
        XCTAssertEqual(self.message("64kb"), "invalid size \"64kb\": unknown unit \"kb\" (use \(units))")
        XCTAssertEqual(self.message("64 KiB"), "invalid size \"64 KiB\": unknown unit \" KiB\" (use \(units))")
        XCTAssertEqual(
            self.message("1.5MiB"), "invalid size \"1.5MiB\": must be a whole number (e.g. 1536KiB, not 1.5MiB)")
        XCTAssertEqual(
            self.message("MiB"),
            "invalid size \"MiB\": expected a whole number of bytes with an optional unit (\(units)), e.g. 64KiB")
        XCTAssertEqual(self.message(""), "empty size; expected e.g. 1024, 64KiB or 4MiB")
        XCTAssertEqual(self.message("99999999999999999999"), "invalid size \"99999999999999999999\": too large")
        XCTAssertEqual(self.message("9999999999TiB"), "invalid size \"9999999999TiB\": too large")
    }
}
