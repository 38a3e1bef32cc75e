import LifelineCore
import NIOCore

import SSE
import TLS

/// What the front end keeps once per event loop rather than once per connection: the heartbeat
/// clock and the connections' idle timers (one timer per loop each), the bytes every client on
/// the loop is sent alike, and the loop's connections, for shutdown.
final class LoopContext: @unchecked Sendable {  // confined to `eventLoop`
    let eventLoop: EventLoop
    let heartbeatClock: HeartbeatClock
    /// The idle timers of this loop's connections that wait for a request head
    /// (`--request-head-timeout`, `ClientConnection.armIdleTimer`): one scheduled task for all.
    let idleTimers: DeadlineList
    /// TLS handshakes' deadlines, kept in `idleTimers` too (one timer for all).
    let tlsHandshakeTimers: TLSHandshakeTimers
    /// This loop's counters (`GatewayMetrics`): changed here without a lock.
    let counters: LoopCounters
    /// The configuration new connections and requests on this loop take (swapped by a reload).
    private(set) var shared: GatewayShared
    /// Lets this loop's streaming clients go, each at its moment, once a drain begins.
    let drainClock: DrainClock
    /// The connection handlers of this loop's clients (HTTP/1.1 and HTTP/2), by their context.
    /// Confined to the loop, so tracking a connection costs one set entry of one pointer: no
    /// lock, no close-future callback (the protocol and TLS, for the open-connection counts,
    /// are the connection's own to say when it leaves).
    private var connections: Set<TrackedConnection> = []
    /// Shutdown has begun: a connection that gets its front end from now on winds down at once.
    private(set) var isShuttingDown = false
    /// The heartbeat as a chunk: written as is to every idle client on this loop.
    private(set) var heartbeat: StreamChunk
    /// The heartbeat of private generations, read by SDKs: one comment line and no blank line.
    /// A blank line after it ends an event in decoders that keep the last id (`httpx-sse` and the
    /// `openai` package's own dispatch an empty event there, and the latter fails to parse it),
    /// and `--heartbeat-event` would be an event to them; a lone comment line is nothing to all.
    private(set) var privateHeartbeat: StreamChunk
    /// The comment written right after an event-stream response head.
    private(set) var opening: ByteBuffer
    /// Frames the bytes this loop's HTTP/1.1 subscribers are sent alike, once for all of them.
    let chunkFramer = HTTP1ChunkFramer()
    /// `--io-uring`: this loop's batch of plaintext clients' event writes (nil without the flag,
    /// or where the kernel refuses io_uring; set at start, a reload does not change it).
    let sendBatch: SendBatch?

    init(eventLoop: EventLoop, shared: GatewayShared) {
        self.eventLoop = eventLoop
        self.shared = shared
        self.counters = shared.metrics.counters(for: eventLoop)
        self.drainClock = DrainClock(eventLoop: eventLoop)
        let idleTimers = DeadlineList(eventLoop: eventLoop)
        self.idleTimers = idleTimers
        self.tlsHandshakeTimers = TLSHandshakeTimers { deadline, expired in
            let entry = idleTimers.add(deadline: deadline, expired)
            return { idleTimers.remove(entry) }
        }
        let configuration = shared.configuration
        self.heartbeatClock = HeartbeatClock(eventLoop: eventLoop, interval: configuration.heartbeat)
        (self.heartbeat, self.opening) = Self.fixedBytes(configuration)
        self.privateHeartbeat = Self.privateHeartbeatBytes(configuration)
        // GatewayServer.start turned the flag off where the kernel has no io_uring for us.
        self.sendBatch = configuration.ioUring ? SendBatch(eventLoop: eventLoop) : nil
    }

    private static func privateHeartbeatBytes(_ configuration: GatewayConfiguration) -> StreamChunk {
        var bytes = ByteBuffer()
        // Comment text is one line (the flag refuses line breaks).
        bytes.writeString(":" + configuration.heartbeatComment + "\n")
        return StreamChunk(bytes: bytes, eventCount: 0)
    }

    private static func fixedBytes(_ configuration: GatewayConfiguration) -> (heartbeat: StreamChunk, opening: ByteBuffer) {
        var heartbeat = ByteBuffer()
        if let name = configuration.heartbeatEvent {
            SSESerializer.write(SSEEvent(type: name, data: ""), into: &heartbeat)
        } else {
            SSESerializer.writeComment(configuration.heartbeatComment, into: &heartbeat)
        }
        var opening = ByteBuffer()
        SSESerializer.writeComment(configuration.openingComment, into: &opening)
        return (StreamChunk(bytes: heartbeat, eventCount: 0), opening)
    }

    /// A configuration reload reaches this loop: new connections and requests use `shared`,
    /// and every client here gets the new heartbeat (interval and bytes).
    func reload(_ shared: GatewayShared) {
        self.eventLoop.preconditionInEventLoop()
        self.shared = shared
        (self.heartbeat, self.opening) = Self.fixedBytes(shared.configuration)
        self.privateHeartbeat = Self.privateHeartbeatBytes(shared.configuration)
        self.heartbeatClock.updateInterval(shared.configuration.heartbeat)
    }

    // MARK: Connections

    /// Tracks a connection's front-end handler until `removeConnection`. If shutdown has begun,
    /// the connection is told at once.
    func addConnection(_ context: ChannelHandlerContext, protocol clientProtocol: ClientProtocol, tls: Bool) {
        guard self.connections.insert(TrackedConnection(context: context)).inserted else { return }
        self.counters.values.connectionsOpen[clientProtocol, tls: tls] += 1
        if self.isShuttingDown || self.drainClock.isDraining {
            // Through the loop: the handler is still being added.
            let bound = NIOLoopBound(context, eventLoop: self.eventLoop)
            let event: any Sendable = self.isShuttingDown ? GatewayShutdown() : GatewayDrain()
            self.eventLoop.execute {
                bound.value.pipeline.fireUserInboundEventTriggered(event)
            }
        }
    }

    /// Stops tracking a connection; `clientProtocol` and `tls` are what it was added with.
    func removeConnection(_ context: ChannelHandlerContext, protocol clientProtocol: ClientProtocol, tls: Bool) {
        guard self.connections.remove(TrackedConnection(context: context)) != nil else { return }
        self.counters.values.connectionsOpen[clientProtocol, tls: tls] -= 1
    }

    var connectionCount: Int { self.connections.count }

    /// Tells every connection that the gateway is shutting down (`GatewayShutdown`): idle ones
    /// close, busy ones after their response.
    func beginShutdown() {
        self.isShuttingDown = true
        for entry in self.connections {
            entry.context.pipeline.fireUserInboundEventTriggered(GatewayShutdown())
        }
    }

    /// Begins a drain: idle connections close, plain responses close their connection when done,
    /// streaming clients are let go one by one until `schedule.deadline` (`DrainClock`).
    func beginDrain(_ schedule: DrainSchedule) {
        guard !self.drainClock.isDraining, !self.isShuttingDown else { return }
        self.drainClock.begin(schedule)
        for entry in self.connections {
            entry.context.pipeline.fireUserInboundEventTriggered(GatewayDrain())
        }
    }

    /// Closes every connection still open.
    func closeAllConnections() {
        for entry in Array(self.connections) {
            entry.context.close(promise: nil)
        }
    }
}

/// A connection's front-end context in its loop's set, identified by the context object.
struct TrackedConnection: Hashable {
    let context: ChannelHandlerContext

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.context === rhs.context }

    func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(self.context))
    }
}
