import NIOCore
import Redis
import XCTest

@testable import RedisStore

final class ClusterTopologyTests: XCTestCase {
    private let asked = RedisAddress(host: "10.0.0.9", port: 7000)

    // MARK: RESP by hand

    private func bulk(_ text: String) -> String { "$\(text.utf8.count)\r\n\(text)\r\n" }
    private func int(_ value: Int) -> String { ":\(value)\r\n" }
    private func array(_ items: String...) -> String { "*\(items.count)\r\n" + items.joined() }
    private func array(_ items: [String]) -> String { "*\(items.count)\r\n" + items.joined() }

    private func token(_ raw: String) throws -> RESPToken {
        try XCTUnwrap(try RESPToken(validating: ByteBuffer(string: raw)))
    }

    /// A node entry as Redis 7 sends it: endpoint, port, id, then metadata (a map in RESP3, a
    /// flat array in RESP2).
    private func node(_ host: String, _ port: Int, resp3: Bool, hostname: String? = nil) -> String {
        let id = String(repeating: String(port % 10), count: 40)
        let metadata: String
        if let hostname {
            metadata = resp3 ? "%1\r\n" + bulk("hostname") + bulk(hostname) : array(bulk("hostname"), bulk(hostname))
        } else {
            metadata = resp3 ? "%0\r\n" : "*0\r\n"
        }
        return array(bulk(host), int(port), bulk(id), metadata)
    }

    private func threeMasters(resp3: Bool) -> String {
        array(
            array(int(0), int(5460), node("127.0.0.1", 30001, resp3: resp3), node("127.0.0.1", 30004, resp3: resp3)),
            array(int(5461), int(10922), node("127.0.0.1", 30002, resp3: resp3, hostname: "b.local"), node("127.0.0.1", 30005, resp3: resp3)),
            array(int(10923), int(16383), node("127.0.0.1", 30003, resp3: resp3), node("127.0.0.1", 30006, resp3: resp3))
        )
    }

    // MARK: Parsing

    func testParsesRESP3AndRESP2Alike() throws {
        for resp3 in [true, false] {
            let topology = try ClusterTopology(parsing: try self.token(self.threeMasters(resp3: resp3)), askedAt: self.asked)
            XCTAssertEqual(topology.master(forSlot: 0), RedisAddress(host: "127.0.0.1", port: 30001))
            XCTAssertEqual(topology.master(forSlot: 5460), RedisAddress(host: "127.0.0.1", port: 30001))
            XCTAssertEqual(topology.master(forSlot: 5461), RedisAddress(host: "127.0.0.1", port: 30002))
            XCTAssertEqual(topology.master(forSlot: 10922), RedisAddress(host: "127.0.0.1", port: 30002))
            XCTAssertEqual(topology.master(forSlot: 16383), RedisAddress(host: "127.0.0.1", port: 30003))
            XCTAssertNil(topology.master(forSlot: 16384))
            XCTAssertNil(topology.master(forSlot: -1))
            // Replicas are not in the map.
            XCTAssertEqual(topology.masters, Set([30001, 30002, 30003].map { RedisAddress(host: "127.0.0.1", port: $0) }))
            XCTAssertEqual(topology.servedSlots, 16384)
        }
    }

    func testOlderNodeShapes() throws {
        // Redis 3: [ip, port]; Redis 4 to 6: [ip, port, id].
        let reply = self.array(
            self.array(self.int(0), self.int(99), self.array(self.bulk("10.0.0.1"), self.int(6379))),
            self.array(self.int(100), self.int(199), self.array(self.bulk("10.0.0.2"), self.int(6380), self.bulk("abc")))
        )
        let topology = try ClusterTopology(parsing: try self.token(reply), askedAt: self.asked)
        XCTAssertEqual(topology.master(forSlot: 50), RedisAddress(host: "10.0.0.1", port: 6379))
        XCTAssertEqual(topology.master(forSlot: 150), RedisAddress(host: "10.0.0.2", port: 6380))
        XCTAssertNil(topology.master(forSlot: 200))
        XCTAssertEqual(topology.servedSlots, 200)
    }

    func testSeveralRangesPerMaster() throws {
        let a = self.node("10.0.0.1", 7001, resp3: true)
        let b = self.node("10.0.0.2", 7002, resp3: true)
        let reply = self.array(
            self.array(self.int(0), self.int(10), a), self.array(self.int(11), self.int(11), b), self.array(self.int(12), self.int(16383), a)
        )
        let topology = try ClusterTopology(parsing: try self.token(reply), askedAt: self.asked)
        XCTAssertEqual(topology.master(forSlot: 11)?.port, 7002)
        XCTAssertEqual(topology.master(forSlot: 12)?.port, 7001)
        XCTAssertEqual(topology.masters.count, 2)
    }

    func testUnknownEndpoints() throws {
        // null or "": the node that was asked (with the port given); "?": unknown, unserved.
        let reply = self.array(
            self.array(self.int(0), self.int(9), self.array("_\r\n", self.int(7001), self.bulk("id1"))),
            self.array(self.int(10), self.int(19), self.array("$-1\r\n", self.int(7002), self.bulk("id2"))),
            self.array(self.int(20), self.int(29), self.array(self.bulk(""), self.int(7003), self.bulk("id3"))),
            self.array(self.int(30), self.int(39), self.array(self.bulk("?"), self.int(7004), self.bulk("id4")))
        )
        let topology = try ClusterTopology(parsing: try self.token(reply), askedAt: self.asked)
        XCTAssertEqual(topology.master(forSlot: 0), RedisAddress(host: "10.0.0.9", port: 7001))
        XCTAssertEqual(topology.master(forSlot: 15), RedisAddress(host: "10.0.0.9", port: 7002))
        XCTAssertEqual(topology.master(forSlot: 29), RedisAddress(host: "10.0.0.9", port: 7003))
        XCTAssertNil(topology.master(forSlot: 30))
        XCTAssertEqual(topology.servedSlots, 30)
    }

    func testIPv6AndHostNameEndpoints() throws {
        let reply = self.array(
            self.array(self.int(0), self.int(0), self.array(self.bulk("::1"), self.int(7001))),
            self.array(self.int(1), self.int(1), self.array("+redis-a.internal\r\n", self.int(7002)))
        )
        let topology = try ClusterTopology(parsing: try self.token(reply), askedAt: self.asked)
        XCTAssertEqual(topology.master(forSlot: 0), RedisAddress(host: "::1", port: 7001))
        XCTAssertEqual(topology.master(forSlot: 1), RedisAddress(host: "redis-a.internal", port: 7002))
    }

    func testEmptyReplyServesNothing() throws {
        let topology = try ClusterTopology(parsing: try self.token("*0\r\n"), askedAt: self.asked)
        XCTAssertEqual(topology.servedSlots, 0)
        XCTAssertTrue(topology.masters.isEmpty)
        XCTAssertEqual(topology, ClusterTopology())
    }

    func testRejectsMalformedReplies() throws {
        let good = self.node("10.0.0.1", 7001, resp3: false)
        let malformed: [(String, String)] = [
            ("not an array", "+OK\r\n"),
            ("an error", "-ERR This instance has cluster support disabled\r\n"),
            ("null", "_\r\n"),
            ("entry not an array", self.array(self.int(1))),
            ("entry without master", self.array(self.array(self.int(0), self.int(10)))),
            ("start after end", self.array(self.array(self.int(10), self.int(9), good))),
            ("end past the last slot", self.array(self.array(self.int(0), self.int(16384), good))),
            ("negative start", self.array(self.array(self.int(-1), self.int(5), good))),
            ("slot not a number", self.array(self.array(self.bulk("zero"), self.int(5), good))),
            ("node not an array", self.array(self.array(self.int(0), self.int(5), self.bulk("10.0.0.1:7001")))),
            ("node without port", self.array(self.array(self.int(0), self.int(5), self.array(self.bulk("10.0.0.1"))))),
            ("port 0", self.array(self.array(self.int(0), self.int(5), self.array(self.bulk("10.0.0.1"), self.int(0))))),
            ("port too large", self.array(self.array(self.int(0), self.int(5), self.array(self.bulk("10.0.0.1"), self.int(65536))))),
            ("port not a number", self.array(self.array(self.int(0), self.int(5), self.array(self.bulk("10.0.0.1"), self.bulk("x"))))),
            ("endpoint a number", self.array(self.array(self.int(0), self.int(5), self.array(self.int(1), self.int(7001))))),
        ]
        for (why, raw) in malformed {
            let reply = try self.token(raw)
            XCTAssertThrowsError(try ClusterTopology(parsing: reply, askedAt: self.asked), why) { error in
                XCTAssertTrue(error is ClusterTopology.ParseError, why)
            }
        }
    }

    func testAssignMovesOneSlot() throws {
        var topology = try ClusterTopology(parsing: try self.token(self.threeMasters(resp3: true)), askedAt: self.asked)
        let newNode = RedisAddress(host: "127.0.0.1", port: 30007)
        topology.assign(slot: 42, to: newNode)
        XCTAssertEqual(topology.master(forSlot: 42), newNode)
        XCTAssertEqual(topology.master(forSlot: 41)?.port, 30001)
        XCTAssertEqual(topology.masters.count, 4)
        // A master that gives up its only slot is no longer one.
        var single = try ClusterTopology(
            parsing: try self.token(self.array(self.array(self.int(7), self.int(7), self.node("10.0.0.1", 7001, resp3: true)))), askedAt: self.asked)
        single.assign(slot: 7, to: newNode)
        XCTAssertEqual(single.masters, [newNode])
        single.assign(slot: 16384, to: newNode)  // out of range: ignored
        XCTAssertEqual(single.servedSlots, 1)
    }

    // MARK: Redirections

    func testParsesRedirections() {
        XCTAssertEqual(ClusterRedirect(errorMessage: "MOVED 3999 127.0.0.1:6381", askedAt: self.asked),
                       .moved(slot: 3999, to: RedisAddress(host: "127.0.0.1", port: 6381)))
        XCTAssertEqual(ClusterRedirect(errorMessage: "ASK 3999 127.0.0.1:6381", askedAt: self.asked),
                       .ask(slot: 3999, to: RedisAddress(host: "127.0.0.1", port: 6381)))
        XCTAssertEqual(ClusterRedirect(errorMessage: "MOVED 0 redis-b.internal:7000", askedAt: self.asked),
                       .moved(slot: 0, to: RedisAddress(host: "redis-b.internal", port: 7000)))
        // IPv6: Redis writes the address without brackets; the port is after the last colon.
        XCTAssertEqual(ClusterRedirect(errorMessage: "MOVED 16383 ::1:6381", askedAt: self.asked),
                       .moved(slot: 16383, to: RedisAddress(host: "::1", port: 6381)))
        XCTAssertEqual(ClusterRedirect(errorMessage: "ASK 1 2001:db8::7:6381", askedAt: self.asked),
                       .ask(slot: 1, to: RedisAddress(host: "2001:db8::7", port: 6381)))
        XCTAssertEqual(ClusterRedirect(errorMessage: "ASK 1 [2001:db8::7]:6381", askedAt: self.asked),
                       .ask(slot: 1, to: RedisAddress(host: "2001:db8::7", port: 6381)))
        // An unknown endpoint: the host that was asked.
        XCTAssertEqual(ClusterRedirect(errorMessage: "MOVED 5 :6380", askedAt: self.asked),
                       .moved(slot: 5, to: RedisAddress(host: "10.0.0.9", port: 6380)))
        let redirect = ClusterRedirect(errorMessage: "ASK 12 h:1", askedAt: self.asked)
        XCTAssertEqual(redirect?.slot, 12)
        XCTAssertEqual(redirect?.address, RedisAddress(host: "h", port: 1))
    }

    func testRefusesWhatIsNotARedirection() {
        for message in [
            "ERR unknown command", "MOVED", "MOVED 3999", "MOVED abc 127.0.0.1:6381", "MOVED -1 127.0.0.1:6381",
            "MOVED 16384 127.0.0.1:6381", "MOVED 1 127.0.0.1", "MOVED 1 127.0.0.1:0", "MOVED 1 127.0.0.1:70000",
            "MOVED 1 127.0.0.1:x", "MOVED 1 ?:6379", "MOVED 1 127.0.0.1:6381 extra", "moved 1 127.0.0.1:6381",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            XCTAssertNil(ClusterRedirect(errorMessage: message, askedAt: self.asked), message)
        }
    }
}
