import NIOCore

/// One SSE request the load tool keeps open: a connection's only one over HTTP/1.1, one of
/// `--multiplex` over HTTP/2. Its id sequence survives reconnects, so a resumed stream is judged
/// for gaps and duplicates against what came before.
///
/// Confined to its connection's event loop (`@unchecked Sendable` only to pass through NIO's
/// `@Sendable` initializers, which run on that same loop).
final class Subscription: @unchecked Sendable {
    enum Phase {
        /// No request in flight (before the first, or between a drop and the reconnect).
        case idle
        /// Request sent, no response head yet.
        case awaitingHead
        /// 200 + text/event-stream: this is a held subscription.
        case streaming
        /// The server answered something else; already counted.
        case rejected
    }

    let connectionIndex: Int
    let stream: Int
    let path: String
    var phase = Phase.idle
    var progress = SubscriptionProgress()

    init(connectionIndex: Int, stream: Int, path: String) {
        self.connectionIndex = connectionIndex
        self.stream = stream
        self.path = path
    }

    var isStreaming: Bool {
        if case .streaming = self.phase { return true }
        return false
    }

    /// `Last-Event-ID` to send, if the run resumes streams and this one has seen an id.
    func lastEventIDHeader(resume: Bool) -> String? {
        guard resume, let id = self.progress.lastEventID else { return nil }
        return String(id)
    }
}

/// One TCP connection of the load tool and the subscriptions it carries.
final class LoadConnection: @unchecked Sendable {
    enum Phase {
        case idle
        case connecting
        case open(Channel)
        /// Ended; a reconnect is scheduled.
        case waiting(Scheduled<Void>)
        /// Ended for good (no --last-event-id, or the run is over).
        case closed
    }

    let index: Int
    let sourceAddress: SocketAddress?
    let openingOffset: Int64
    let subscriptions: [Subscription]
    var phase = Phase.idle
    /// Monotonic start of the current attempt, for connect time and time to first byte.
    var attemptStart: Int64 = 0
    var sawFirstByte = false
    /// Set when the storm closes this connection: its close is ours, so it is not counted as a
    /// dropped stream, and it reconnects at once rather than after the reconnect delay.
    var closedByStorm = false

    init(index: Int, sourceAddress: SocketAddress?, openingOffset: Int64, subscriptions: [Subscription]) {
        self.index = index
        self.sourceAddress = sourceAddress
        self.openingOffset = openingOffset
        self.subscriptions = subscriptions
    }

    var channel: Channel? {
        if case .open(let channel) = self.phase { return channel }
        return nil
    }
}
