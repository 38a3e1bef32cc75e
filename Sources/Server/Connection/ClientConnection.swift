import LifelineCore
import Logging
import NIOCore

/// What both front ends (HTTP/1.1 and HTTP/2) keep of one client connection, and do the same way:
/// its admission under the connection limits, its registration with its loop (for drain and
/// shutdown), the one timer for a connection that sends no request (the request-head timeout,
/// an idle keep-alive or HTTP/2 connection), the bytes it was sent, and the access-log line
/// with the connection's `ExchangeOutcome` when it ends. The front ends keep only their framing.
/// Confined to the connection's loop; a value kept inline in its front end (no object of its own
/// per connection).
struct ClientConnection {
    enum Admission {
        case pending
        case admitted(ConnectionLimiter.Admission)
        /// Over a limit (the limiter's one-byte refusal: a `RequestRefusal` would widen every
        /// connection's record).
        case refused(ConnectionLimiter.Refusal)
        /// Released at close.
        case closed
    }

    // Kept in every connection's front end for its whole life: the fields are ordered so that
    // the record packs without padding (the 8-byte ones first, then the enums, then the small
    // ones), the admission is one byte and the request count 32 bits.
    // `StreamingClientMemoryTests` notices growth.
    let connectedAt: NIODeadline
    let loop: LoopContext
    private(set) var clientAddress: String?
    private(set) var eventsSent = 0
    private(set) var bytesSent = 0
    /// The last exchange's target and path (its query values masked), for the access log; made
    /// when an exchange ends, so a connection that streams from its first request holds none.
    private var lastExchange: LastExchange?
    /// Armed while the connection waits for a request: its entry in the loop's `idleTimers`.
    private var idleTimer: DeadlineList.Entry?
    /// How the connection ended; a failed exchange's outcome wins over a later complete one.
    private(set) var outcome = ExchangeOutcome.clientClosed
    private(set) var admission = Admission.pending
    let clientProtocol: ClientProtocol
    /// Over TLS; told at `register`, for the open-connection counts.
    private(set) var isTLS = false
    /// Requests on this connection (saturates at `UInt32.max`).
    private(set) var requests: UInt32 = 0

    init(protocol clientProtocol: ClientProtocol, loop: LoopContext, tls: Bool = false) {
        self.clientProtocol = clientProtocol
        self.isTLS = tls
        self.loop = loop
        self.connectedAt = loop.eventLoop.now
    }

    /// The configuration new requests on this connection take (the loop's, swapped by a reload).
    var shared: GatewayShared { self.loop.shared }

    // MARK: Admission

    /// Admits the connection under `--max-clients` and `--max-clients-per-ip`; returns the refusal,
    /// if any (the front end answers it and closes). Once per connection.
    mutating func admit(address: String?) -> RequestRefusal? {
        guard case .pending = self.admission else { return nil }
        self.clientAddress = address
        switch self.shared.limiter.admit(address: address ?? "unknown") {
        case .success(let admission):
            self.admission = .admitted(admission)
            self.loop.counters.values.connectionsAccepted += 1
            return nil
        case .failure(let limit):
            let refusal = limit.requestRefusal
            self.loop.counters.values.refused[refusal.reason] += 1
            self.loop.counters.note(.refused, "\(refusal.status.code) \(refusal.reason.rawValue) from \(address ?? "unknown")")
            self.admission = .refused(limit)
            self.outcome = .refused(refusal)
            return refusal
        }
    }

    var isPendingAdmission: Bool {
        if case .pending = self.admission { return true }
        return false
    }

    var refusal: RequestRefusal? {
        if case .refused(let limit) = self.admission { return limit.requestRefusal }
        return nil
    }

    // MARK: Registration with the loop

    /// Tracks the front end's `context` in the loop (drain, shutdown, the open-connection counts).
    mutating func register(_ context: ChannelHandlerContext, protocol clientProtocol: ClientProtocol, tls: Bool) {
        precondition(clientProtocol == self.clientProtocol, "a connection registers with its own protocol")
        self.isTLS = tls
        self.loop.addConnection(context, protocol: clientProtocol, tls: tls)
    }

    func unregister(_ context: ChannelHandlerContext) {
        self.loop.removeConnection(context, protocol: self.clientProtocol, tls: self.isTLS)
    }

    // MARK: The idle timer

    /// Arms the one timer for a connection without a request in flight: `onExpiry` runs after
    /// `--request-head-timeout` unless a request comes first (`requestStarted`). The timer is an
    /// entry in the loop's `idleTimers` (one scheduled task per loop, not per connection), which
    /// lets go of `onExpiry` when it fires or is cancelled: it may hold the front end strongly.
    mutating func armIdleTimer(_ onExpiry: @escaping () -> Void) {
        self.cancelIdleTimer()
        let timeout = self.shared.configuration.requestHeadTimeout
        guard timeout > .zero else { return }
        let timers = self.loop.idleTimers
        self.idleTimer = timers.add(deadline: timers.eventLoop.now + timeout, onExpiry)
    }

    /// A fired entry needs no clearing: removing it does nothing.
    mutating func cancelIdleTimer() {
        if let timer = self.idleTimer {
            self.loop.idleTimers.remove(timer)
            self.idleTimer = nil
        }
    }

    /// The connection's outcome when its idle timer fires: before any request, the client did
    /// not send one in time (408 over HTTP/1.1); after, the connection was merely idle.
    var idleOutcome: ExchangeOutcome {
        self.requests == 0 ? .refused(.headTimeout) : .idleTimeout
    }

    // MARK: Requests and bytes

    /// A request arrived: the idle timer stops.
    mutating func requestStarted() {
        if self.requests < .max {
            self.requests += 1
        }
        self.cancelIdleTimer()
    }

    /// Response bytes handed to the connection (HTTP/1.1 as on the wire, HTTP/2 the DATA payloads).
    mutating func countSent(_ bytes: Int) {
        self.bytesSent += bytes
        self.loop.counters.values.bytesSent += bytes
    }

    /// What a finished (or abandoned) exchange adds to the record.
    mutating func account(_ exchange: ClientExchange) {
        self.eventsSent += exchange.eventsSent
        let last = self.lastExchange ?? LastExchange()
        last.target = exchange.target
        if let path = exchange.streamPath {
            last.path = path
        }
        self.lastExchange = last
        if exchange.outcome != .completed {
            self.outcome = exchange.outcome
        }
    }

    /// The connection ends for a reason of its own (not an exchange's): a timeout, a drain, an
    /// error, a protocol violation.
    mutating func ended(_ outcome: ExchangeOutcome) {
        self.outcome = outcome
    }

    // MARK: Closing

    /// The connection is gone: releases its admission and writes its access-log line (once; not
    /// for a connection that never got as far as admission).
    mutating func close() {
        self.cancelIdleTimer()
        switch self.admission {
        case .pending, .closed:
            return
        case .admitted(let admission):
            self.shared.limiter.release(admission, address: self.clientAddress ?? "unknown")
        case .refused:
            break
        }
        self.admission = .closed
        // Built only when the line is written (the metadata is an autoclosure): below
        // `--log-level=info` a connection's close costs no strings. Numbers as numbers:
        // `--log-format=json` keeps them so for log pipelines.
        self.shared.accessLogger.info(
            "connection closed",
            metadata: [
                "client": "\(self.clientAddress ?? "-")",
                "protocol": "\(self.clientProtocol == .h2 ? "h2" : "http/1.1")",
                "path": "\(self.lastExchange?.path ?? "-")",
                "target": "\(self.lastExchange?.target ?? "-")",
                "requests": .stringConvertible(Int(self.requests)),
                "duration_ms": .stringConvertible(Int((self.loop.eventLoop.now - self.connectedAt).nanoseconds / 1_000_000)),
                "events": .stringConvertible(self.eventsSent),
                "bytes": .stringConvertible(self.bytesSent),
                "end": "\(self.outcome)",
                "end_by": "\(self.outcome.party.rawValue)",
            ]
        )
    }
}

/// What the access log names of a connection's last exchange.
final class LastExchange {
    var target = "-"
    var path = "-"
}
