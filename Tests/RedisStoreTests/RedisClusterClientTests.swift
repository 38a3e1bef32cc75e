import Foundation
import LifelineCore
import Logging
import NIOCore
import NIOPosix
import Redis
import RedisTestSupport
import XCTest

@testable import RedisStore

/// RedisClusterClient against a real cluster of six nodes (three masters), shared by the tests of
/// this class; skipped when redis-server or redis-cli is missing.
final class RedisClusterClientTests: XCTestCase {
    nonisolated(unsafe) private static var sharedCluster: RedisClusterProcess?
    nonisolated(unsafe) private static var setUpFailure: String?

    override class func setUp() {
        super.setUp()
        guard RedisClusterProcess.unavailableReason == nil else { return }
        do {
            Self.sharedCluster = try RedisClusterProcess()
        } catch {
            Self.setUpFailure = "\(error)"
        }
    }

    override class func tearDown() {
        Self.sharedCluster?.stop()
        Self.sharedCluster = nil
        super.tearDown()
    }

    private var harness: ClusterTestHarness!

    override func setUpWithError() throws {
        if let reason = RedisClusterProcess.unavailableReason { throw XCTSkip(reason) }
        let cluster = try XCTUnwrap(Self.sharedCluster, Self.setUpFailure ?? "no cluster")
        self.harness = try ClusterTestHarness(cluster: cluster)
    }

    override func tearDown() {
        self.harness?.shutDown()
        self.harness = nil
    }

    private var cluster: RedisClusterProcess { self.harness.cluster }

    // MARK: Slots

    func testSlotsAgreeWithTheServer() async throws {
        let connection = try await self.harness.direct(self.cluster.ports[0])
        var keys = ["foo", "bar", "", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "é{ü}", "lifeline:{0123abcd}:events"]
        keys += (0..<200).map { _ in ClusterTestHarness.randomKey() }
        for key in keys {
            let slot = try await connection.send(RESPCommand("CLUSTER", "KEYSLOT", .string(key))).get()
            XCTAssertEqual(slot.int.map(Int.init), ClusterSlot.of(key), key)
        }
        // And as redis-cli says it, for a few.
        for key in keys.prefix(20) where !key.isEmpty {
            let output = try self.cluster.cli(self.cluster.ports[1], "CLUSTER", "KEYSLOT", key)
            XCTAssertEqual(Int(output.trimmingCharacters(in: .whitespacesAndNewlines)), ClusterSlot.of(key), key)
        }
    }

    // MARK: Routing

    func testKeysLandOnTheirSlotsMaster() async throws {
        let client = try await self.harness.makeClient()
        let keys = (0..<200).map { "k:\($0):\(UUID().uuidString)" }
        // All at once: pipelined on each node's connection, the first ones waiting for the map.
        let sets = try await self.harness.onLoop { () -> EventLoopFuture<[RESPToken]> in
            let futures = keys.map { key in client.value.send(RESPCommand("SET", .string(key), .string("v-" + key)), key: key) }
            return EventLoopFuture.whenAllSucceed(futures, on: client.value.eventLoop)
        }
        XCTAssertEqual(sets.count, 200)
        XCTAssertTrue(sets.allSatisfy { $0.string == "OK" })

        let masters = try self.cluster.masterPorts()
        XCTAssertEqual(masters.count, 3)
        var perMaster: [Int: Int] = [:]
        for key in keys {
            // Exactly one master has it; the others redirect.
            var holders: [Int] = []
            for port in masters {
                let reply = try await self.harness.direct(port).send([RESPCommand("GET", .string(key))]).get()[0]
                if reply.string == "v-" + key { holders.append(port) } else { XCTAssertTrue(reply.errorMessage?.hasPrefix("MOVED") ?? false, "\(reply)") }
            }
            XCTAssertEqual(holders.count, 1, key)
            let address = try await self.harness.onLoop { client.value.address(forKey: key) }
            XCTAssertEqual(address, RedisAddress(host: "127.0.0.1", port: holders[0]), key)
            perMaster[holders[0], default: 0] += 1
        }
        XCTAssertEqual(Set(perMaster.keys), Set(masters), "200 random keys reach every master")

        let gets = try await self.harness.onLoop { () -> EventLoopFuture<[RESPToken]> in
            EventLoopFuture.whenAllSucceed(keys.map { client.value.send(RESPCommand("GET", .string($0)), key: $0) }, on: client.value.eventLoop)
        }
        XCTAssertEqual(gets.map(\.string), keys.map { "v-" + $0 })
        let keyless = try await self.harness.onLoop { client.value.send(RESPCommand("PING"), key: nil) }
        XCTAssertEqual(keyless.string, "PONG")
        let up = try await self.harness.onLoop { client.value.eventLoop.makeSucceededFuture(client.value.isUp) }
        XCTAssertTrue(up)
        // An error reply is the caller's, as it is.
        do {
            _ = try await self.harness.onLoop { client.value.send(RESPCommand("INCR", .string(keys[0])), key: keys[0]) }
            XCTFail("INCR of a string should fail")
        } catch let error as RedisServerError {
            XCTAssertEqual(error.code, "ERR")
        }
    }

    func testScriptsRunOnTheNodeOfTheirKeys() async throws {
        let client = try await self.harness.makeClient()
        // A script no node has seen: the first run on each node is NOSCRIPT, then EVAL.
        let script = RedisScript("""
            -- \(UUID().uuidString)
            redis.call('SET', KEYS[1], ARGV[1])
            redis.call('INCR', KEYS[2])
            return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}
            """)
        let masters = try self.cluster.masterPorts()
        for port in masters {
            let exists = try await self.harness.direct(port).send(RESPCommand("SCRIPT", "EXISTS", .string(script.sha1))).get()
            XCTAssertEqual(exists.array?.first?.int, 0)
        }
        let tags = ClusterTestHarness.tagsSpreadOverSlots(perThird: 3)
        for round in 1...2 {
            for tag in tags {
                let keys = ["s:{\(tag)}:a", "s:{\(tag)}:b"]
                let reply = try await self.harness.onLoop { client.value.run(script, keys: keys, arguments: [.string("hello")]) }
                XCTAssertEqual(reply.array.map { $0.map(\.string) }, ["hello", "\(round)"])
            }
        }
        for tag in tags {
            var holders: [Int] = []
            for port in masters {
                let reply = try await self.harness.direct(port).send([RESPCommand("GET", .string("s:{\(tag)}:b"))]).get()[0]
                if reply.string == "2" { holders.append(port) }
            }
            let address = try await self.harness.onLoop { client.value.address(forKey: "s:{\(tag)}:a") }
            XCTAssertEqual(holders, [address.port], tag)
        }
        for port in masters {
            let exists = try await self.harness.direct(port).send(RESPCommand("SCRIPT", "EXISTS", .string(script.sha1))).get()
            XCTAssertEqual(exists.array?.first?.int, 1, "the script was loaded on \(port)")
        }
    }

    func testMigratingSlotIsFollowedWithAskThenMoved() async throws {
        let client = try await self.harness.makeClient()
        let tag = "mig-\(UUID().uuidString.prefix(8))"
        let (one, two, new) = ("{\(tag)}:one", "{\(tag)}:two", "{\(tag)}:new")
        let slot = ClusterSlot.of(one)
        for key in [one, two] {
            _ = try await self.harness.onLoop { client.value.send(RESPCommand("SET", .string(key), .string("v-" + key)), key: key) }
        }
        let source = try await self.harness.onLoop { client.value.address(forKey: one) }.port
        let target = try XCTUnwrap(try self.cluster.masterPorts().first { $0 != source })
        let (sourceID, targetID) = (try self.cluster.nodeID(port: source), try self.cluster.nodeID(port: target))

        try self.cluster.cli(target, "CLUSTER", "SETSLOT", String(slot), "IMPORTING", sourceID)
        try self.cluster.cli(source, "CLUSTER", "SETSLOT", String(slot), "MIGRATING", targetID)
        let migrated = try self.cluster.cli(source, "MIGRATE", "127.0.0.1", String(target), "", "0", "5000", "KEYS", one)
        XCTAssertTrue(migrated.contains("OK"), migrated)

        // During: the moved key and a new one are at the target (ASK), the other still at the source.
        let get = { (key: String) async throws -> String? in
            try await self.harness.onLoop { client.value.send(RESPCommand("GET", .string(key)), key: key) }.string
        }
        let movedKey = try await get(one)
        XCTAssertEqual(movedKey, "v-" + one)
        let stayingKey = try await get(two)
        XCTAssertEqual(stayingKey, "v-" + two)
        let set = try await self.harness.onLoop { client.value.send(RESPCommand("SET", .string(new), "fresh"), key: new) }
        XCTAssertEqual(set.string, "OK")
        let script = RedisScript("-- \(UUID().uuidString)\nreturn redis.call('GET', KEYS[1])")
        let scripted = try await self.harness.onLoop { client.value.run(script, keys: [one], arguments: []) }
        XCTAssertEqual(scripted.string, "v-" + one, "ASKING, EVALSHA, NOSCRIPT, ASKING, EVAL at the target")
        let during = try await self.harness.onLoop { client.value.address(forKey: one) }
        XCTAssertEqual(during.port, source, "ASK does not change the map")
        let atTarget = try await self.harness.direct(target).send([RESPCommand("ASKING"), RESPCommand("GET", .string(new))]).get()
        XCTAssertEqual(atTarget[1].string, "fresh")

        // After: the slot is the target's; the client hears MOVED and follows it at once.
        let rest = try self.cluster.cli(source, "MIGRATE", "127.0.0.1", String(target), "", "0", "5000", "KEYS", two)
        XCTAssertTrue(rest.contains("OK"), rest)
        for port in [target, source] + (try self.cluster.masterPorts()).filter({ $0 != source && $0 != target }) {
            try self.cluster.cli(port, "CLUSTER", "SETSLOT", String(slot), "NODE", targetID)
        }
        let afterMove = try await get(two)
        XCTAssertEqual(afterMove, "v-" + two)
        let after = try await self.harness.onLoop { client.value.address(forKey: two) }
        XCTAssertEqual(after.port, target, "MOVED updates the slot at once")
        for key in [one, two, new] {
            let value = try await get(key)
            XCTAssertNotNil(value, key)
        }
        // The refresh MOVED asked for agrees.
        try await Task.sleep(nanoseconds: 300_000_000)
        let refreshed = try await self.harness.onLoop { client.value.address(forKey: one) }
        XCTAssertEqual(refreshed.port, target)
    }

    func testUnreachableSeedsFailFastAsUnavailable() async throws {
        // Ports nobody listens on: connection refused, then backing off.
        let client = try await self.harness.makeClient(seeds: [RedisAddress(host: "127.0.0.1", port: 1), RedisAddress(host: "127.0.0.1", port: 2)])
        let started = Date()
        for _ in 0..<3 {
            do {
                _ = try await self.harness.onLoop { client.value.send(RESPCommand("GET", "x"), key: "x") }
                XCTFail("no node is reachable")
            } catch {
                XCTAssertTrue(error is RedisUnavailable, "\(error)")
            }
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        let up = try await self.harness.onLoop { client.value.eventLoop.makeSucceededFuture(client.value.isUp) }
        XCTAssertFalse(up)
    }

    func testOneReachableSeedIsEnough() async throws {
        let seeds = [RedisAddress(host: "127.0.0.1", port: 1), RedisAddress(host: "127.0.0.1", port: self.cluster.ports.last!)]
        let client = try await self.harness.makeClient(seeds: seeds)
        let reply = try await self.harness.onLoop { client.value.send(RESPCommand("SET", "seeded", "1"), key: "seeded") }
        XCTAssertEqual(reply.string, "OK")
    }

    // MARK: The history store

    func testHistoryStoreSpreadsStreamsOverEveryMaster() async throws {
        let loop = self.harness.loop
        let endpoint = RedisEndpoint(topology: .cluster(seeds: self.cluster.seeds))
        let store = RedisHistoryStore(
            configuration: .init(endpoint: endpoint, lease: .seconds(5)), instanceName: "cluster-test", eventLoops: [loop],
            logger: Logger(label: "test"))
        defer { store.close() }
        let names = ClusterTestHarness.tagsSpreadOverSlots(perThird: 8).map(SharedStreamName.init)
        XCTAssertEqual(names.count, 24)
        for name in names {
            let result = try await loop.flatSubmit { () -> EventLoopFuture<String> in
                let history = store.history(named: name, on: loop)
                let promise = loop.makePromise(of: String.self)
                history.claim(startFresh: false, nextSequence: 1) { claim in
                    guard case .owner(let token, let position) = claim else { return promise.succeed("claim: \(claim)") }
                    let events = (1...3).map { sequence in
                        EncodedEvent(sequence: UInt64(sequence), id: "e\(sequence)", bytes: ByteBuffer(string: "id: e\(sequence)\ndata: \(sequence)\n\n"), receivedAt: .now())
                    }
                    history.append(events, token: token, epoch: position.epoch, originHeaders: [("x-origin", "1")]) { append in
                        guard append == .stored else { return promise.succeed("append: \(append)") }
                        history.events(after: "e1") { lookup in
                            guard case .hit(let epoch, let sequence, let found) = lookup else { return promise.succeed("lookup: \(lookup)") }
                            let ok = epoch == position.epoch && sequence == 1 && found.map(\.sequence) == [2, 3]
                                && found.map { String(buffer: $0.bytes) } == events.dropFirst().map { String(buffer: $0.bytes) }
                            history.release(token: token)
                            promise.succeed(ok ? "ok" : "lookup: \(epoch) \(sequence) \(found.map(\.sequence))")
                        }
                    }
                }
                return promise.futureResult
            }.get()
            XCTAssertEqual(result, "ok", name.value)
        }
        // Where each history is: on exactly one master, the one of its slot.
        let masters = try self.cluster.masterPorts()
        var used: Set<Int> = []
        for name in names {
            let key = HistoryKeys(name).history
            var holders: [Int] = []
            for port in masters {
                let count = try await self.harness.direct(port).send(RESPCommand("CLUSTER", "COUNTKEYSINSLOT", .integer(ClusterSlot.of(key)))).get()
                let exists = try await self.harness.direct(port).send([RESPCommand("EXISTS", .string(key))]).get()[0]
                if exists.int == 1 {
                    holders.append(port)
                    // The lease was given back: meta and events are left, in one slot.
                    XCTAssertGreaterThanOrEqual(count.int ?? 0, 2, "meta and events share the slot")
                }
            }
            XCTAssertEqual(holders.count, 1, key)
            used.formUnion(holders)
        }
        XCTAssertEqual(used, Set(masters), "24 streams over all 3 masters")
        // The store's probe sees the cluster.
        let deadline = Date().addingTimeInterval(3)
        while !store.isReachable, Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        XCTAssertTrue(store.isReachable)
    }
}

/// A master killed: its slots fail as unavailable, then work again once its replica took over.
/// A cluster of its own, since the test changes it for good.
final class RedisClusterFailoverTests: XCTestCase {
    func testKilledMasterIsReplacedByItsReplica() async throws {
        if let reason = RedisClusterProcess.unavailableReason { throw XCTSkip(reason) }
        let cluster = try RedisClusterProcess()
        defer { cluster.stop() }
        let harness = try ClusterTestHarness(cluster: cluster)
        defer { harness.shutDown() }
        let client = try await harness.makeClient()

        let key = "failover:\(UUID().uuidString)"
        _ = try await harness.onLoop { client.value.send(RESPCommand("SET", .string(key), "before"), key: key) }
        let victim = try await harness.onLoop { client.value.address(forKey: key) }.port
        // The replica has it before its master dies.
        let acknowledged = try await harness.direct(victim).send(RESPCommand("WAIT", 1, 2000)).get()
        XCTAssertEqual(acknowledged.int, 1)

        cluster.kill(port: victim)
        let killedAt = Date()
        do {
            _ = try await harness.onLoop { client.value.send(RESPCommand("GET", .string(key)), key: key) }
            XCTFail("the master is dead")
        } catch {
            XCTAssertTrue(error is RedisUnavailable, "\(error)")
        }
        var value: String?
        var failures = 0
        while value == nil, Date().timeIntervalSince(killedAt) < 10 {
            do {
                value = try await harness.onLoop { client.value.send(RESPCommand("GET", .string(key)), key: key) }.string
            } catch {
                XCTAssertTrue(error is RedisUnavailable, "\(error)")
                failures += 1
                try await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        XCTAssertEqual(value, "before", "served by the promoted replica within 10 s")
        let promoted = try await harness.onLoop { client.value.address(forKey: key) }.port
        XCTAssertNotEqual(promoted, victim)
        XCTAssertTrue(try cluster.masterPorts(askingPort: promoted).contains(promoted))
        let write = try await harness.onLoop { client.value.send(RESPCommand("SET", .string(key), "after"), key: key) }
        XCTAssertEqual(write.string, "OK")
        print("failover: served again after \(String(format: "%.1f", Date().timeIntervalSince(killedAt))) s, \(failures) failed tries")
    }
}

/// One event loop, clients on it, and plain connections to single nodes, for the tests above.
final class ClusterTestHarness: @unchecked Sendable {
    // @unchecked: used from one test at a time; the clients are touched only on `loop`.
    let cluster: RedisClusterProcess
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: EventLoop { self.group.next() }
    private var clients: [NIOLoopBound<RedisClusterClient>] = []
    private var connections: [Int: RedisConnection] = [:]

    init(cluster: RedisClusterProcess) throws {
        self.cluster = cluster
    }

    func makeClient(seeds: [RedisAddress]? = nil, commandTimeout: TimeAmount = .seconds(2)) async throws -> NIOLoopBound<RedisClusterClient> {
        let endpoint = RedisEndpoint(topology: .cluster(seeds: seeds ?? self.cluster.seeds), commandTimeout: commandTimeout)
        let loop = self.loop
        let client = try await loop.submit {
            NIOLoopBound(RedisClusterClient(endpoint: endpoint, eventLoop: loop, logger: Logger(label: "redis-cluster-test")), eventLoop: loop)
        }.get()
        self.clients.append(client)
        return client
    }

    /// Runs `body` on the loop and waits for its future.
    func onLoop<Value: Sendable>(_ body: @escaping @Sendable () -> EventLoopFuture<Value>) async throws -> Value {
        try await self.loop.flatSubmit(body).get()
    }

    /// A plain connection to one node (no redirection followed), kept for the test.
    func direct(_ port: Int) async throws -> RedisConnection {
        if let connection = self.connections[port] { return connection }
        let connection = try await RedisConnection.connect(
            to: RedisAddress(host: "127.0.0.1", port: port), configuration: .init(), on: self.loop
        ).get()
        self.connections[port] = connection
        return connection
    }

    func shutDown() {
        let clients = self.clients
        try? self.loop.submit { for client in clients { client.value.close() } }.wait()
        for connection in self.connections.values { connection.close() }
        self.clients = []
        self.connections = [:]
        try? self.group.syncShutdownGracefully()
    }

    static func randomKey() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:{}-_.é")
        return String((0..<Int.random(in: 1...24)).map { _ in alphabet.randomElement()! })
    }

    /// Which third of the slot space (as `redis-cli --cluster create` deals it to three masters).
    static func slotThird(_ slot: Int) -> Int {
        slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2
    }

    /// Random names, `perThird` of them hashing into each third of the slots: with three masters
    /// made by `redis-cli`, some on each.
    static func tagsSpreadOverSlots(perThird: Int) -> [String] {
        var counts = [0, 0, 0]
        var tags: [String] = []
        while tags.count < 3 * perThird {
            let tag = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            let third = Self.slotThird(ClusterSlot.of(tag))
            guard counts[third] < perThird else { continue }
            counts[third] += 1
            tags.append(tag)
        }
        return tags
    }
}
