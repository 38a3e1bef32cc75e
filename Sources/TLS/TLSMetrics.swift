import Atomics

/// Counters shared by all handlers of a process, for logs and metrics. Each TLS connection ends
/// up in at most one of the "ending" counters, so they add up.
///
/// Lock-free: they happen once or twice per connection, on every loop.
public final class TLSMetrics: Sendable {
    public struct Snapshot: Sendable, Hashable, CustomStringConvertible {
        /// Handshakes that finished (certificate verified, when the client verifies).
        public var handshakesCompleted = 0
        /// Handshakes that failed with a TLS error (no shared cipher or protocol, untrusted
        /// certificate, garbage instead of a ClientHello) or timed out.
        public var handshakesFailed = 0
        /// Connections that ended during the handshake after the peer sent something: a client
        /// that gave up. Connections closed before a single byte arrived (TCP health checks,
        /// port scans) are not TLS handshakes and are not counted at all.
        public var handshakesAbandoned = 0
        /// Established connections that ended in order: the peer's close_notify arrived, or we
        /// closed (sending our close_notify) and the peer answered or went away.
        public var cleanCloses = 0
        /// Established connections whose transport ended without the peer's close_notify while
        /// we were not closing: browsers do this all the time; it is not an error.
        public var uncleanEOFs = 0
        /// Established connections that ended on a TLS error (a corrupt record, ...).
        public var protocolErrors = 0

        public init() {}

        public var description: String {
            "handshakes completed=\(handshakesCompleted) failed=\(handshakesFailed) "
                + "abandoned=\(handshakesAbandoned), closes clean=\(cleanCloses) "
                + "uncleanEOF=\(uncleanEOFs) protocolError=\(protocolErrors)"
        }
    }

    enum Event: Int, CaseIterable {
        case handshakeCompleted
        case handshakeFailed
        case handshakeAbandoned
        case cleanClose
        case uncleanEOF
        case protocolError
    }

    private let counters: [ManagedAtomic<Int>] = Event.allCases.map { _ in ManagedAtomic(0) }

    public init() {}

    public var snapshot: Snapshot {
        func value(_ event: Event) -> Int { self.counters[event.rawValue].load(ordering: .relaxed) }
        var snapshot = Snapshot()
        snapshot.handshakesCompleted = value(.handshakeCompleted)
        snapshot.handshakesFailed = value(.handshakeFailed)
        snapshot.handshakesAbandoned = value(.handshakeAbandoned)
        snapshot.cleanCloses = value(.cleanClose)
        snapshot.uncleanEOFs = value(.uncleanEOF)
        snapshot.protocolErrors = value(.protocolError)
        return snapshot
    }

    func record(_ event: Event) {
        self.counters[event.rawValue].wrappingIncrement(ordering: .relaxed)
    }
}
