import XCTest
final class UpstreamTestsPlaceholder: XCTestCase { func testNothing() {} }
