import LifelineCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Redis

/// The shared history in Redis (`--redis`): the `SharedHistoryStore` the gateway's streams use
/// when several instances act as one.
///
/// Each event loop has its own command connection (`RedisClient`), so that a stream's calls stay
/// on its loop; a follower has a connection of its own for its blocking reads.
public final class RedisHistoryStore: SharedHistoryStore, @unchecked Sendable {
    // @unchecked: `clients` is filled in `init` and never changed; each client is used only on
    // its own loop.
    public struct Configuration: Sendable {
        public var endpoint: RedisEndpoint
        /// The lease: how long an owner that stopped renewing keeps the stream.
        public var lease: TimeAmount
        /// Bounds of the stored history, as the ring's (`--replay-events`, `--replay-age`).
        public var maxEvents: Int
        public var maxAge: TimeAmount
        /// How long a history outlives its last write or renewal.
        public var retention: TimeAmount
        /// A follower's blocking read waits at most this long for new events.
        public var blockTime: TimeAmount
        /// Prefix of every key.
        public var keyPrefix: String

        public init(endpoint: RedisEndpoint, lease: TimeAmount = .seconds(5), maxEvents: Int = 1000,
                    maxAge: TimeAmount = .minutes(10), retention: TimeAmount? = nil, blockTime: TimeAmount = .seconds(1),
                    keyPrefix: String = "lifeline") {
            self.endpoint = endpoint
            self.lease = lease
            self.maxEvents = maxEvents
            self.maxAge = maxAge
            self.retention = retention ?? (maxAge + lease)
            self.blockTime = blockTime
            self.keyPrefix = keyPrefix
        }
    }

    public let configuration: Configuration
    public let instanceName: String
    private let clients: [ObjectIdentifier: RedisClient]
    private let logger: Logger
    private let reachable = NIOLockedValueBox(false)
    private let probeTask = NIOLockedValueBox<RepeatedTask?>(nil)

    public var isReachable: Bool { self.reachable.withLockedValue { $0 } }

    public init(configuration: Configuration, instanceName: String, eventLoops: [EventLoop], logger: Logger) {
        self.configuration = configuration
        self.instanceName = instanceName
        self.logger = logger
        var clients: [ObjectIdentifier: RedisClient] = [:]
        for loop in eventLoops {
            clients[ObjectIdentifier(loop)] = RedisClient(endpoint: configuration.endpoint, eventLoop: loop, logger: logger)
        }
        self.clients = clients
        // One probe for the whole store, on the first loop: it notices Redis going and coming
        // back even while no stream asks anything.
        if let loop = eventLoops.first, let client = clients[ObjectIdentifier(loop)] {
            let task = loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: .seconds(1)) { [reachable] _ in
                client.send(RESPCommand("PING")).map { _ in true }.recover { _ in false }.map { up in
                    reachable.withLockedValue { $0 = up }
                }
            }
            self.probeTask.withLockedValue { $0 = task }
        }
    }

    public func history(named name: SharedStreamName, on eventLoop: EventLoop) -> StreamHistory {
        guard let client = self.clients[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("the shared store has no client for this event loop")
        }
        return RedisStreamHistory(keys: HistoryKeys(name, prefix: self.configuration.keyPrefix), client: client,
                                  store: self, logger: self.logger)
    }

    public func close() {
        self.probeTask.withLockedValue { $0?.cancel() }
        for client in self.clients.values {
            client.eventLoop.execute { client.close() }
        }
    }
}
