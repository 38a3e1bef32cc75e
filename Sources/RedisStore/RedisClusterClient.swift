import Logging
import NIOCore
import Redis

/// One event loop's way into a Redis Cluster (`--redis=redis+cluster://…`): the slot map, a
/// command connection to each master that is used, and the redirections.
///
/// - The map comes from `CLUSTER SLOTS`, asked of a connected master first, then of the seeds.
///   It is refreshed when a node redirects (`MOVED`) or cannot be reached, at most one refresh at
///   a time and at most one every 100 ms (up to 1 s while refreshes keep failing).
/// - A command goes to the master of its key's slot. `MOVED` moves the slot in the map at once and
///   the command follows it; `ASK` sends it once to the importing node after `ASKING`;
///   `TRYAGAIN` and `CLUSTERDOWN` (a migration or a failover under way) are retried a few times,
///   shortly after. A node that cannot be reached fails the command as `RedisUnavailable`: the
///   streams fall back at once, as with one server, and the map is refreshed meanwhile.
/// - Each node's connection is made on first use, backs off after a refused attempt, and is
///   replaced after a command gets no answer in time, as `RedisClient` does for its one server.
///   Only masters of the map keep a connection, so a failover or a resharding leaves none behind.
///
/// Confined to `eventLoop`, like `RedisClient`: the store makes one per loop, nothing is shared.
final class RedisClusterClient: RedisCommandRouting {
    private enum State {
        case open
        case closed
    }

    /// One node's command connection. A node without an entry in `nodes` is idle: the next command
    /// for it connects.
    private enum NodeState {
        case connecting(EventLoopFuture<RedisConnection>, attempt: Int)
        case connected(RedisConnection)
        /// The last attempt failed; commands for the node fail until `until`.
        case backingOff(until: NIODeadline, attempt: Int, reason: String)
    }

    /// The slot map's refresh: at most one in flight, paced by `refreshGap`.
    private enum RefreshState {
        case idle
        /// Asked for too soon after the last one: starts when the gap has passed.
        case scheduled(Scheduled<Void>)
        /// `generation` tells a late step of an abandoned refresh from the current one.
        case running(EventLoopPromise<Void>, generation: Int)
    }

    /// After an error reply: what to do with the command, and how many more tries it has. Pure.
    struct Retries {
        static let maxRedirects = 3
        static let maxBusyRetries = 3

        enum Step: Equatable {
            /// The slot has another master: note it, and send the command there.
            case moved(slot: Int, to: RedisAddress)
            /// The key is already at the slot's importing node: send it there once, after `ASKING`.
            case ask(RedisAddress)
            /// A migration or failover is under way: send it again after a while.
            case retry(after: TimeAmount)
            /// The cluster cannot serve it now.
            case unavailable(String)
            /// An ordinary error reply: the caller's.
            case fail
        }

        private(set) var redirects = 0
        private(set) var busyRetries = 0

        mutating func step(after error: RedisServerError, askedAt node: RedisAddress) -> Step {
            switch error.code {
            case "MOVED", "ASK":
                guard let redirect = ClusterRedirect(errorMessage: error.message, askedAt: node) else {
                    return .unavailable("redis node \(node) redirected to an unknown node: \(error.message)")
                }
                // Redirections that go round in circles mean a map in flux: let the caller fall back.
                guard self.redirects < Self.maxRedirects else {
                    return .unavailable("redis cluster redirected more than \(Self.maxRedirects) times (last: \(error.message))")
                }
                self.redirects += 1
                switch redirect {
                case .moved(let slot, let address): return .moved(slot: slot, to: address)
                case .ask(_, let address): return .ask(address)
                }
            case "TRYAGAIN", "CLUSTERDOWN":
                guard self.busyRetries < Self.maxBusyRetries else {
                    return .unavailable("redis node \(node): \(error.message)")
                }
                self.busyRetries += 1
                // 50, 100, 200 ms: a multi-key command waits out a key's migration; a failover
                // takes longer, and the streams' own fallback covers it.
                return .retry(after: .milliseconds(50 << Int64(self.busyRetries - 1)))
            default:
                return .fail
            }
        }
    }

    /// One try of a command at a node; `asking` sends `ASKING` first.
    private typealias Request = (_ node: RedisAddress, _ asking: Bool) -> EventLoopFuture<RESPToken>

    private static let askingCommand = RESPCommand("ASKING")
    private static let slotsCommand = RESPCommand("CLUSTER", "SLOTS")
    private static let minimumRefreshGap = TimeAmount.milliseconds(100)
    private static let maximumRefreshGap = TimeAmount.seconds(1)

    let eventLoop: EventLoop
    private let endpoint: RedisEndpoint
    private let seeds: [RedisAddress]
    private let logger: Logger
    private var state: State = .open
    private var topology = ClusterTopology()
    /// `topology.masters`, kept at hand (plus nodes a `MOVED` named since the last refresh).
    private var masters: Set<RedisAddress> = []
    private var nodes: [RedisAddress: NodeState] = [:]
    private var refresh: RefreshState = .idle
    private var refreshGeneration = 0
    private var lastRefreshStart: NIODeadline?
    private var refreshGap = RedisClusterClient.minimumRefreshGap
    /// A refresh was asked for while one ran: what that one answers may predate what asked.
    private var refreshAgain = false
    private var lastRefreshFailure: String?
    private var lastSucceeded = false

    init(endpoint: RedisEndpoint, eventLoop: EventLoop, logger: Logger) {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.logger = logger
        switch endpoint.topology {
        case .cluster(let seeds): self.seeds = seeds
        case .standalone(let address): self.seeds = [address]
        }
    }

    /// Whether the last command or refresh got an answer (an error reply counts: the node
    /// answered).
    var isUp: Bool { self.lastSucceeded }

    func send(_ command: RESPCommand, key: String?) -> EventLoopFuture<RESPToken> {
        self.eventLoop.preconditionInEventLoop()
        return self.execute(slot: key.map(ClusterSlot.of)) { node, asking in
            self.request(command, to: node, asking: asking)
        }
    }

    /// `EVALSHA` at the master of `keys[0]`'s slot, then `EVAL` there if it answers `NOSCRIPT`:
    /// each node has its own script cache, and a new master (after a failover) starts empty.
    func run(_ script: RedisScript, keys: [String], arguments: [RESPArgument]) -> EventLoopFuture<RESPToken> {
        self.eventLoop.preconditionInEventLoop()
        let tail: [RESPArgument] = [.integer(keys.count)] + keys.map { .string($0) } + arguments
        let evalsha = RESPCommand(arguments: [.string("EVALSHA"), .string(script.sha1)] + tail)
        let eval = RESPCommand(arguments: [.string("EVAL"), .string(script.source)] + tail)
        return self.execute(slot: keys.first.map(ClusterSlot.of)) { node, asking in
            self.request(evalsha, to: node, asking: asking).assumeIsolated().flatMapError { error in
                guard let serverError = error as? RedisServerError, serverError.code == "NOSCRIPT" else {
                    return self.eventLoop.makeFailedFuture(error)
                }
                return self.request(eval, to: node, asking: asking)
            }.nonisolated()
        }
    }

    func address(forKey key: String) -> EventLoopFuture<RedisAddress> {
        self.eventLoop.preconditionInEventLoop()
        return self.master(forSlot: ClusterSlot.of(key))
    }

    func close() {
        self.eventLoop.preconditionInEventLoop()
        guard case .open = self.state else { return }
        self.state = .closed
        let refresh = self.refresh
        self.refresh = .idle
        switch refresh {
        case .scheduled(let task): task.cancel()
        case .running(let promise, _): promise.fail(RedisUnavailable(reason: "the redis cluster client is closed"))
        case .idle: break
        }
        for case .connected(let connection) in self.nodes.values {
            connection.close()
        }
        // Connections still being made are closed when they are (see `connect`).
        self.nodes = [:]
    }

    // MARK: Routing

    private func execute(slot: Int?, _ request: @escaping Request) -> EventLoopFuture<RESPToken> {
        let promise = self.eventLoop.makePromise(of: RESPToken.self)
        self.attempt(slot: slot, target: nil, retries: Retries(), request: request, promise: promise)
        return promise.futureResult
    }

    /// One try: at `target` when a redirection named it, else at the slot's master.
    private func attempt(
        slot: Int?, target: (node: RedisAddress, asking: Bool)?, retries: Retries, request: @escaping Request,
        promise: EventLoopPromise<RESPToken>
    ) {
        let node = target.map { self.eventLoop.makeSucceededFuture($0.node) } ?? self.master(forSlot: slot)
        node.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                self.lastSucceeded = false
                promise.fail(error)
            case .success(let node):
                request(node, target?.asking ?? false).assumeIsolated().whenComplete { result in
                    self.handle(result, from: node, slot: slot, retries: retries, request: request, promise: promise)
                }
            }
        }
    }

    private func handle(
        _ result: Result<RESPToken, any Error>, from node: RedisAddress, slot: Int?, retries: Retries,
        request: @escaping Request, promise: EventLoopPromise<RESPToken>
    ) {
        switch result {
        case .success(let reply):
            self.lastSucceeded = true
            promise.succeed(reply)
        case .failure(let error as RedisServerError):
            self.lastSucceeded = true
            var retries = retries
            switch retries.step(after: error, askedAt: node) {
            case .fail:
                promise.fail(error)
            case .moved(let movedSlot, let address):
                self.topology.assign(slot: movedSlot, to: address)
                self.masters.insert(address)
                self.requestRefresh()
                self.attempt(slot: slot, target: (address, false), retries: retries, request: request, promise: promise)
            case .ask(let address):
                self.attempt(slot: slot, target: (address, true), retries: retries, request: request, promise: promise)
            case .retry(let delay):
                self.eventLoop.assumeIsolated().scheduleTask(in: delay) {
                    self.attempt(slot: slot, target: nil, retries: retries, request: request, promise: promise)
                }
            case .unavailable(let reason):
                self.lastSucceeded = false
                self.requestRefresh()
                promise.fail(RedisUnavailable(reason: reason))
            }
        case .failure(let error):
            // The node is gone or wedged: perhaps a failover, so the map may be stale. The caller
            // falls back and tries again later, by when the refresh has answered.
            self.lastSucceeded = false
            self.requestRefresh()
            promise.fail(error)
        }
    }

    /// The master of `slot` (of any slot when nil). When the map has none, waits for a refresh that
    /// runs, but does not queue behind a paced one: while the cluster cannot be asked, commands fail
    /// at once, as with one server that is down.
    private func master(forSlot slot: Int?) -> EventLoopFuture<RedisAddress> {
        guard case .open = self.state else {
            return self.eventLoop.makeFailedFuture(RedisUnavailable(reason: "the redis cluster client is closed"))
        }
        if let address = self.lookUp(slot) {
            return self.eventLoop.makeSucceededFuture(address)
        }
        self.requestRefresh()
        let unserved = { [lastRefreshFailure] in
            RedisUnavailable(reason: lastRefreshFailure ?? "no redis cluster node serves slot \(slot.map(String.init) ?? "any")")
        }
        guard case .running(let refreshed, _) = self.refresh else {
            return self.eventLoop.makeFailedFuture(unserved())
        }
        return refreshed.futureResult.assumeIsolated().flatMapThrowing { _ in
            guard let address = self.lookUp(slot) else { throw unserved() }
            return address
        }.nonisolated()
    }

    private func lookUp(_ slot: Int?) -> RedisAddress? {
        if let slot { return self.topology.master(forSlot: slot) }
        // Any master: one already connected, else any.
        for (node, state) in self.nodes where self.masters.contains(node) {
            if case .connected = state { return node }
        }
        return self.masters.first
    }

    // MARK: Nodes

    private func request(_ command: RESPCommand, to node: RedisAddress, asking: Bool) -> EventLoopFuture<RESPToken> {
        self.connection(to: node).assumeIsolated().flatMap { connection in
            guard asking else {
                return self.withTimeout(connection.send(command), on: connection, node: node)
            }
            // ASKING holds for the next command on its connection only: both go in one write,
            // with nothing between them. A batch returns error replies in place.
            return self.withTimeout(connection.send([Self.askingCommand, command]), on: connection, node: node)
                .assumeIsolated().flatMapThrowing { replies in
                    for reply in replies {
                        if let message = reply.errorMessage { throw RedisServerError(message: message) }
                    }
                    guard replies.count == 2 else {
                        throw RedisUnavailable(reason: "redis node \(node) answered \(replies.count) replies to ASKING and a command")
                    }
                    return replies[1]
                }.nonisolated()
        }.nonisolated()
    }

    private func connection(to node: RedisAddress) -> EventLoopFuture<RedisConnection> {
        guard case .open = self.state else {
            return self.eventLoop.makeFailedFuture(RedisUnavailable(reason: "the redis cluster client is closed"))
        }
        switch self.nodes[node] {
        case .connected(let connection):
            return self.eventLoop.makeSucceededFuture(connection)
        case .connecting(let future, _):
            return future
        case .backingOff(let until, _, let reason) where self.eventLoop.now < until:
            return self.eventLoop.makeFailedFuture(RedisUnavailable(reason: reason))
        case .backingOff(_, let attempt, _):
            return self.connect(to: node, attempt: attempt)
        case nil:
            return self.connect(to: node, attempt: 0)
        }
    }

    private func connect(to node: RedisAddress, attempt: Int) -> EventLoopFuture<RedisConnection> {
        let future = self.endpoint.connect(to: node, on: self.eventLoop).hop(to: self.eventLoop)
        self.nodes[node] = .connecting(future, attempt: attempt)
        future.assumeIsolated().whenComplete { result in
            // Closed, or the node left the map while connecting: the connection is not kept.
            guard case .connecting(let current, _) = self.nodes[node], current == future else {
                if case .success(let connection) = result { self.retire(connection) }
                return
            }
            switch result {
            case .success(let connection):
                self.nodes[node] = .connected(connection)
                connection.closeFuture.hop(to: self.eventLoop).assumeIsolated().whenComplete { _ in
                    guard case .connected(let current) = self.nodes[node], current === connection else { return }
                    self.nodes[node] = nil
                }
            case .failure(let error):
                let delay = RedisEndpoint.backoff(attempt: attempt)
                let reason = "redis node \(node) unreachable: \(error)"
                self.nodes[node] = .backingOff(until: self.eventLoop.now + delay, attempt: attempt + 1, reason: reason)
                self.logger.warning("could not connect to a redis cluster node", metadata: [
                    "node": "\(node)", "error": "\(error)", "retry_in_ms": "\(delay.nanoseconds / 1_000_000)",
                ])
            }
        }
        return future.flatMapErrorThrowing { error in throw RedisUnavailable(reason: "redis node \(node) unreachable: \(error)") }
    }

    /// Closes a connection the map no longer needs, once what is in flight on it had its time.
    private func retire(_ connection: RedisConnection) {
        guard case .open = self.state else {
            connection.close()
            return
        }
        self.eventLoop.assumeIsolated().scheduleTask(in: self.endpoint.commandTimeout) { connection.close() }
    }

    /// A command without an answer in time: the node's connection is closed (`CommandDeadline`),
    /// so that the next command for the node makes a new one.
    private func withTimeout<Value: Sendable>(
        _ future: EventLoopFuture<Value>, on connection: RedisConnection, node: RedisAddress
    ) -> EventLoopFuture<Value> {
        CommandDeadline.apply(future, closing: connection, after: self.endpoint.commandTimeout, on: self.eventLoop,
                              source: "redis node \(node)")
    }

    // MARK: The slot map

    /// Asks for a new map soon: now when the last refresh started at least the gap ago, else once
    /// the gap has passed; once however many ask.
    private func requestRefresh() {
        guard case .open = self.state else { return }
        switch self.refresh {
        case .running:
            self.refreshAgain = true
        case .scheduled:
            break
        case .idle:
            guard let last = self.lastRefreshStart, self.eventLoop.now < last + self.refreshGap else {
                self.startRefresh()
                return
            }
            let task = self.eventLoop.assumeIsolated().scheduleTask(deadline: last + self.refreshGap) {
                guard case .scheduled = self.refresh else { return }
                self.refresh = .idle
                self.startRefresh()
            }
            self.refresh = .scheduled(task)
        }
    }

    private func startRefresh() {
        guard case .open = self.state else { return }
        let promise = self.eventLoop.makePromise(of: Void.self)
        self.refreshGeneration += 1
        let generation = self.refreshGeneration
        self.refresh = .running(promise, generation: generation)
        self.refreshAgain = false
        self.lastRefreshStart = self.eventLoop.now
        // Bounded as a whole, so that commands waiting for a first map do not wait for every
        // unreachable node in turn.
        let limit = self.endpoint.connectTimeout + self.endpoint.commandTimeout
        let timer = self.eventLoop.assumeIsolated().scheduleTask(in: limit) {
            promise.fail(RedisUnavailable(reason: "no redis cluster node gave its slot map within \(limit.nanoseconds / 1_000_000) ms"))
        }
        promise.futureResult.assumeIsolated().whenComplete { result in
            timer.cancel()
            guard case .running(_, generation) = self.refresh else { return }
            self.refresh = .idle
            switch result {
            case .success:
                self.refreshGap = Self.minimumRefreshGap
                self.lastRefreshFailure = nil
                self.lastSucceeded = true
            case .failure(let error):
                self.refreshGap = min(self.refreshGap * 2, Self.maximumRefreshGap)
                self.lastRefreshFailure = "\(error)"
                self.lastSucceeded = false
                self.logger.warning("could not refresh the redis cluster slot map", metadata: ["error": "\(error)"])
            }
            if self.refreshAgain { self.requestRefresh() }
        }
        self.askForSlots(from: self.refreshCandidates()[...], lastError: nil, generation: generation, promise: promise)
    }

    /// Connected masters first (the answer is one round trip away), then the other masters and
    /// the seeds, nodes backing off last (they fail at once).
    private func refreshCandidates() -> [RedisAddress] {
        var seen = Set<RedisAddress>()
        var connected: [RedisAddress] = []
        var others: [RedisAddress] = []
        var backingOff: [RedisAddress] = []
        for node in Array(self.masters) + self.seeds where seen.insert(node).inserted {
            switch self.nodes[node] {
            case .connected: connected.append(node)
            case .backingOff: backingOff.append(node)
            case .connecting, nil: others.append(node)
            }
        }
        return connected + others + backingOff
    }

    private func askForSlots(
        from candidates: ArraySlice<RedisAddress>, lastError: String?, generation: Int, promise: EventLoopPromise<Void>
    ) {
        // A refresh that timed out, or a closed client, stops here.
        guard case .open = self.state, case .running(_, generation) = self.refresh else {
            promise.fail(RedisUnavailable(reason: "the redis cluster slot map refresh was abandoned"))
            return
        }
        guard let node = candidates.first else {
            promise.fail(RedisUnavailable(reason: "no redis cluster node gave its slot map (\(lastError ?? "no node known"))"))
            return
        }
        self.request(Self.slotsCommand, to: node, asking: false).assumeIsolated().whenComplete { result in
            guard case .running(_, generation) = self.refresh else { return }
            do {
                let topology = try ClusterTopology(parsing: result.get(), askedAt: node)
                // A node that has not joined the cluster yet (or lost it) knows no slot.
                guard topology.servedSlots > 0 else { throw RedisUnavailable(reason: "it serves no slot") }
                self.adopt(topology)
                promise.succeed(())
            } catch {
                self.askForSlots(from: candidates.dropFirst(), lastError: "\(node): \(error)", generation: generation, promise: promise)
            }
        }
    }

    /// Takes a new map, and lets go of the nodes that are no longer masters in it.
    private func adopt(_ topology: ClusterTopology) {
        let before = self.masters
        self.topology = topology
        self.masters = topology.masters
        if before != self.masters {
            self.logger.info("redis cluster masters", metadata: [
                "masters": "\(self.masters.map(\.description).sorted().joined(separator: ","))",
                "slots": "\(topology.servedSlots)",
            ])
        }
        for (node, state) in self.nodes where !self.masters.contains(node) {
            self.nodes[node] = nil
            if case .connected(let connection) = state { self.retire(connection) }
            // One still connecting is retired when it connects: its entry is gone.
        }
    }
}
