import LifelineCore
import Logging
import NIOCore
import Redis

/// Records one private generation in Redis, on its stream's loop: one write in flight at a
/// time, what arrives meanwhile goes out as the next batch. A write that fails, or events piling
/// up past the bound while Redis is slow, end the recording: the keys are dropped if Redis
/// answers, and expire otherwise, and readers elsewhere see the generation break off there.
final class RedisGenerationRecording: GenerationRecording {
    private enum State {
        /// A write is out; `pending` and `end` wait for it.
        case writing
        case idle
        /// The end is stored (or the recording gave up): nothing more is written.
        case done
    }

    private let keys: GenerationKeys
    private let client: RedisCommandRouting
    private let archive: RedisGenerationArchive
    private weak var loop: LoopRecordings?
    private let logger: Logger
    private var state: State = .writing
    private var pending: [EncodedEvent] = []
    private var pendingBytes = 0
    private var keptFrom: UInt64 = 1
    private var end: StreamEndReason?
    /// The last sequence written (the end entry follows it).
    private var lastSequence: UInt64 = 0

    init(keys: GenerationKeys, client: RedisCommandRouting, archive: RedisGenerationArchive, loop: LoopRecordings,
         logger: Logger) {
        self.keys = keys
        self.client = client
        self.archive = archive
        self.loop = loop
        self.logger = logger
    }

    private var configuration: RedisGenerationArchive.Configuration { self.archive.configuration }

    func start(_ arguments: [RESPArgument]) {
        self.loop?.add(self)
        self.write(GenerationScripts.start, arguments)
    }

    func append(_ events: [EncodedEvent], keptFrom: UInt64) {
        guard self.end == nil, self.state != .done else { return }
        self.pending += events
        self.pendingBytes += events.reduce(0) { $0 + $1.bytes.readableBytes }
        self.keptFrom = keptFrom
        if self.pendingBytes > self.configuration.maxPendingBytes {
            return self.giveUp("redis is too slow for the generation's events")
        }
        if self.state == .idle { self.flush() }
    }

    func finish(_ reason: StreamEndReason) {
        guard self.end == nil, self.state != .done else { return }
        self.end = reason
        if self.state == .idle { self.flush() }
    }

    /// Keeps a running generation's keys alive (the loop's timer).
    func touch() {
        guard self.state != .done, self.end == nil else { return }
        self.client.run(GenerationScripts.touch, keys: self.keys.both,
                        arguments: [.integer(RedisGenerationArchive.milliseconds(self.configuration.liveness))])
            .assumeIsolated().whenSuccess { reply in
                if reply.int == 0 { self.giveUp("the generation's keys are gone") }
            }
    }

    private func flush() {
        if !self.pending.isEmpty {
            let events = self.pending
            self.pending = []
            self.pendingBytes = 0
            var arguments: [RESPArgument] = [
                .integer(RedisGenerationArchive.milliseconds(self.configuration.liveness)), .string(String(self.keptFrom)),
            ]
            arguments.reserveCapacity(2 + events.count * 3)
            for event in events {
                arguments.append(.string(String(event.sequence)))
                arguments.append(.string(StoredEntry.idField(event.id)))
                arguments.append(.bytes(event.bytes))
            }
            self.lastSequence = events[events.count - 1].sequence
            return self.write(GenerationScripts.append, arguments)
        }
        if let end = self.end {
            self.write(GenerationScripts.finish, [
                .string(StoredEntry.endField(end)), .string(String(self.lastSequence)),
                .integer(RedisGenerationArchive.milliseconds(self.configuration.resumeWindow)),
            ])
            return self.stop()
        }
        self.state = .idle
    }

    private func write(_ script: RedisScript, _ arguments: [RESPArgument]) {
        self.state = .writing
        self.client.run(script, keys: self.keys.both, arguments: arguments).assumeIsolated().whenComplete { result in
            switch result {
            case .success:
                guard self.state == .writing else { return }
                self.flush()
            case .failure(let error):
                self.giveUp("\(error)")
            }
        }
    }

    private func giveUp(_ reason: String) {
        guard self.state != .done else { return }
        self.logger.warning("stopped keeping a generation in redis", metadata: ["reason": "\(reason)"])
        self.pending = []
        self.pendingBytes = 0
        self.stop()
        _ = self.client.send(RESPCommand("DEL", .string(self.keys.facts), .string(self.keys.events)), key: self.keys.facts)
    }

    private func stop() {
        self.state = .done
        self.loop?.remove(self)
    }
}
