import LifelineCore
import Logging
import NIOCore
import Redis

/// One stream's history in Redis, as its stream uses it: on the stream's loop, through that
/// loop's `RedisClient`, with the scripts of `HistoryScripts`.
final class RedisStreamHistory: StreamHistory {
    private let keys: HistoryKeys
    private let client: RedisCommandRouting
    private let store: RedisHistoryStore
    private let logger: Logger
    private let allocator = ByteBufferAllocator()

    init(keys: HistoryKeys, client: RedisCommandRouting, store: RedisHistoryStore, logger: Logger) {
        self.keys = keys
        self.client = client
        self.store = store
        self.logger = logger
    }

    private var configuration: RedisHistoryStore.Configuration { self.store.configuration }
    private var eventLoop: EventLoop { self.client.eventLoop }

    private static func milliseconds(_ amount: TimeAmount) -> Int { max(1, Int(amount.nanoseconds / 1_000_000)) }

    func claim(startFresh: Bool, nextSequence: UInt64, completion: @escaping (HistoryClaim) -> Void) {
        let epoch = String(UInt64.random(in: 1 << 40..<1 << 41), radix: 36)
        let arguments: [RESPArgument] = [
            .string(self.store.instanceName), .integer(Self.milliseconds(self.configuration.lease)), .string(startFresh ? "1" : "0"),
            .string(epoch), .string(String(nextSequence)), .integer(Self.milliseconds(self.configuration.retention)),
        ]
        self.client.run(HistoryScripts.claim, keys: [self.keys.lease, self.keys.meta, self.keys.history], arguments: arguments)
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let reply):
                    completion(Self.claim(from: reply) ?? .unavailable("unexpected answer to a claim: \(reply)"))
                case .failure(let error):
                    completion(.unavailable("\(error)"))
                }
            }
    }

    private static func claim(from reply: RESPToken) -> HistoryClaim? {
        guard let items = reply.array, items.count == 6 else { return nil }
        let values = Array(items)
        guard let won = values[0].int, let holder = values[1].string, let epoch = values[2].string,
            let seqText = values[3].string, let sequence = UInt64(seqText), let lastIDField = values[4].string,
            let headerText = values[5].string
        else { return nil }
        let position = HistoryPosition(epoch: epoch, lastSequence: sequence, lastEventID: StoredEntry.id(fromField: lastIDField))
        if won == 1 {
            return .owner(token: holder, position: position)
        }
        return .follower(owner: Self.instance(ofToken: holder), position: position, originHeaders: Self.headers(from: headerText))
    }

    /// A token is `<fence>/<instance>`.
    private static func instance(ofToken token: String) -> String {
        guard let slash = token.firstIndex(of: "/") else { return token }
        return String(token[token.index(after: slash)...])
    }

    static func headers(from text: String) -> [(String, String)] {
        text.split(separator: "\n").compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
    }

    static func text(of headers: [(String, String)]) -> String {
        // Header values hold no CR or LF (the HTTP parsers refuse them), so lines are safe.
        headers.map { "\($0.0): \($0.1)\n" }.joined()
    }

    func renew(token: String, completion: @escaping (Bool?) -> Void) {
        let arguments: [RESPArgument] = [
            .string(token), .integer(Self.milliseconds(self.configuration.lease)), .integer(Self.milliseconds(self.configuration.retention)),
        ]
        self.client.run(HistoryScripts.renew, keys: [self.keys.lease, self.keys.meta, self.keys.history], arguments: arguments)
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let reply): completion(reply.int.map { $0 == 1 })
                case .failure: completion(nil)
                }
            }
    }

    func append(
        _ events: [EncodedEvent], token: String, epoch: String, originHeaders: [(String, String)]?,
        completion: @escaping (HistoryAppend) -> Void
    ) {
        let now = WallClock.now()
        let nowMilliseconds = Int(now * 1000)
        let oldestKept = nowMilliseconds - Self.milliseconds(self.configuration.maxAge)
        var arguments: [RESPArgument] = [
            .string(token), .string(epoch), .integer(self.configuration.maxEvents), .integer(oldestKept),
            .integer(Self.milliseconds(self.configuration.retention)), .string(originHeaders.map(Self.text(of:)) ?? ""),
        ]
        arguments.reserveCapacity(arguments.count + events.count * 4)
        for event in events {
            arguments.append(.string(String(event.sequence)))
            arguments.append(.string(StoredEntry.idField(event.id)))
            arguments.append(.bytes(event.bytes))
            arguments.append(.integer(nowMilliseconds))
        }
        self.client.run(HistoryScripts.append, keys: [self.keys.lease, self.keys.meta, self.keys.history], arguments: arguments)
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success:
                    completion(.stored)
                case .failure(let error as RedisServerError) where error.code == "NOTOWNER":
                    completion(.notOwner)
                case .failure(let error):
                    completion(.unavailable("\(error)"))
                }
            }
    }

    func follow(after sequence: UInt64, epoch: String, delegate: HistoryFollowerDelegate) -> HistoryFollowing {
        let follower = RedisHistoryFollower(
            key: self.keys.history, epoch: epoch, after: sequence, endpoint: self.configuration.endpoint, routing: self.client,
            blockTime: self.configuration.blockTime, eventLoop: self.eventLoop, delegate: delegate, logger: self.logger
        )
        follower.start()
        return follower
    }

    func events(after lastEventID: String, completion: @escaping (HistoryLookup) -> Void) {
        let allocator = self.allocator
        let eventLoop = self.eventLoop
        self.client.run(HistoryScripts.lookup, keys: [self.keys.meta, self.keys.history], arguments: [.string("=" + lastEventID)])
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let reply):
                    guard let items = reply.array, items.count >= 2 else {
                        return completion(.unavailable("unexpected answer to a lookup"))
                    }
                    let values = Array(items)
                    guard values[0].int == 1, values.count == 4, let epoch = values[1].string,
                        let entryID = values[2].string, let sequence = StoredEntry.sequence(ofEntryID: entryID),
                        let entries = values[3].array
                    else { return completion(.miss) }
                    do {
                        let events = try StoredEntry.events(entries, epoch: epoch, receivedAt: eventLoop.now, allocator: allocator)
                        completion(.hit(epoch: epoch, sequence: sequence, events: events))
                    } catch {
                        completion(.unavailable("\(error)"))
                    }
                case .failure(let error):
                    completion(.unavailable("\(error)"))
                }
            }
    }

    func release(token: String) {
        self.client.run(HistoryScripts.release, keys: [self.keys.lease], arguments: [.string(token)]).assumeIsolated().whenFailure { error in
            self.logger.debug("could not release a lease", metadata: ["error": "\(error)"])
        }
    }
}
