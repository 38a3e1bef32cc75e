import NIOCore
import XCTest

/// Polls `condition` every 5 ms until it holds, for state that offers nothing to wait on.
func eventually(
    timeout: TimeAmount = .seconds(5),
    file: StaticString = #filePath,
    line: UInt = #line,
    _ condition: () -> Bool
) async throws {
    let deadline = NIODeadline.now() + timeout
    while !condition() {
        guard NIODeadline.now() < deadline else {
            return XCTFail("condition not met within \(timeout)", file: file, line: line)
        }
        try await Task.sleep(nanoseconds: 5_000_000)
    }
}
