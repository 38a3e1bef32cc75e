import NIOConcurrencyHelpers
import NIOCore

/// What a ``ScriptedOrigin`` and its connection handlers share: the test's request handler,
/// every request and responder so far, and the open connections (so `stop()` can cut them).
final class ScriptedOriginRegistry: Sendable {
    struct State {
        var requests: [ScriptedOrigin.Request] = []
        var responders: [OriginResponder] = []
        var connections: [ObjectIdentifier: Channel] = [:]
        var isStopping = false
    }

    let state = NIOLockedValueBox(State())
    let signal: ChangeSignal
    let handler: @Sendable (ScriptedOrigin.Request, OriginResponder) -> Void

    init(signal: ChangeSignal, handler: @escaping @Sendable (ScriptedOrigin.Request, OriginResponder) -> Void) {
        self.signal = signal
        self.handler = handler
    }

    /// Records a new connection; false if the origin is stopping and the connection must go.
    func connectionOpened(_ channel: Channel) -> Bool {
        let accepted = self.state.withLockedValue { state -> Bool in
            guard !state.isStopping else { return false }
            state.connections[ObjectIdentifier(channel)] = channel
            return true
        }
        if accepted {
            self.signal.notify()
        }
        return accepted
    }

    func connectionClosed(_ channel: Channel) {
        _ = self.state.withLockedValue { $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        self.signal.notify()
    }

    /// Records the request, then hands it to the test's handler (on the connection's loop).
    func received(_ request: ScriptedOrigin.Request, responder: OriginResponder) {
        self.state.withLockedValue { state in
            state.requests.append(request)
            state.responders.append(responder)
        }
        self.signal.notify()
        self.handler(request, responder)
    }
}
