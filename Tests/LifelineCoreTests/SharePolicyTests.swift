import NIOCore
import XCTest

@testable import LifelineCore

final class SharePolicyTests: XCTestCase {
    private func parse(_ text: String) -> SharePolicy? {
        try? SharePolicy.parse(text).get()
    }

    private func key(
        _ policy: SharePolicy,
        path: String = "/events",
        query: String? = "topic=a",
        headers: [String: String] = [:]
    ) -> StreamKey {
        let lowered = Dictionary(uniqueKeysWithValues: headers.map { ($0.key.lowercased(), $0.value) })
        return policy.key(method: "GET", origin: "http://origin:3000", path: path, query: query) { lowered[$0] }
    }

    func testDefaultIncludesPathQueryCredentialsAndOrigin() {
        XCTAssertEqual(
            SharePolicy.default,
            SharePolicy(path: true, query: true, headers: ["authorization", "cookie", "origin"])
        )
    }

    func testParse() {
        XCTAssertEqual(self.parse("path,query"), SharePolicy(path: true, query: true, headers: []))
        XCTAssertEqual(self.parse("path"), SharePolicy(path: true, query: false, headers: []))
        XCTAssertEqual(
            self.parse(" Path , QUERY,authorization,Cookie "),
            SharePolicy(path: true, query: true, headers: ["authorization", "cookie"])
        )
        XCTAssertEqual(
            self.parse("path,header:X-Tenant"),
            SharePolicy(path: true, query: false, headers: ["x-tenant"])
        )
    }

    func testParseRejectsBadItemsNamingThem() {
        for (text, item) in [("path,bogus", "bogus"), ("path,", ""), ("header:", "header:"), ("", "")] {
            switch SharePolicy.parse(text) {
            case .success(let policy):
                XCTFail("\"\(text)\" parsed to \(policy)")
            case .failure(let error):
                XCTAssertEqual(error.item, item, text)
                XCTAssertEqual(
                    error.description,
                    "unknown item \"\(item)\" (expected path, query, authorization, cookie, origin or header:NAME)"
                )
            }
        }
    }

    /// BUG (minor): `header: X-Tenant` (a space after the colon, as in HTTP header syntax) keeps
    /// the space in the name, so the header is never found and every tenant shares one stream.
    func testHeaderItemNameIsTrimmed() {
        XCTAssertEqual(self.parse("path,header: X-Tenant")?.headers, ["x-tenant"])
    }

    func testDifferentAuthorizationMakesDifferentKeys() {
        let policy = SharePolicy.default
        let alice = self.key(policy, headers: ["Authorization": "Bearer alice"])
        let bob = self.key(policy, headers: ["Authorization": "Bearer bob"])
        let anonymous = self.key(policy)
        XCTAssertNotEqual(alice, bob)
        XCTAssertNotEqual(alice, anonymous)
        XCTAssertEqual(alice, self.key(policy, headers: ["Authorization": "Bearer alice"]))
        XCTAssertNotEqual(
            self.key(policy, headers: ["Cookie": "s=1"]),
            self.key(policy, headers: ["Cookie": "s=2"])
        )
        // A value in one header is not the same as that value in the other.
        XCTAssertNotEqual(
            self.key(policy, headers: ["Authorization": "x"]),
            self.key(policy, headers: ["Cookie": "x"])
        )
    }

    func testPathQueryPolicyIgnoresCredentials() {
        let policy = self.parse("path,query")!
        XCTAssertEqual(
            self.key(policy, headers: ["Authorization": "Bearer alice"]),
            self.key(policy, headers: ["Authorization": "Bearer bob", "Cookie": "c=1"])
        )
        XCTAssertNotEqual(self.key(policy, query: "topic=a"), self.key(policy, query: "topic=b"))
        XCTAssertNotEqual(self.key(policy, path: "/a"), self.key(policy, path: "/b"))
    }

    func testPolicyWithoutQueryIgnoresTheQuery() {
        let policy = self.parse("path")!
        XCTAssertEqual(self.key(policy, query: "topic=a"), self.key(policy, query: "topic=b"))
        XCTAssertEqual(self.key(policy, query: nil), self.key(policy, query: "x"))
        let withQuery = self.parse("path,query")!
        XCTAssertEqual(self.key(withQuery, query: nil), self.key(withQuery, query: ""), "no query is an empty query")
    }

    func testMethodAndOriginAreAlwaysPartOfTheKey() {
        let policy = self.parse("path")!
        let get = policy.key(method: "GET", origin: "http://a", path: "/", query: nil) { _ in nil }
        XCTAssertNotEqual(get, policy.key(method: "POST", origin: "http://a", path: "/", query: nil) { _ in nil })
        XCTAssertNotEqual(get, policy.key(method: "GET", origin: "http://b", path: "/", query: nil) { _ in nil })
    }

    func testKeyDescriptionHidesCredentials() {
        let key = self.key(.default, headers: ["Authorization": "Bearer s3cr3t-token", "Cookie": "session=abcdef123"])
        let text = key.description
        XCTAssertFalse(text.contains("s3cr3t"), text)
        XCTAssertFalse(text.contains("abcdef123"), text)
        XCTAssertTrue(text.hasPrefix("GET http://origin:3000/events?topic=… #"), text)
        // Different credentials show as different tags; the same ones as the same.
        let other = self.key(.default, headers: ["Authorization": "Bearer other"]).description
        XCTAssertNotEqual(text, other)
        XCTAssertEqual(text, self.key(.default, headers: ["Authorization": "Bearer s3cr3t-token", "Cookie": "session=abcdef123"]).description)
        // Nor does the key keep them anywhere (a debug dump, a crash report).
        XCTAssertFalse(String(reflecting: key).contains("s3cr3t"))
        XCTAssertFalse(String(reflecting: key).contains("abcdef123"))
        // No credentials, no hash.
        // Query values are masked too: EventSource clients often carry tokens there.
        XCTAssertEqual(self.key(.default).description, "GET http://origin:3000/events?topic=…")
    }
}

final class SubscriberQueueTests: XCTestCase {
    private func bytes(_ count: Int) -> ByteBuffer {
        ByteBuffer(repeating: UInt8(ascii: "x"), count: count)
    }

    func testOverflowExactlyPastTheLimit() {
        var queue = SubscriberQueue(limit: 100)
        XCTAssertEqual(queue.enqueue(self.bytes(60)), .queued)
        XCTAssertEqual(queue.enqueue(self.bytes(40)), .queued, "exactly at the limit is fine")
        XCTAssertEqual(queue.countedBytes, 100)
        XCTAssertEqual(queue.enqueue(self.bytes(1)), .overflow)
    }

    func testUncountedBytesDoNotCount() {
        var queue = SubscriberQueue(limit: 100)
        // Replay can be larger than the bound.
        XCTAssertEqual(queue.enqueue(self.bytes(5000), counted: false), .queued)
        XCTAssertEqual(queue.countedBytes, 0)
        XCTAssertEqual(queue.enqueue(self.bytes(100)), .queued)
        XCTAssertEqual(queue.enqueue(self.bytes(1)), .overflow)
    }

    func testDequeueFreesCountedBytesInOrder() {
        var queue = SubscriberQueue(limit: 100)
        _ = queue.enqueue(ByteBuffer(string: "replay"), counted: false)
        _ = queue.enqueue(ByteBuffer(string: "live-1"))
        _ = queue.enqueue(ByteBuffer(string: "live-2"))
        XCTAssertEqual(queue.countedBytes, 12)
        XCTAssertEqual(queue.dequeue().map { String(buffer: $0) }, "replay")
        XCTAssertEqual(queue.countedBytes, 12)
        XCTAssertEqual(queue.dequeue().map { String(buffer: $0) }, "live-1")
        XCTAssertEqual(queue.countedBytes, 6)
        XCTAssertEqual(queue.enqueue(self.bytes(94)), .queued, "room again once taken")
        XCTAssertEqual(queue.dequeue().map { String(buffer: $0) }, "live-2")
        XCTAssertFalse(queue.isEmpty)
        _ = queue.dequeue()
        XCTAssertTrue(queue.isEmpty)
        XCTAssertEqual(queue.countedBytes, 0)
        XCTAssertNil(queue.dequeue())
    }

    func testRemoveAll() {
        var queue = SubscriberQueue(limit: 10)
        _ = queue.enqueue(self.bytes(8))
        _ = queue.enqueue(self.bytes(8), counted: false)
        queue.removeAll()
        XCTAssertTrue(queue.isEmpty)
        XCTAssertEqual(queue.countedBytes, 0)
        XCTAssertEqual(queue.enqueue(self.bytes(10)), .queued)
    }
}
