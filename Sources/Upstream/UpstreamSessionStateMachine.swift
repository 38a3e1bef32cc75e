import LifelineCore
import NIOCore

/// When an upstream session connects, waits, or gives up: the pure part of `UpstreamSession`.
///
/// It paces the origin as a browser would: after the origin ends a response cleanly it waits the
/// reconnection time (the origin's `retry:`, else `UpstreamPacing.defaultReconnectionTime`), so an origin
/// that sends one event and exits is polled, not hammered; the backoff grows with every connection
/// that did not stay up for `UpstreamPacing.stableAfter`, so an origin that accepts and drops at once backs
/// off instead of being hit in a loop.
struct UpstreamSessionStateMachine {
    enum State: Equatable {
        case idle
        case connecting
        /// A connection answered 200 with an event stream, at `since`.
        case streaming(since: NIODeadline)
        case waiting
        case stopped
    }

    enum Action: Equatable {
        case none
        case connect
        case notifyConnected(isReconnect: Bool)
        /// Close the current connection (its answer was not an event stream); its end follows.
        case closeConnection
        case scheduleReconnect(TimeAmount)
        case end(StreamEndReason)
    }

    private(set) var state = State.idle
    var backoff: ReconnectBackoff
    let giveUp: TimeAmount?
    let pacing: UpstreamPacing
    /// Connections since the last one that stayed up (`pacing.stableAfter`): the backoff's exponent.
    private(set) var attempt = 0
    /// When the origin stopped serving: the start of the give-up clock.
    private var failingSince: NIODeadline?
    private var connections = 0
    /// The origin's last `retry:` (ms), unclamped.
    private var originRetry: Int?

    init(backoff: ReconnectBackoff, giveUp: TimeAmount?, pacing: UpstreamPacing = UpstreamPacing()) {
        self.backoff = backoff
        self.giveUp = (giveUp.map { $0 > .zero } ?? false) ? giveUp : nil
        self.pacing = pacing
    }

    /// - Parameter adopted: the first connection is already streaming (the client that opened the
    ///   stream made it); otherwise that request failed and the session starts by waiting.
    mutating func start(adopted: Bool, now: NIODeadline, random: Double) -> Action {
        guard self.state == .idle else { return .none }
        if adopted {
            self.connections = 1
            self.state = .streaming(since: now)
            return .notifyConnected(isReconnect: false)
        }
        self.state = .connecting
        return self.connectionEnded(now: now, random: random, cleanEnd: false)
    }

    mutating func responseHead(status: Int, isEventStream: Bool, now: NIODeadline) -> Action {
        guard self.state == .connecting else { return .none }
        if status == 200 && isEventStream {
            self.connections += 1
            self.failingSince = nil
            self.state = .streaming(since: now)
            return .notifyConnected(isReconnect: self.connections > 1)
        }
        if status == 204 {
            self.state = .stopped
            return .end(.originNoContent)
        }
        // 5xx, a 4xx during a deploy, an HTML error page: retried, so that one bad answer does
        // not end every client's stream. `--upstream-give-up` bounds it.
        return .closeConnection
    }

    /// The current connection ended. `cleanEnd`: the origin finished its response (rather than
    /// failing, resetting, or being cut by the gateway).
    mutating func connectionEnded(now: NIODeadline, random: Double, cleanEnd: Bool) -> Action {
        var wasStreaming = false
        switch self.state {
        case .streaming(let since):
            wasStreaming = true
            if now - since >= self.pacing.stableAfter {
                self.attempt = 0
            }
        case .connecting:
            break
        case .idle, .waiting, .stopped:
            return .none
        }
        let since = self.failingSince ?? now
        self.failingSince = since
        var delay = self.backoff.delay(attempt: self.attempt, random: random)
        self.attempt += 1
        if wasStreaming && cleanEnd {
            delay = max(delay, self.reconnectionTime)
        }
        if let giveUp = self.giveUp {
            let deadline = since + giveUp
            if now >= deadline {
                self.state = .stopped
                return .end(.originGaveUp)
            }
            // One last attempt right at the deadline rather than giving up early.
            delay = min(delay, deadline - now)
        }
        self.state = .waiting
        return .scheduleReconnect(delay)
    }

    /// The wait after a clean end: the origin's `retry:` or the default, clamped.
    var reconnectionTime: TimeAmount {
        let wanted = self.originRetry.map { TimeAmount.milliseconds(Int64($0)) } ?? self.pacing.defaultReconnectionTime
        let ceiling = max(self.backoff.maximum, self.pacing.defaultReconnectionTime)
        return min(max(wanted, self.pacing.minimumReconnectionTime), ceiling)
    }

    mutating func reconnectDue() -> Action {
        guard self.state == .waiting else { return .none }
        self.state = .connecting
        return .connect
    }

    mutating func originRetry(milliseconds: Int) {
        let clamped = min(max(milliseconds, 0), Int(Int32.max))
        self.originRetry = clamped
        self.backoff.originRetry = .milliseconds(Int64(clamped))
    }

    mutating func stop() {
        self.state = .stopped
    }
}
