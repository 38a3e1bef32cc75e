import Flags
import XCTest

/// A file given as `--flagfile` that is not a flag file (a binary, a log) can hold "flag names"
/// of megabytes. Looking for the nearest declared name must not cost, for each declared name, an
/// edit-distance table as long as the typed one (the fuzzer's slowest inputs were such lines).
final class UnknownFlagCostTests: XCTestCase {
    func testAVeryLongUnknownNameIsRejectedWithoutComparingItToEveryName() {
        let name = String(repeating: "heartbeat", count: 100_000)  // 900 KB
        let start = ContinuousClock.now
        let lines = TestFlags.set.errorLines(["--flagfile=a.flags"], files: ["a.flags": "--\(name)=1\n--hartbeat=1s\n"])
        let elapsed = ContinuousClock.now - start
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines.first?.hasPrefix("a.flags:1: --heartbeatheartbeat"), true)
        XCTAssertEqual(lines.first?.hasSuffix(": unknown flag"), true)
        XCTAssertEqual(lines.last, "a.flags:2: --hartbeat: unknown flag; did you mean --heartbeat?")
        // Half a minute or more in a debug build before; about a second now (most of it trimming the line).
        XCTAssertLessThan(elapsed, .seconds(10))
    }
}
