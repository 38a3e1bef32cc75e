import NIOConcurrencyHelpers

/// Counters of what the front end did, for logs and the status page.
public final class GatewayMetrics: Sendable {
    public struct Snapshot: Sendable {
        public var connectionsAccepted = 0
        public var connectionsRefused = 0
        public var slowClientsDisconnected = 0
        public var streamRequests = 0
        public var proxiedRequests = 0
        public var replayHits = 0
        public var replayMisses = 0
        public var badRequests = 0
        /// `Last-Event-ID`s refused at the edge (control characters, too long) and treated as absent.
        public var lastEventIDsRejected = 0
    }

    private let box = NIOLockedValueBox(Snapshot())

    public var snapshot: Snapshot { self.box.withLockedValue { $0 } }

    func record(_ update: (inout Snapshot) -> Void) {
        self.box.withLockedValue { update(&$0) }
    }
}
