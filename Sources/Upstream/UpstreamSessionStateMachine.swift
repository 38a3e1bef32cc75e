import LifelineCore
import NIOCore

/// When an upstream session connects, waits, or gives up: the pure part of `UpstreamSession`.
struct UpstreamSessionStateMachine {
    enum State: Equatable {
        case idle
        case connecting
        /// A connection answered 200 with an event stream.
        case streaming(receivedEvent: Bool)
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
    /// Failed attempts since the last connection that delivered an event.
    private(set) var attempt = 0
    /// When the origin stopped serving: the start of the give-up clock.
    private var failingSince: NIODeadline?
    private var connections = 0

    init(backoff: ReconnectBackoff, giveUp: TimeAmount?) {
        self.backoff = backoff
        self.giveUp = (giveUp.map { $0 > .zero } ?? false) ? giveUp : nil
    }

    /// - Parameter adopted: the first connection is already streaming (the client that opened the
    ///   stream made it); otherwise that request failed and the session starts by waiting.
    mutating func start(adopted: Bool, now: NIODeadline, random: Double) -> Action {
        guard self.state == .idle else { return .none }
        if adopted {
            self.connections = 1
            self.state = .streaming(receivedEvent: false)
            return .notifyConnected(isReconnect: false)
        }
        self.state = .connecting
        return self.connectionEnded(now: now, random: random)
    }

    mutating func responseHead(status: Int, isEventStream: Bool) -> Action {
        guard self.state == .connecting else { return .none }
        if status == 200 && isEventStream {
            self.connections += 1
            self.failingSince = nil
            self.state = .streaming(receivedEvent: false)
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

    mutating func eventReceived() {
        if self.state == .streaming(receivedEvent: false) {
            self.state = .streaming(receivedEvent: true)
            self.attempt = 0
        }
    }

    mutating func connectionEnded(now: NIODeadline, random: Double) -> Action {
        switch self.state {
        case .connecting, .streaming:
            break
        case .idle, .waiting, .stopped:
            return .none
        }
        let since = self.failingSince ?? now
        self.failingSince = since
        var delay = self.backoff.delay(attempt: self.attempt, random: random)
        self.attempt += 1
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

    mutating func reconnectDue() -> Action {
        guard self.state == .waiting else { return .none }
        self.state = .connecting
        return .connect
    }

    mutating func originRetry(milliseconds: Int) {
        self.backoff.originRetry = .milliseconds(Int64(min(milliseconds, Int(Int32.max))))
    }

    mutating func stop() {
        self.state = .stopped
    }
}
