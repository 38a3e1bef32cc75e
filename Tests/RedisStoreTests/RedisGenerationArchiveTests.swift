import LifelineCore
import Logging
import NIOCore
import Redis
import TLS
import XCTest

@testable import RedisStore

/// Kept private generations against the same real `redis-server`: what is stored and read back,
/// who may read it, a follow to the end, and a recorder that is gone.
extension RedisStreamHistoryTests {
    private static let namer = SharedStreamNamer { message in Digest.hmacSHA256(key: Array("test secret 0123".utf8), message: message) }

    private func archive(liveness: TimeAmount = .seconds(15), blockTime: TimeAmount = .seconds(1)) -> RedisGenerationArchive {
        let endpoint = RedisEndpoint(topology: .standalone(self.server.address), commandTimeout: .seconds(2))
        let store = RedisHistoryStore(configuration: .init(endpoint: endpoint, blockTime: blockTime), instanceName: "a",
                                      eventLoops: [self.loop], logger: Logger(label: "test"))
        return RedisGenerationArchive(store: store, namer: Self.namer,
                                      configuration: .init(liveness: liveness, resumeWindow: .seconds(60)),
                                      eventLoops: [self.loop], logger: Logger(label: "test"))
    }

    private func facts(authorization: String? = "Bearer secret-a", cookie: String? = nil) -> ArchivedGenerationFacts {
        ArchivedGenerationFacts(caller: CallerHeaders(authorization: authorization, cookie: cookie),
                                responseHeaders: [("x-request-id", "r1"), ("Lifeline-Resume", "/_lifeline/resume/x")],
                                displayPath: "/v1/chat?key=…", routePrefix: "/v1", method: "POST")
    }

    private func open(_ archive: RedisGenerationArchive, _ token: ResumeToken, authorization: String? = "Bearer secret-a",
                      cookie: String? = nil) throws -> ArchivedGenerationLookup {
        let loop = self.loop!
        return try self.onLoop { done in
            archive.open(token, caller: CallerHeaders(authorization: authorization, cookie: cookie), on: loop) { done($0) }
        }
    }

    private func found(_ lookup: ArchivedGenerationLookup) -> ArchivedGeneration? {
        if case .found(let generation) = lookup { return generation }
        return nil
    }

    /// Waits until Redis has seen what the recording sent (one write in flight at a time).
    private func settle() { Thread.sleep(forTimeInterval: 0.2) }

    func testAKeptGenerationIsReadBackByItsCallerAloneAndRedisHoldsNoCredentialOrToken() throws {
        let archive = self.archive()
        let token = ResumeToken.random()
        let loop = self.loop!
        let recording = try self.onLoop { archive.record(token, self.facts(), on: loop) }
        try self.onLoop {
            recording.append(self.events(1...3), keptFrom: 1)
            recording.finish(.originFinished)
        }
        self.settle()
        let generation = try XCTUnwrap(self.found(try self.open(archive, token)))
        XCTAssertEqual(generation.events.map(\.sequence), [1, 2, 3])
        XCTAssertEqual(generation.events.map(\.id), ["id1", "id2", "id3"])
        XCTAssertEqual(generation.events.map { String(buffer: $0.bytes) }, self.events(1...3).map { String(buffer: $0.bytes) })
        XCTAssertEqual(generation.end, .originFinished)
        XCTAssertEqual(generation.facts.displayPath, "/v1/chat?key=…")
        XCTAssertEqual(generation.facts.routePrefix, "/v1")
        XCTAssertEqual(generation.facts.responseHeaders.map { "\($0.0): \($0.1)" }, ["x-request-id: r1", "Lifeline-Resume: /_lifeline/resume/x"])
        XCTAssertEqual(generation.facts.caller, CallerHeaders(authorization: "Bearer secret-a", cookie: nil),
                       "only the credentials the start carried are asked of later resumes")
        XCTAssertGreaterThan(generation.keptFor, .seconds(50))
        XCTAssertLessThanOrEqual(generation.keptFor, .seconds(60))
        // Another caller, no credentials, an unknown token: the same answer.
        for lookup in [try self.open(archive, token, authorization: "Bearer secret-b"), try self.open(archive, token, authorization: nil),
                       try self.open(archive, ResumeToken.random())] {
            guard case .notFound = lookup else { return XCTFail("\(lookup)") }
        }
        // A cookie the start did not carry is not asked for.
        XCTAssertNotNil(self.found(try self.open(archive, token, cookie: "s=1")))
        // Nothing in Redis names the token or a credential.
        let connection = try RedisConnection.connect(to: self.server.address, configuration: .init(), on: self.loop).wait()
        defer { connection.close() }
        let dump = try connection.send(RESPCommand("EVAL", .string("""
            local out = {}
            for _, key in ipairs(redis.call('KEYS', '*')) do
              table.insert(out, key)
              if redis.call('TYPE', key).ok == 'hash' then
                for _, v in ipairs(redis.call('HGETALL', key)) do table.insert(out, v) end
              end
            end
            return table.concat(out, ' ')
            """), .integer(0))).wait().string ?? ""
        XCTAssertFalse(dump.isEmpty)
        XCTAssertFalse(dump.contains(token.value), dump)
        XCTAssertFalse(dump.contains("secret-a"), dump)
    }

    func testAFollowGetsTheRestAsItIsStoredThenTheEnd() throws {
        let archive = self.archive()
        let token = ResumeToken.random()
        let loop = self.loop!
        let recording = try self.onLoop { archive.record(token, self.facts(), on: loop) }
        try self.onLoop { recording.append(self.events(1...2), keptFrom: 1) }
        self.settle()
        let running = try XCTUnwrap(self.found(try self.open(archive, token)))
        XCTAssertNil(running.end)
        XCTAssertEqual(running.events.map(\.sequence), [1, 2])
        let delegate = RecordingFollower(loop: self.loop)
        let following = try self.onLoop { archive.follow(token, after: 2, on: loop, delegate: delegate) }
        try self.onLoop {
            recording.append(self.events(3...4), keptFrom: 1)
            recording.append(self.events(5...5), keptFrom: 1)
        }
        try delegate.waitFor(sequences: 3)
        try self.onLoop { recording.finish(.originBroke) }
        XCTAssertEqual(try delegate.waitForEnd(), .originBroke)
        XCTAssertEqual(delegate.sequences, [3, 4, 5])
        XCTAssertNil(delegate.failure)
        try self.onLoop { following.stop() }
    }

    func testOnlyWhatTheStreamStillKeepsIsKept() throws {
        let archive = self.archive()
        let token = ResumeToken.random()
        let loop = self.loop!
        let recording = try self.onLoop { archive.record(token, self.facts(), on: loop) }
        try self.onLoop {
            recording.append(self.events(1...4), keptFrom: 1)
            recording.append(self.events(5...6), keptFrom: 4)
        }
        self.settle()
        XCTAssertEqual(try XCTUnwrap(self.found(try self.open(archive, token))).events.map(\.sequence), [4, 5, 6])
    }

    func testARunningGenerationStaysWhileItsRecorderLivesAndBreaksOffForItsReadersWhenItIsGone() throws {
        let archive = self.archive(liveness: .milliseconds(600), blockTime: .milliseconds(200))
        let token = ResumeToken.random()
        let loop = self.loop!
        let recording = try self.onLoop { archive.record(token, self.facts(), on: loop) }
        try self.onLoop { recording.append(self.events(1...1), keptFrom: 1) }
        Thread.sleep(forTimeInterval: 1.5)
        XCTAssertNil(try XCTUnwrap(self.found(try self.open(archive, token)), "renewed by its loop's timer").end)

        // Another instance's generation whose instance died: its keys are there, nobody renews them.
        let orphan = ResumeToken.random()
        let keys = GenerationKeys(Self.namer.name(ofGeneration: orphan).value, prefix: "lifeline")
        let connection = try RedisConnection.connect(to: self.server.address, configuration: .init(), on: self.loop).wait()
        defer { connection.close() }
        _ = try connection.send(RESPCommand("HSET", .string(keys.facts), "a", "", "k", "", "s", "r", "d", "/v1/chat", "r", "/v1", "m", "POST")).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.events), "1-0", "i", "", "e", "data: a\n\n")).wait()
        _ = try connection.send(RESPCommand("PEXPIRE", .string(keys.facts), "700")).wait()
        let generation = try XCTUnwrap(self.found(try self.open(archive, orphan, authorization: nil)))
        XCTAssertNil(generation.end)
        let delegate = RecordingFollower(loop: self.loop)
        let following = try self.onLoop { archive.follow(orphan, after: 1, on: loop, delegate: delegate) }
        try delegate.waitForFailure(timeout: 5)
        XCTAssertNil(delegate.ended)
        try self.onLoop { following.stop() }
    }

    func testMalformedStoredEntriesAreUnavailableNotServed() throws {
        let archive = self.archive()
        let token = ResumeToken.random()
        let keys = GenerationKeys(Self.namer.name(ofGeneration: token).value, prefix: "lifeline")
        let connection = try RedisConnection.connect(to: self.server.address, configuration: .init(), on: self.loop).wait()
        defer { connection.close() }
        _ = try connection.send(RESPCommand("HSET", .string(keys.facts), "a", "", "k", "", "s", "c")).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.events), "1-0", "i", "", "e", "data: no blank line\n")).wait()
        guard case .unavailable = try self.open(archive, token, authorization: nil) else { return XCTFail("a broken frame is not served") }
        _ = try connection.send(RESPCommand("DEL", .string(keys.events))).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.events), "1-1", "x", "c")).wait()
        _ = try connection.send(RESPCommand("XADD", .string(keys.events), "2-0", "i", "", "e", "data: after the end\n\n")).wait()
        guard case .unavailable = try self.open(archive, token, authorization: nil) else { return XCTFail("nothing follows an end") }
    }
}
