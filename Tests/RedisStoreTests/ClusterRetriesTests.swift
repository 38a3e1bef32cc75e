import NIOCore
import Redis
import XCTest

@testable import RedisStore

/// The pure part of `RedisClusterClient`: what it does after each error reply.
final class ClusterRetriesTests: XCTestCase {
    private let node = RedisAddress(host: "127.0.0.1", port: 7000)
    private let other = RedisAddress(host: "127.0.0.1", port: 7001)

    private func error(_ message: String) -> RedisServerError { RedisServerError(message: message) }

    func testRedirectionsAreFollowedThreeTimesInAll() {
        var retries = RedisClusterClient.Retries()
        XCTAssertEqual(retries.step(after: self.error("MOVED 5 127.0.0.1:7001"), askedAt: self.node), .moved(slot: 5, to: self.other))
        XCTAssertEqual(retries.step(after: self.error("ASK 5 127.0.0.1:7001"), askedAt: self.node), .ask(self.other))
        XCTAssertEqual(retries.step(after: self.error("MOVED 5 127.0.0.1:7001"), askedAt: self.node), .moved(slot: 5, to: self.other))
        guard case .unavailable = retries.step(after: self.error("MOVED 5 127.0.0.1:7001"), askedAt: self.node) else {
            return XCTFail("a fourth redirection should give up")
        }
    }

    func testBusyClusterIsRetriedShortlyThenGivenUp() {
        var retries = RedisClusterClient.Retries()
        XCTAssertEqual(retries.step(after: self.error("TRYAGAIN Multiple keys request during rehashing of slot"), askedAt: self.node),
                       .retry(after: .milliseconds(50)))
        XCTAssertEqual(retries.step(after: self.error("CLUSTERDOWN The cluster is down"), askedAt: self.node), .retry(after: .milliseconds(100)))
        XCTAssertEqual(retries.step(after: self.error("CLUSTERDOWN Hash slot not served"), askedAt: self.node), .retry(after: .milliseconds(200)))
        guard case .unavailable(let reason) = retries.step(after: self.error("CLUSTERDOWN The cluster is down"), askedAt: self.node) else {
            return XCTFail("a fourth CLUSTERDOWN should give up")
        }
        XCTAssertTrue(reason.contains("CLUSTERDOWN"), reason)
        // Redirections have their own budget.
        XCTAssertEqual(retries.step(after: self.error("ASK 5 127.0.0.1:7001"), askedAt: self.node), .ask(self.other))
    }

    func testOtherErrorsAreTheCallers() {
        var retries = RedisClusterClient.Retries()
        for message in ["NOSCRIPT No matching script", "WRONGTYPE Operation against a key", "ERR syntax error", "NOTOWNER"] {
            XCTAssertEqual(retries.step(after: self.error(message), askedAt: self.node), .fail, message)
        }
    }

    func testUnusableRedirectionIsUnavailable() {
        var retries = RedisClusterClient.Retries()
        guard case .unavailable = retries.step(after: self.error("MOVED 5 ?:7001"), askedAt: self.node) else {
            return XCTFail("a redirection to an unknown endpoint cannot be followed")
        }
    }
}
