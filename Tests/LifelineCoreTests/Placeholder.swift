import XCTest
final class LifelineCoreTestsPlaceholder: XCTestCase { func testNothing() {} }
