import XCTest
final class FlagsTestsPlaceholder: XCTestCase { func testNothing() {} }
