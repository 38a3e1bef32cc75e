import NIOCore
import NIOPosix
import Redis
import RedisTestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// RedisConnection against a real `redis-server` (skipped when there is none on the PATH).
final class RedisConnectionTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var servers: [RedisServerProcess] = []

    override func setUpWithError() throws {
        try XCTSkipIf(RedisServerProcess.executablePath == nil, "redis-server is not on the PATH")
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        for server in self.servers { server.stop() }
        self.servers = []
        try? self.group?.syncShutdownGracefully()
        self.group = nil
    }

    private func startServer(_ arguments: [String] = []) throws -> RedisServerProcess {
        let server = try RedisServerProcess(arguments: arguments)
        self.servers.append(server)
        return server
    }

    private func connect(
        _ server: RedisServerProcess, _ configuration: RedisConnection.Configuration = .init()
    ) async throws -> RedisConnection {
        try await RedisConnection.connect(to: server.address, configuration: configuration, on: self.group.next()).get()
    }

    private func send(_ connection: RedisConnection, _ name: String, _ arguments: RESPArgument...) async throws -> RESPToken {
        try await connection.send(RESPCommand(name, arguments: arguments)).get()
    }

    /// Waits for `future` to fail and returns the error.
    private func failure<T: Sendable>(_ future: EventLoopFuture<T>, file: StaticString = #filePath, line: UInt = #line) async -> (any Error)? {
        do {
            let value = try await future.get()
            XCTFail("expected a failure, got \(value)", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Commands

    func testSetGetRoundTrip() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        let set = try await send(connection, "SET", "greeting", "hello").string
        XCTAssertEqual(set, "OK")
        let get = try await send(connection, "GET", "greeting").string
        XCTAssertEqual(get, "hello")
        let missing = try await send(connection, "GET", "missing").isNull
        XCTAssertTrue(missing)
        let pong = try await send(connection, "PING").string
        XCTAssertEqual(pong, "PONG")
        let hello = try await send(connection, "HELLO")
        XCTAssertEqual(hello.map?["proto"]?.int, 3, "the connection speaks RESP3")
        connection.close()
        try await connection.closeFuture.get()
    }

    func testPipelinedIncrementsComeBackInOrder() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        // Sent from this (non-loop) thread without waiting: each hops to the loop in order.
        let futures = (0..<1000).map { _ in connection.send(RESPCommand("INCR", "counter")) }
        let pending = try await connection.eventLoop.submit { connection.pendingCount }.get()
        XCTAssertLessThanOrEqual(pending, 1000)
        var values: [Int64] = []
        for future in futures {
            values.append(try await future.get().int ?? -1)
        }
        XCTAssertEqual(values, Array(1...1000))
        let pendingAfter = try await connection.eventLoop.submit { connection.pendingCount }.get()
        XCTAssertEqual(pendingAfter, 0)

        // The same from the loop, and a batch of 1000 in one write.
        let batch = try await connection.send((0..<1000).map { _ in RESPCommand("INCR", "counter") }).get()
        XCTAssertEqual(batch.map(\.int), (1001...2000).map { Optional($0) })
    }

    func testBatchReturnsErrorRepliesInPlace() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        let replies = try await connection.send([
            RESPCommand("SET", "k", "v"),
            RESPCommand("LPUSH", "k", "x"),
            RESPCommand("GET", "k"),
            RESPCommand("NOSUCHCOMMAND"),
        ]).get()
        XCTAssertEqual(replies.count, 4)
        XCTAssertEqual(replies[0].string, "OK")
        XCTAssertEqual(replies[1].errorMessage.map { RedisServerError(message: $0).code }, "WRONGTYPE")
        XCTAssertEqual(replies[2].string, "v")
        XCTAssertEqual(replies[3].errorMessage.map { RedisServerError(message: $0).code }, "ERR")
        let emptyBatch = try await connection.send([]).get()
        XCTAssertEqual(emptyBatch, [])
    }

    func testErrorReplyFailsTheSingleSend() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        _ = try await send(connection, "SET", "k", "v")
        let error = await failure(connection.send(RESPCommand("LPUSH", "k", "x")))
        XCTAssertEqual((error as? RedisServerError)?.code, "WRONGTYPE")
        let noScript = await failure(connection.send(RESPCommand("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0)))
        XCTAssertEqual((noScript as? RedisServerError)?.code, "NOSCRIPT")
        // The connection goes on.
        let get = try await send(connection, "GET", "k").string
        XCTAssertEqual(get, "v")
    }

    func testBigValueRoundTrip() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        // 160 copies of a 64 KiB pattern (every byte value, CR and LF included).
        let pattern = ByteBuffer(bytes: (0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) })
        var value = ByteBuffer()
        value.reserveCapacity(10 << 20)
        for _ in 0..<160 { value.writeImmutableBuffer(pattern) }
        let set = try await send(connection, "SET", "big", .bytes(value)).string
        XCTAssertEqual(set, "OK")
        let reply = try await send(connection, "GET", "big")
        XCTAssertEqual(reply.bytes?.readableBytes, 10 << 20)
        XCTAssertEqual(reply.bytes, value)
        let length = try await send(connection, "STRLEN", "big").int
        XCTAssertEqual(length, 10 << 20)
    }

    // MARK: - Handshake

    func testPassword() async throws {
        let server = try startServer(["--requirepass", "s3cret"])
        let connection = try await connect(server, .init(password: "s3cret"))
        let pong = try await send(connection, "PING").string
        XCTAssertEqual(pong, "PONG")

        do {
            _ = try await connect(server, .init(password: "wrong"))
            XCTFail("connected with a wrong password")
        } catch RedisConnectionError.handshakeRejected(let error) {
            XCTAssertEqual(error.code, "WRONGPASS")
        }
        do {
            _ = try await connect(server)
            XCTFail("connected without a password")
        } catch RedisConnectionError.handshakeRejected(let error) {
            XCTAssertEqual(error.code, "NOAUTH")
        }
    }

    func testACLUser() async throws {
        let server = try startServer()
        let admin = try await connect(server)
        _ = try await send(admin, "ACL", "SETUSER", "reader", "on", ">pw", "~*", "+get", "+hello", "+ping")
        let reader = try await connect(server, .init(username: "reader", password: "pw"))
        let missing = try await send(reader, "GET", "x").isNull
        XCTAssertTrue(missing)
        let denied = await failure(reader.send(RESPCommand("SET", "x", "1")))
        XCTAssertEqual((denied as? RedisServerError)?.code, "NOPERM")
        do {
            _ = try await connect(server, .init(username: "reader", password: "nope"))
            XCTFail("connected with a wrong password")
        } catch RedisConnectionError.handshakeRejected(let error) {
            XCTAssertEqual(error.code, "WRONGPASS")
        }
    }

    func testSelectAndClientName() async throws {
        let server = try startServer()
        let three = try await connect(server, .init(database: 3, clientName: "lifeline-test"))
        _ = try await send(three, "SET", "only-in-3", "x")
        let get = try await send(three, "GET", "only-in-3").string
        XCTAssertEqual(get, "x")
        let name = try await send(three, "CLIENT", "GETNAME").string
        XCTAssertEqual(name, "lifeline-test")
        let zero = try await connect(server)
        let missing = try await send(zero, "GET", "only-in-3").isNull
        XCTAssertTrue(missing)

        do {
            _ = try await connect(server, .init(database: 99))
            XCTFail("selected a database that does not exist")
        } catch RedisConnectionError.handshakeRejected(let error) {
            XCTAssertEqual(error.code, "ERR")
        }
    }

    func testConnectRefused() async throws {
        let server = try startServer()
        let address = server.address
        server.stop()
        do {
            _ = try await RedisConnection.connect(to: address, configuration: .init(), on: self.group.next()).get()
            XCTFail("connected to a stopped server")
        } catch {
            XCTAssertFalse(error is RedisConnectionError, "\(error)")
        }
    }

    // MARK: - Closing

    func testServerKilledFailsPendingCommands() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        let blocked = connection.send(RESPCommand("BLPOP", "nothing", 0))
        // Make sure the BLPOP reached the server before it dies.
        let other = try await connect(server)
        for _ in 0..<100 {
            let clients = try await send(other, "INFO", "clients").string ?? ""
            if clients.contains("blocked_clients:1") { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        server.kill(SIGKILL)
        let error = await failure(blocked)
        XCTAssertEqual(error as? RedisConnectionError, .closed)
        try await connection.closeFuture.get()
        let isOpen = try await connection.eventLoop.submit { connection.isOpen }.get()
        XCTAssertFalse(isOpen)
        let later = await failure(connection.send(RESPCommand("PING")))
        XCTAssertEqual(later as? RedisConnectionError, .closed)
        let laterBatch = await failure(connection.send([RESPCommand("PING")]))
        XCTAssertEqual(laterBatch as? RedisConnectionError, .closed)
    }

    func testClientKillClosesTheConnection() async throws {
        let server = try startServer()
        let victim = try await connect(server)
        let clientID = try await send(victim, "CLIENT", "ID")
        let id = try XCTUnwrap(clientID.int)
        let isOpen = try await victim.eventLoop.submit { victim.isOpen }.get()
        XCTAssertTrue(isOpen)
        let killer = try await connect(server)
        let killed = try await send(killer, "CLIENT", "KILL", "ID", .int(id)).int
        XCTAssertEqual(killed, 1)
        try await victim.closeFuture.get()
        let error = await failure(victim.send(RESPCommand("PING")))
        XCTAssertEqual(error as? RedisConnectionError, .closed)
    }

    func testCloseFailsPendingCommands() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        let blocked = connection.send(RESPCommand("BLPOP", "nothing", 0))
        connection.close()
        let error = await failure(blocked)
        XCTAssertEqual(error as? RedisConnectionError, .closed)
        try await connection.closeFuture.get()
    }

    // MARK: - Push messages

    func testSubscribeDeliversPushesAndRepliesStayMatched() async throws {
        let server = try startServer()
        let subscriber = try await connect(server)
        let (pushes, continuation) = AsyncStream<RESPToken>.makeStream()
        subscriber.setOnPush { continuation.yield($0) }
        var iterator = pushes.makeAsyncIterator()

        let confirmation = try await send(subscriber, "SUBSCRIBE", "news", "sport")
        XCTAssertEqual(confirmation.array.map { Array($0).map(\.description) }, ["\"subscribe\"", "\"sport\"", "2"])
        // Both confirmations went to onPush too.
        let first = await iterator.next()?.array.map { Array($0).map(\.description) }
        XCTAssertEqual(first, ["\"subscribe\"", "\"news\"", "1"])
        let second = await iterator.next()?.array.map { Array($0).map(\.description) }
        XCTAssertEqual(second, ["\"subscribe\"", "\"sport\"", "2"])

        // In RESP3 a subscribed connection takes other commands, and replies stay in step.
        let pong = try await send(subscriber, "PING").string
        XCTAssertEqual(pong, "PONG")
        let publisher = try await connect(server)
        let receivers = try await send(publisher, "PUBLISH", "news", "hello").int
        XCTAssertEqual(receivers, 1)
        let message = await iterator.next()
        XCTAssertEqual(message?.array.map { Array($0).compactMap(\.string) }, ["message", "news", "hello"])
        let set = try await send(subscriber, "SET", "k", "v").string
        XCTAssertEqual(set, "OK")
        let get = try await send(subscriber, "GET", "k").string
        XCTAssertEqual(get, "v")

        // A failing SUBSCRIBE fails its own future and nothing else.
        let pipelined = [
            subscriber.send(RESPCommand("SUBSCRIBE")),
            subscriber.send(RESPCommand("ECHO", "after")),
        ]
        let error = await failure(pipelined[0])
        XCTAssertEqual((error as? RedisServerError)?.code, "ERR")
        let echo = try await pipelined[1].get().string
        XCTAssertEqual(echo, "after")

        // UNSUBSCRIBE without channels: one confirmation per channel, then done.
        let batch = try await subscriber.send([RESPCommand("UNSUBSCRIBE"), RESPCommand("ECHO", "x")]).get()
        XCTAssertEqual(batch.count, 2)
        XCTAssertEqual(batch[0].array.map { Array($0).first?.string }, "unsubscribe")
        XCTAssertEqual(batch[0].array.map { Array($0).last?.int }, 0)
        XCTAssertEqual(batch[1].string, "x")
        // Not subscribed: still one confirmation.
        let unsubscribed = try await send(subscriber, "UNSUBSCRIBE").array.map { Array($0).last?.int }
        XCTAssertEqual(unsubscribed, 0)
        let psubscribed = try await send(subscriber, "PSUBSCRIBE", "n*").array.map { Array($0).first?.string }
        XCTAssertEqual(psubscribed, "psubscribe")
        let patternReceivers = try await send(publisher, "PUBLISH", "nx", "y").int
        XCTAssertEqual(patternReceivers, 1)
        continuation.finish()
    }

    func testClientTrackingInvalidationsArePushes() async throws {
        let server = try startServer()
        let tracked = try await connect(server)
        let (pushes, continuation) = AsyncStream<RESPToken>.makeStream()
        try await tracked.eventLoop.submit { tracked.onPush = { continuation.yield($0) } }.get()
        let tracking = try await send(tracked, "CLIENT", "TRACKING", "on").string
        XCTAssertEqual(tracking, "OK")
        _ = try await send(tracked, "GET", "watched")
        let writer = try await connect(server)
        _ = try await send(writer, "SET", "watched", "1")
        var iterator = pushes.makeAsyncIterator()
        let push = await iterator.next()
        XCTAssertEqual(push?.array.map { Array($0).first?.string }, "invalidate")
        let echo = try await send(tracked, "ECHO", "still in step").string
        XCTAssertEqual(echo, "still in step")
        continuation.finish()
    }

    func testSendFromManyThreads() async throws {
        let server = try startServer()
        let connection = try await connect(server)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for i in 0..<100 {
                        let value = "\(task)-\(i)"
                        let reply = try await connection.send(RESPCommand("ECHO", .string(value))).get()
                        XCTAssertEqual(reply.string, value)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
