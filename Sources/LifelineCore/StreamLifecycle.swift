import NIOCore

/// When a stream ends: the pure part of `Stream` (no timers, no I/O). A stream outlives its last
/// subscriber by the linger time, so that a client that reconnects finds its buffer and the
/// upstream connection still there.
struct StreamLifecycle {
    enum State: Equatable {
        /// Started; the first subscriber has not arrived yet.
        case awaitingFirst
        case active
        case lingering
        case ended
    }

    enum Action: Equatable {
        case none
        case startLinger(TimeAmount)
        case cancelLinger
        case end
    }

    /// How long a new stream waits for its first subscriber (the client that opened it is on its
    /// way) even when the linger time is shorter, as it is for private streams.
    static let firstSubscriberGrace = TimeAmount.seconds(10)

    let linger: TimeAmount
    private(set) var state = State.awaitingFirst
    private(set) var subscribers = 0

    init(linger: TimeAmount) {
        self.linger = linger
    }

    var isEnded: Bool { self.state == .ended }

    mutating func started() -> Action {
        guard self.state == .awaitingFirst else { return .none }
        return .startLinger(max(self.linger, Self.firstSubscriberGrace))
    }

    mutating func subscriberJoined() -> Action {
        switch self.state {
        case .ended:
            return .none
        case .awaitingFirst, .lingering:
            self.subscribers += 1
            self.state = .active
            return .cancelLinger
        case .active:
            self.subscribers += 1
            return .none
        }
    }

    mutating func subscriberLeft() -> Action {
        guard self.state == .active else { return .none }
        self.subscribers -= 1
        guard self.subscribers == 0 else { return .none }
        self.state = .lingering
        return self.linger > .zero ? .startLinger(self.linger) : .end
    }

    mutating func lingerExpired() -> Action {
        switch self.state {
        case .awaitingFirst, .lingering:
            return .end
        case .active, .ended:
            return .none
        }
    }

    /// Returns false when the stream had already ended.
    mutating func end() -> Bool {
        guard self.state != .ended else { return false }
        self.state = .ended
        self.subscribers = 0
        return true
    }
}
