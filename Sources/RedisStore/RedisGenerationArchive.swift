import LifelineCore
import Logging
import NIOCore
import Redis

/// Private generations kept in Redis (`--redis`), so that a resume on any instance, or on this
/// one after a restart, gets the same generation (`GenerationScripts` has the layout). Uses the
/// history store's connection of each loop; a follow has a connection of its own.
public final class RedisGenerationArchive: GenerationArchive, @unchecked Sendable {
    // @unchecked: `loops` is filled in `init` and never changed; each entry is used only on its
    // own loop.
    public struct Configuration: Sendable {
        /// How long a running generation's keys outlive its recorder's last sign of life; its
        /// recorder renews them every third of it.
        public var liveness: TimeAmount
        /// How long an ended generation is kept (`--resume-window`).
        public var resumeWindow: TimeAmount
        /// Events waiting for Redis beyond this many bytes: the recording gives up
        /// (`--private-stream-bytes`).
        public var maxPendingBytes: Int

        public init(liveness: TimeAmount = .seconds(15), resumeWindow: TimeAmount = .minutes(5), maxPendingBytes: Int = 4 << 20) {
            self.liveness = liveness
            self.resumeWindow = resumeWindow
            self.maxPendingBytes = maxPendingBytes
        }
    }

    let configuration: Configuration
    private let store: RedisHistoryStore
    private let namer: SharedStreamNamer
    private let logger: Logger
    private let loops: [ObjectIdentifier: LoopRecordings]

    public init(store: RedisHistoryStore, namer: SharedStreamNamer, configuration: Configuration, eventLoops: [EventLoop],
                logger: Logger) {
        self.store = store
        self.namer = namer
        self.configuration = configuration
        self.logger = logger
        var loops: [ObjectIdentifier: LoopRecordings] = [:]
        for loop in eventLoops {
            loops[ObjectIdentifier(loop)] = LoopRecordings(eventLoop: loop, period: .nanoseconds(configuration.liveness.nanoseconds / 3))
        }
        self.loops = loops
    }

    private func keys(_ token: ResumeToken) -> GenerationKeys {
        GenerationKeys(self.namer.name(ofGeneration: token).value, prefix: self.store.configuration.keyPrefix)
    }

    private func digest(_ value: String?, kind: String) -> String {
        value.map { self.namer.digest(ofCredential: $0, kind: kind) } ?? ""
    }

    static func milliseconds(_ amount: TimeAmount) -> Int { max(1, Int(amount.nanoseconds / 1_000_000)) }

    public func record(_ token: ResumeToken, _ facts: ArchivedGenerationFacts, on eventLoop: EventLoop) -> GenerationRecording {
        guard let loop = self.loops[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("the generation archive has no recordings for this event loop")
        }
        let recording = RedisGenerationRecording(
            keys: self.keys(token), client: self.store.client(on: eventLoop), archive: self, loop: loop,
            logger: self.logger)
        recording.start([
            .integer(Self.milliseconds(self.configuration.liveness)),
            .string(self.digest(facts.caller.authorization, kind: "authorization")),
            .string(self.digest(facts.caller.cookie, kind: "cookie")),
            .string(RedisStreamHistory.text(of: facts.responseHeaders)),
            .string(facts.displayPath), .string(facts.routePrefix), .string(facts.method), .string(self.store.instanceName),
        ])
        return recording
    }

    public func open(_ token: ResumeToken, caller: CallerHeaders, on eventLoop: EventLoop,
                     completion: @escaping (ArchivedGenerationLookup) -> Void) {
        let keys = self.keys(token)
        let allocator = ByteBufferAllocator()
        self.store.client(on: eventLoop).run(GenerationScripts.open, keys: keys.both, arguments: [])
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let reply):
                    completion(self.generation(from: reply, caller: caller, receivedAt: eventLoop.now, allocator: allocator))
                case .failure(let error):
                    completion(.unavailable("\(error)"))
                }
            }
    }

    private func generation(from reply: RESPToken, caller: CallerHeaders, receivedAt: NIODeadline,
                            allocator: ByteBufferAllocator) -> ArchivedGenerationLookup {
        guard let items = reply.array else { return .unavailable("unexpected answer to a generation lookup") }
        guard items.count == 3 else { return .notFound }
        let values = Array(items)
        guard let flat = values[0].array, let milliseconds = values[1].int, let entries = values[2].array else {
            return .unavailable("unexpected answer to a generation lookup")
        }
        var fields: [String: String] = [:]
        var iterator = flat.makeIterator()
        while let name = iterator.next()?.string, let value = iterator.next()?.string {
            fields[name] = value
        }
        // Each credential the starting request carried must be carried alike; one it did not
        // carry is not asked for (as `CallerCredentials.admits`).
        let authorization = fields["a"] ?? "", cookie = fields["k"] ?? ""
        guard authorization.isEmpty || authorization == self.digest(caller.authorization, kind: "authorization"),
            cookie.isEmpty || cookie == self.digest(caller.cookie, kind: "cookie")
        else { return .notFound }
        let batch: (events: [EncodedEvent], end: StreamEndReason?)
        do {
            batch = try StoredEntry.batch(entries, epoch: nil, receivedAt: receivedAt, allocator: allocator)
        } catch {
            return .unavailable("\(error)")
        }
        let facts = ArchivedGenerationFacts(
            caller: CallerHeaders(authorization: authorization.isEmpty ? nil : caller.authorization,
                                  cookie: cookie.isEmpty ? nil : caller.cookie),
            responseHeaders: RedisStreamHistory.headers(from: fields["h"] ?? ""),
            displayPath: fields["d"] ?? "/", routePrefix: fields["r"] ?? "/", method: fields["m"] ?? "POST")
        var end = batch.end
        if end == nil, fields["s"] != "r" {
            // Ended, and its end entry trimmed away with its events: the facts say how.
            end = fields["s"] == "c" ? .originFinished : .originBroke
        }
        let keptFor = milliseconds > 0 ? TimeAmount.milliseconds(Int64(milliseconds)) : self.configuration.resumeWindow
        return .found(ArchivedGeneration(facts: facts, events: batch.events, end: end, keptFor: keptFor))
    }

    public func follow(_ token: ResumeToken, after sequence: UInt64, on eventLoop: EventLoop,
                       delegate: HistoryFollowerDelegate) -> HistoryFollowing {
        let keys = self.keys(token)
        let follower = RedisHistoryFollower(
            key: keys.events, epoch: nil, liveKey: keys.facts, after: sequence, endpoint: self.store.configuration.endpoint,
            routing: self.store.client(on: eventLoop), blockTime: self.store.configuration.blockTime, eventLoop: eventLoop,
            delegate: delegate, logger: self.logger)
        follower.start()
        return follower
    }
}

/// The running recordings of one loop, and the loop's one timer that keeps their keys alive.
final class LoopRecordings: @unchecked Sendable {
    // @unchecked: confined to `eventLoop` (its timer runs there too).
    private let eventLoop: EventLoop
    private let period: TimeAmount
    private var recordings: [ObjectIdentifier: RedisGenerationRecording] = [:]
    private var timer: RepeatedTask?

    init(eventLoop: EventLoop, period: TimeAmount) {
        self.eventLoop = eventLoop
        self.period = period
    }

    func add(_ recording: RedisGenerationRecording) {
        self.eventLoop.preconditionInEventLoop()
        self.recordings[ObjectIdentifier(recording)] = recording
        if self.timer == nil {
            self.timer = self.eventLoop.scheduleRepeatedTask(initialDelay: self.period, delay: self.period) { [weak self] _ in
                self?.touchAll()
            }
        }
    }

    func remove(_ recording: RedisGenerationRecording) {
        self.eventLoop.preconditionInEventLoop()
        self.recordings[ObjectIdentifier(recording)] = nil
        if self.recordings.isEmpty {
            self.timer?.cancel()
            self.timer = nil
        }
    }

    private func touchAll() {
        for recording in self.recordings.values { recording.touch() }
    }
}
