import XCTest
final class DemoOriginTestsPlaceholder: XCTestCase { func testNothing() {} }
