import XCTest
final class SSETestsPlaceholder: XCTestCase { func testNothing() {} }
