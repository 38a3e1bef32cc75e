import Redis
import XCTest

@testable import RedisStore

final class RedisURLTests: XCTestCase {
    func testStandaloneWithUserPasswordAndDatabase() throws {
        let url = try RedisURL(parsing: "redis://lifeline:p%40ss%3Aword@redis.internal:6380/3")
        XCTAssertEqual(url.addresses, [RedisAddress(host: "redis.internal", port: 6380)])
        XCTAssertEqual(url.username, "lifeline")
        XCTAssertEqual(url.password, "p@ss:word")
        XCTAssertEqual(url.database, 3)
        XCTAssertFalse(url.isCluster)
        XCTAssertFalse(url.usesTLS)
    }

    func testDefaultsAndALonePassword() throws {
        let url = try RedisURL(parsing: "rediss://secret@[::1]")
        XCTAssertEqual(url.addresses, [RedisAddress(host: "::1", port: 6379)])
        XCTAssertNil(url.username)
        XCTAssertEqual(url.password, "secret")
        XCTAssertTrue(url.usesTLS)
        XCTAssertEqual(url.database, 0)
    }

    func testClusterSeeds() throws {
        let url = try RedisURL(parsing: "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[fe80::1]:7002")
        XCTAssertTrue(url.isCluster)
        XCTAssertEqual(url.addresses.map(\.port), [7000, 7001, 7002])
        XCTAssertEqual(url.addresses.last?.host, "fe80::1")
        XCTAssertTrue(try RedisURL(parsing: "rediss+cluster://a:1").usesTLS)
    }

    func testMistakesAreNamed() {
        func error(_ text: String) -> String {
            do {
                _ = try RedisURL(parsing: text)
                return "parsed"
            } catch {
                return error.description
            }
        }
        XCTAssertTrue(error("localhost:6379").hasPrefix("no scheme"))
        XCTAssertTrue(error("http://x:1").hasPrefix("unknown scheme \"http\""))
        XCTAssertTrue(error("redis://a:1,b:2").hasPrefix("several hosts need redis+cluster://"))
        XCTAssertTrue(error("redis+cluster://a:1/2").hasPrefix("a Redis Cluster has no database number"))
        XCTAssertTrue(error("redis://a:99999").hasPrefix("bad port"))
        XCTAssertTrue(error("redis://a:1/x").hasPrefix("database \"x\" is not a number"))
        XCTAssertTrue(error("redis://u:p%zz@a").hasPrefix("bad percent-encoding"))
        XCTAssertTrue(error("redis://").hasPrefix("no host"))
        XCTAssertTrue(error("redis://a?timeout=1").hasPrefix("query options are not supported"))
    }

    func testThePasswordIsRedactedForDisplay() {
        XCTAssertEqual(RedisURL.redactingPassword("redis://u:p%40ss@h:1/2"), "redis://u:***@h:1/2")
        XCTAssertEqual(RedisURL.redactingPassword("rediss://secret@h"), "rediss://***@h")
        XCTAssertEqual(RedisURL.redactingPassword("redis+cluster://a:1,b:2"), "redis+cluster://a:1,b:2")
        XCTAssertEqual(RedisURL.redactingPassword("not a url"), "not a url")
    }
}
