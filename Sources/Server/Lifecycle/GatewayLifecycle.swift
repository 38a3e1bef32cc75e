/// The process's life as one state machine: ready → (upgrading →) draining → stopping → stopped.
/// Signals and the upgrade's child feed it events; it answers with what to do. Pure: the caller
/// (`LifelineMain`) carries out the actions, and `/readyz` reads `readiness`.
public struct GatewayLifecycle: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        /// Serving.
        case ready
        /// Serving, while a new process started from the installed binary gets ready on the
        /// same listening sockets (SIGUSR2).
        case upgrading
        /// Not accepting; clients are let go over the drain window; streams go on meanwhile.
        case draining
        /// Ending everything now.
        case stopping
        case stopped
    }

    public enum Signal: Sendable, Equatable {
        /// SIGTERM: drain; a second one stops at once.
        case terminate
        /// SIGINT: stop at once.
        case interrupt
        /// SIGUSR2: start a new process and hand over to it.
        case upgrade
    }

    public enum Action: Sendable, Equatable {
        case none
        /// Stop accepting and let clients go over the drain window.
        case drain
        /// End streams and close connections now, then exit.
        case stopNow
        /// Start the new process with the listening sockets.
        case startUpgrade
        /// The signal does nothing in this state (logged).
        case ignored
    }

    public private(set) var state = State.ready

    public init() {}

    /// What `/readyz` says: only `ready` (and `upgrading`, which still serves) are ready.
    public var readiness: String {
        switch self.state {
        case .ready, .upgrading: return "ready"
        case .draining: return "draining"
        case .stopping, .stopped: return "stopping"
        }
    }

    public mutating func received(_ signal: Signal) -> Action {
        switch (self.state, signal) {
        case (.ready, .terminate), (.upgrading, .terminate):
            self.state = .draining
            return .drain
        case (.ready, .interrupt), (.upgrading, .interrupt), (.draining, .terminate), (.draining, .interrupt):
            self.state = .stopping
            return .stopNow
        case (.ready, .upgrade):
            self.state = .upgrading
            return .startUpgrade
        case (.upgrading, .upgrade), (.draining, .upgrade), (.stopping, _), (.stopped, _):
            return .ignored
        }
    }

    /// The new process is ready on the inherited sockets: this one hands over and drains.
    public mutating func upgradeSucceeded() -> Action {
        guard self.state == .upgrading else { return .none }
        self.state = .draining
        return .drain
    }

    /// The new process exited or never said it was ready: this one goes on serving.
    public mutating func upgradeFailed() -> Action {
        guard self.state == .upgrading else { return .none }
        self.state = .ready
        return .none
    }

    /// The drain window is over, or no client is left.
    public mutating func drainFinished() -> Action {
        guard self.state == .draining else { return .none }
        self.state = .stopping
        return .stopNow
    }

    public mutating func stopped() {
        self.state = .stopped
    }
}
