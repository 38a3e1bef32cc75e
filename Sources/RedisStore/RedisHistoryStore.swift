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
    private let clients: [ObjectIdentifier: RedisCommandRouting]
    private let logger: Logger
    private let reachable = NIOLockedValueBox(false)
    private let probeTask = NIOLockedValueBox<RepeatedTask?>(nil)

    public var isReachable: Bool { self.reachable.withLockedValue { $0 } }

    public init(configuration: Configuration, instanceName: String, eventLoops: [EventLoop], logger: Logger) {
        self.configuration = configuration
        self.instanceName = instanceName
        self.logger = logger
        var clients: [ObjectIdentifier: RedisCommandRouting] = [:]
        for loop in eventLoops {
            clients[ObjectIdentifier(loop)] = Self.makeClient(configuration.endpoint, on: loop, logger: logger)
        }
        self.clients = clients
        // One probe for the whole store, on the first loop: it notices Redis going and coming
        // back even while no stream asks anything.
        if let loop = eventLoops.first, let client = clients[ObjectIdentifier(loop)] {
            let bound = LoopConfined(client)
            let task = loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: .seconds(1)) { [reachable] _ in
                bound.value.send(RESPCommand("PING"), key: nil).map { _ in true }.recover { _ in false }.map { up in
                    reachable.withLockedValue { $0 = up }
                }
            }
            self.probeTask.withLockedValue { $0 = task }
        }
    }

    /// The command routing for one loop: the one server, or the cluster's nodes.
    private static func makeClient(_ endpoint: RedisEndpoint, on loop: EventLoop, logger: Logger) -> RedisCommandRouting {
        switch endpoint.topology {
        case .standalone:
            return RedisClient(endpoint: endpoint, eventLoop: loop, logger: logger)
        case .cluster:
            return RedisClusterClient(endpoint: endpoint, eventLoop: loop, logger: logger)
        }
    }

    public func history(named name: SharedStreamName, on eventLoop: EventLoop) -> StreamHistory {
        RedisStreamHistory(keys: HistoryKeys(name, prefix: self.configuration.keyPrefix), client: self.client(on: eventLoop),
                           store: self, logger: self.logger)
    }

    /// The command connection of `eventLoop`; used only there.
    func client(on eventLoop: EventLoop) -> RedisCommandRouting {
        guard let client = self.clients[ObjectIdentifier(eventLoop)] else {
            preconditionFailure("the shared store has no client for this event loop")
        }
        return client
    }

    public func close() {
        self.probeTask.withLockedValue { $0?.cancel() }
        for client in self.clients.values {
            let bound = LoopConfined(client)
            client.eventLoop.execute { bound.value.close() }
        }
    }
}

/// Carries a loop-confined client into a task that runs on its loop (NIOLoopBound would have to
/// be made there).
private struct LoopConfined: @unchecked Sendable {
    let value: RedisCommandRouting
    init(_ value: RedisCommandRouting) { self.value = value }
}
