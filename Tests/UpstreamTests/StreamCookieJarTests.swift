import XCTest

@testable import Upstream

final class StreamCookieJarTests: XCTestCase {
    func testStoresReplacesAndDeletes() {
        var jar = StreamCookieJar()
        XCTAssertNil(jar.header(merging: nil))
        XCTAssertEqual(jar.header(merging: "a=1"), "a=1", "an empty jar leaves the client's cookies alone")
        jar.store(setCookie: ["resume=abc; Path=/; HttpOnly", "node=7"])
        XCTAssertEqual(jar.header(merging: nil), "resume=abc; node=7")
        // The origin's value wins over the client's for the same name; the client's others stay.
        XCTAssertEqual(jar.header(merging: "session=s1; resume=old"), "session=s1; resume=abc; node=7")
        jar.store(setCookie: ["resume=def"])
        XCTAssertEqual(jar.header(merging: nil), "node=7; resume=def")
        jar.store(setCookie: ["node=x; Max-Age=0", "resume="])
        XCTAssertTrue(jar.isEmpty)
    }

    func testIgnoresGarbageAndStaysBounded() {
        var jar = StreamCookieJar()
        jar.store(setCookie: ["no-equals-sign", "=nameless", "bad=va\u{01}lue", "big=" + String(repeating: "x", count: 5000)])
        XCTAssertTrue(jar.isEmpty)
        jar.store(setCookie: (0..<100).map { "c\($0)=v" })
        XCTAssertEqual(jar.cookies.count, StreamCookieJar.maxCookies)
    }
}
