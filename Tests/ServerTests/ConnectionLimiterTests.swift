import Dispatch
import XCTest

@testable import Server

final class ConnectionLimiterTests: XCTestCase {
    private func admitted(_ result: Result<ConnectionLimiter.Admission, ConnectionLimiter.Refusal>) -> ConnectionLimiter.Admission? {
        if case .success(let admission) = result { return admission }
        return nil
    }

    func testTotalAndPerAddressLimitsAndRefusalsTakeNoSlot() {
        let limiter = ConnectionLimiter(maxClients: 3, maxPerAddress: 2)
        let a1 = self.admitted(limiter.admit(address: "10.0.0.1"))
        let a2 = self.admitted(limiter.admit(address: "10.0.0.1"))
        XCTAssertNotNil(a1)
        XCTAssertNotNil(a2)
        guard case .failure(.tooManyFromAddress) = limiter.admit(address: "10.0.0.1") else {
            return XCTFail("a third connection from one address is over --max-clients-per-ip=2")
        }
        XCTAssertEqual(limiter.total, 2, "a refusal takes no slot")
        let b1 = self.admitted(limiter.admit(address: "10.0.0.2"))
        XCTAssertNotNil(b1)
        guard case .failure(.tooManyClients) = limiter.admit(address: "10.0.0.3") else {
            return XCTFail("a fourth connection is over --max-clients=3")
        }
        limiter.release(a1!, address: "10.0.0.1")
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 1)
        XCTAssertNotNil(self.admitted(limiter.admit(address: "10.0.0.3")), "a released slot is free again")
        XCTAssertEqual(limiter.total, 3)
    }

    func testAReloadThatChangesThePerAddressLimitKeepsTheCountsRight() {
        let limiter = ConnectionLimiter(maxClients: nil, maxPerAddress: nil)
        let before = self.admitted(limiter.admit(address: "10.0.0.1"))!
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 0, "addresses are not counted without the limit")
        limiter.updateLimits(maxClients: nil, maxPerAddress: 1)
        let after = self.admitted(limiter.admit(address: "10.0.0.1"))!
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 1)
        limiter.release(before, address: "10.0.0.1")
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 1, "releasing an uncounted connection leaves the count")
        guard case .failure(.tooManyFromAddress) = limiter.admit(address: "10.0.0.1") else {
            return XCTFail("the counted connection still holds the address's one slot")
        }
        limiter.updateLimits(maxClients: nil, maxPerAddress: nil)
        limiter.release(after, address: "10.0.0.1")
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 0)
        XCTAssertEqual(limiter.total, 0)
    }

    func testConcurrentAdmissionsNeverExceedTheLimit() {
        let limiter = ConnectionLimiter(maxClients: 3, maxPerAddress: 50)
        let rounds = 20_000
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            let address = "10.0.0.\(worker % 2)"
            for _ in 0..<rounds {
                if case .success(let admission) = limiter.admit(address: address) {
                    XCTAssertLessThanOrEqual(limiter.total, 3)
                    limiter.release(admission, address: address)
                }
            }
        }
        XCTAssertEqual(limiter.total, 0)
        XCTAssertEqual(limiter.count(for: "10.0.0.0"), 0)
        XCTAssertEqual(limiter.count(for: "10.0.0.1"), 0)
    }
}
