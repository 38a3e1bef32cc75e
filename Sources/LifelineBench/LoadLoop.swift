import NIOCore
import NIOPosix

/// The load tool's work on one event loop: the connections assigned to it, their opening over the
/// ramp, reconnects, and the counters of everything they receive.
///
/// Connections never move between loops, so all of this is confined to `eventLoop` and the
/// per-event path touches no lock. `@unchecked Sendable`: the runner holds loops from other
/// threads but reaches their state only through `eventLoop.submit`.
final class LoadLoop: @unchecked Sendable {
    /// Installs the protocol's handlers on a new channel (on its loop).
    typealias PipelineSetup = @Sendable (Channel, LoadConnection, LoadLoop) throws -> Void

    let eventLoop: EventLoop
    let plan: LoadPlan
    var counters = LoadCounters()

    private let setupPipeline: PipelineSetup
    /// In opening order.
    private var connections: [LoadConnection] = []
    private var nextToOpen = 0
    private var start = NIODeadline.now()
    private var opener: RepeatedTask?
    private var stormTask: Scheduled<Void>?
    private(set) var isStopping = false

    init(eventLoop: EventLoop, plan: LoadPlan, setupPipeline: @escaping PipelineSetup) {
        self.eventLoop = eventLoop
        self.plan = plan
        self.setupPipeline = setupPipeline
    }

    /// Adds a connection before `start` (from the runner, before the loop is busy; hence no hop).
    func add(_ connection: LoadConnection) {
        self.connections.append(connection)
    }

    /// Opens connections on schedule from `start` on, and arms the storm if there is one.
    func start(at start: NIODeadline) {
        self.eventLoop.execute {
            self.start = start
            if let stormAt = self.plan.stormAtWallNanoseconds {
                // The moment is wall-clock (shared by every shard); the timer runs on the monotonic
                // clock, so convert once here. The two drift by far less than a run is long.
                let delay = max(0, stormAt - BenchClock.wallNanoseconds())
                self.stormTask = self.eventLoop.scheduleTask(in: .nanoseconds(delay)) { self.storm() }
            }
            self.openDue()
            guard self.nextToOpen < self.connections.count else { return }
            // One timer per loop walks the ramp, rather than one scheduled task per connection.
            self.opener = self.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) {
                task in
                self.openDue()
                if self.nextToOpen >= self.connections.count || self.isStopping {
                    task.cancel()
                }
            }
        }
    }

    private func openDue() {
        let elapsed = (NIODeadline.now() - self.start).nanoseconds
        while self.nextToOpen < self.connections.count, !self.isStopping,
            self.connections[self.nextToOpen].openingOffset <= elapsed
        {
            self.open(self.connections[self.nextToOpen])
            self.nextToOpen += 1
        }
    }

    // MARK: Connecting

    private func open(_ connection: LoadConnection) {
        guard !self.isStopping else { return }
        connection.phase = .connecting
        connection.attemptStart = BenchClock.monotonicNanoseconds()
        connection.sawFirstByte = false
        self.counters.attempts += connection.subscriptions.count
        let setup = self.setupPipeline
        var bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(.nanoseconds(self.plan.connectTimeoutNanoseconds))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try setup(channel, connection, self)
                }
            }
        if let source = connection.sourceAddress {
            // IP_BIND_ADDRESS_NO_PORT: pick the local port at connect() time, per destination,
            // instead of at bind() time from one range shared by every destination.
            bootstrap = bootstrap
                .channelOption(ChannelOptions.ipOption(.init(rawValue: 24)), value: 1)
                .bind(to: source)
        }
        bootstrap.connect(to: self.plan.address).whenComplete { result in
            switch result {
            case .success(let channel):
                // The handler's channelActive has moved the connection to .open already.
                if self.isStopping {
                    channel.close(promise: nil)
                }
            case .failure(let error):
                // A connect that failed never became active, so it gets no channelInactive.
                guard case .connecting = connection.phase else { return }
                self.counters.connectErrors += connection.subscriptions.count
                self.counters.noteError("connect: \(error)")
                self.ended(connection)
            }
        }
    }

    // MARK: Called by the protocol handlers (on this loop)

    /// channelActive: TCP is up (TLS may still be to come).
    func connected(_ connection: LoadConnection, channel: Channel) {
        connection.phase = .open(channel)
        let micros = (BenchClock.monotonicNanoseconds() - connection.attemptStart) / 1_000
        LoadCounters.record(micros, in: &self.counters.connectTime)
    }

    /// The first byte of a response on this connection (per attempt).
    func firstByte(_ connection: LoadConnection) {
        guard !connection.sawFirstByte else { return }
        connection.sawFirstByte = true
        let micros = (BenchClock.monotonicNanoseconds() - connection.attemptStart) / 1_000
        LoadCounters.record(micros, in: &self.counters.timeToFirstByte)
    }

    /// A response head arrived (HTTP/2: per stream, from when its wait started).
    func recordTimeToFirstByte(since start: Int64) {
        LoadCounters.record((BenchClock.monotonicNanoseconds() - start) / 1_000, in: &self.counters.timeToFirstByte)
    }

    /// A response head arrived for `subscription`. Returns whether it is an SSE stream to read.
    func headReceived(_ subscription: Subscription, status: Int, isEventStream: Bool) -> Bool {
        guard status == 200, isEventStream else {
            if status != 200 {
                self.counters.badStatus[status, default: 0] += 1
            } else {
                self.counters.notEventStream += 1
            }
            subscription.phase = .rejected
            return false
        }
        subscription.phase = .streaming
        self.counters.held += 1
        return true
    }

    /// `subscription`'s response ended or failed while its connection stays (HTTP/2 streams).
    /// `byStorm`: we closed it in the storm, which is not a dropped stream.
    func subscriptionEnded(_ subscription: Subscription, byStorm: Bool = false) {
        switch subscription.phase {
        case .streaming:
            self.counters.held -= 1
            if !self.isStopping && !byStorm { self.counters.dropped += 1 }
        case .awaitingHead:
            if !self.isStopping { self.counters.closedBeforeHead += 1 }
        case .idle, .rejected:
            break
        }
        subscription.phase = .idle
    }

    func protocolError(_ description: String) {
        self.counters.protocolErrors += 1
        self.counters.noteError(description)
    }

    /// The connection closed (channelInactive): account for its subscriptions, maybe reconnect.
    func closed(_ connection: LoadConnection) {
        // Only an active channel gets here; one that failed to connect is handled by the connect result.
        guard case .open = connection.phase else { return }
        self.ended(connection)
    }

    private func ended(_ connection: LoadConnection) {
        let byStorm = connection.closedByStorm
        connection.closedByStorm = false
        for subscription in connection.subscriptions {
            self.subscriptionEnded(subscription, byStorm: byStorm)
        }
        guard !self.isStopping, self.plan.reconnect || byStorm else {
            connection.phase = .closed
            return
        }
        if byStorm {
            // "Come back at once": no delay and no jitter, right after its own close.
            self.counters.reconnects += 1
            self.open(connection)
            return
        }
        // As EventSource: the server's retry: if it sent one, else the configured delay; jittered
        // ±50% so that a whole herd does not come back in the same millisecond.
        let base = connection.subscriptions.first?.progress.retryNanoseconds ?? self.plan.reconnectDelayNanoseconds
        let delay = base / 2 + Int64.random(in: 0...max(0, base))
        let task = self.eventLoop.scheduleTask(in: .nanoseconds(delay)) {
            guard !self.isStopping else { return }
            self.counters.reconnects += 1
            self.open(connection)
        }
        connection.phase = .waiting(task)
    }

    // MARK: Storm

    /// Connections the storm closes per pass before the loop reads its sockets again.
    static let stormBatchSize = 64
    /// Between two batches of the storm: long enough that the next batch is not due before the
    /// loop has polled its sockets (and read, connected and written meanwhile).
    static let stormPause = TimeAmount.microseconds(200)

    /// The reconnect storm: every connection that carries a streaming subscription is closed and
    /// reopened at once with Last-Event-ID (`ended` does the reopening), each subscription noting
    /// when its connection went. Connections not streaming at the storm (still connecting, waiting
    /// for a reconnect) are left alone and counted, since they have nothing to resume.
    ///
    /// A client-side close (FIN), as a browser closes when a page reloads or a network changes:
    /// the gateway sees the end of its client's connection and has to serve a new request.
    ///
    /// The closes go in batches, with the loop's reads in between: one core plays every client
    /// here, and a single pass over thousands of closes and connects would leave the events that
    /// arrive meanwhile unread, so the resume times would measure this loop's backlog rather than
    /// the server's answer.
    func storm() {
        guard !self.isStopping else { return }
        var targets: [LoadConnection] = []
        for connection in self.connections {
            if case .open = connection.phase, connection.subscriptions.contains(where: \.isStreaming) {
                targets.append(connection)
            } else {
                self.counters.stormNotStreaming += connection.subscriptions.count
            }
        }
        self.storm(targets[...])
    }

    private func storm(_ targets: ArraySlice<LoadConnection>) {
        guard !self.isStopping else { return }
        var first: Int64 = 0
        var last: Int64 = 0
        for connection in targets.prefix(Self.stormBatchSize) {
            let streaming = connection.subscriptions.filter(\.isStreaming)
            // It may have ended since the storm began (the server closed it while we read).
            guard case .open(let channel) = connection.phase, !streaming.isEmpty else {
                self.counters.stormNotStreaming += connection.subscriptions.count
                continue
            }
            // Each connection's own moment: the resume is timed from its drop, not from the storm's start.
            let now = BenchClock.wallNanoseconds()
            if first == 0 { first = now }
            last = now
            for subscription in streaming {
                subscription.progress.stormDropWallNanoseconds = now
            }
            self.counters.stormDropped += streaming.count
            self.counters.stormNotStreaming += connection.subscriptions.count - streaming.count
            connection.closedByStorm = true
            channel.close(promise: nil)
        }
        self.counters.noteStormDrops(first: first, last: last)
        let rest = targets.dropFirst(Self.stormBatchSize)
        if !rest.isEmpty {
            // Not a task for now: SwiftNIO runs the tasks queued (even those queued by a task)
            // until none is left before it polls its sockets again, so the closes would all go
            // in one pass after all. A task due a little later lets the loop poll first.
            self.eventLoop.scheduleTask(in: Self.stormPause) { self.storm(rest) }
        }
    }

    // MARK: Runner

    /// Stops opening and reconnecting, takes the final counts (before anything is closed, so that
    /// "held" means held to the end), then closes every connection.
    func finish() -> EventLoopFuture<LoadCounters> {
        self.eventLoop.flatSubmit {
            self.isStopping = true
            self.opener?.cancel()
            self.stormTask?.cancel()
            let final = self.counters
            var closes: [EventLoopFuture<Void>] = []
            for connection in self.connections {
                switch connection.phase {
                case .open(let channel):
                    closes.append(channel.close().recover { _ in })
                case .waiting(let task):
                    task.cancel()
                case .idle, .connecting, .closed:
                    break
                }
            }
            return EventLoopFuture.andAllComplete(closes, on: self.eventLoop).map { final }
        }
    }

    func snapshot() -> EventLoopFuture<LoadCounters> {
        self.eventLoop.submit { self.counters }
    }
}
