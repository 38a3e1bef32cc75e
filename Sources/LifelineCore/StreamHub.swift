import NIOConcurrencyHelpers
import NIOCore

/// Finds the stream for a key, or lets exactly one client open it while the others with the
/// same key wait for the origin's answer. Thread-safe: the front ends of every event loop use it.
/// Keys are spread over shards, each with its own lock, so that stream requests on different
/// loops for different streams do not wait for one another.
public final class StreamHub: Sendable {
    public enum OpeningOutcome: Sendable {
        /// The origin answered with an event stream: join it.
        case stream(EventStream)
        /// The origin answered with something else; it went to the client that asked first.
        /// Make a request of your own.
        case notAStream
    }

    public enum Lookup: Sendable {
        /// A stream exists: attach to it.
        case stream(EventStream)
        /// No stream: the caller opens the origin request, then calls `promote` or `abandon`.
        case open(OpeningTicket)
        /// Another client is opening it: `onOpened` will be called on the caller's loop.
        case wait
    }

    /// The right to open the stream for a key, held by the first client.
    public struct OpeningTicket: Sendable {
        public let key: StreamKey
        fileprivate let opening: Opening
    }

    fileprivate final class Opening: @unchecked Sendable {
        // Guarded by the hub's lock.
        var waiters: [(EventLoop, @Sendable (OpeningOutcome) -> Void)] = []

        /// The waiters, once: a callback holds its client until it has run, and the ticket
        /// (kept by its opener until that is done) must not hold them after they were told.
        func takeWaiters() -> [(EventLoop, @Sendable (OpeningOutcome) -> Void)] {
            defer { self.waiters = [] }
            return self.waiters
        }
    }

    private enum Entry {
        case opening(Opening)
        case live(EventStream)
    }

    private static let shardCount = 16
    private let shards: [NIOLockedValueBox<[StreamKey: Entry]>] = (0..<StreamHub.shardCount).map { _ in NIOLockedValueBox([:]) }

    private func entries(_ key: StreamKey) -> NIOLockedValueBox<[StreamKey: Entry]> {
        self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))]
    }
    /// Private streams (one client each): not found by key, but counted and shut down.
    private let privateStreams = NIOLockedValueBox<[ObjectIdentifier: EventStream]>([:])
    /// Streams that have ended, for those who act when memory has been freed.
    private let ended = NIOLockedValueBox(0)

    public init() {}

    public func lookup(
        _ key: StreamKey,
        on eventLoop: EventLoop,
        onOpened: @escaping @Sendable (OpeningOutcome) -> Void
    ) -> Lookup {
        self.entries(key).withLockedValue { entries in
            switch entries[key] {
            case .live(let stream):
                return .stream(stream)
            case .opening(let opening):
                opening.waiters.append((eventLoop, onOpened))
                return .wait
            case nil:
                let opening = Opening()
                entries[key] = .opening(opening)
                return .open(OpeningTicket(key: key, opening: opening))
            }
        }
    }

    /// The live stream for `key`, if there is one.
    public func stream(for key: StreamKey) -> EventStream? {
        self.entries(key).withLockedValue { entries in
            if case .live(let stream) = entries[key] { return stream }
            return nil
        }
    }

    /// The origin answered with an event stream: `stream` now serves the key. Returns how many
    /// clients waited for it (each will attach as an opener, or say it will not).
    @discardableResult
    public func promote(_ ticket: OpeningTicket, to stream: EventStream) -> Int {
        let waiters = self.entries(ticket.key).withLockedValue { entries in
            entries[ticket.key] = .live(stream)
            return ticket.opening.takeWaiters()
        }
        for (loop, callback) in waiters {
            loop.execute { callback(.stream(stream)) }
        }
        return waiters.count
    }

    /// The origin answered with something that is not an event stream.
    public func abandon(_ ticket: OpeningTicket) {
        let waiters = self.entries(ticket.key).withLockedValue { entries in
            if case .opening(let opening) = entries[ticket.key], opening === ticket.opening {
                entries[ticket.key] = nil
            }
            return ticket.opening.takeWaiters()
        }
        for (loop, callback) in waiters {
            loop.execute { callback(.notAStream) }
        }
    }

    /// Records a private stream, so that status and shutdown see it.
    public func registerPrivate(_ stream: EventStream) {
        self.privateStreams.withLockedValue { $0[ObjectIdentifier(stream)] = stream }
    }

    /// How many streams have ended since the hub was made.
    public var endedStreamCount: Int { self.ended.withLockedValue { $0 } }

    func streamEnded(_ stream: EventStream) {
        self.ended.withLockedValue { $0 += 1 }
        if !stream.sharing.isShared {
            self.privateStreams.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(stream)) }
            return
        }
        self.entries(stream.key).withLockedValue { entries in
            if case .live(let current) = entries[stream.key], current === stream {
                entries[stream.key] = nil
            }
        }
    }

    /// Every live stream, private ones included, for the status page, metrics and shutdown.
    public var streams: [EventStream] {
        let shared = self.shards.flatMap { shard in
            shard.withLockedValue { entries in
                entries.values.compactMap { entry -> EventStream? in
                    if case .live(let stream) = entry { return stream }
                    return nil
                }
            }
        }
        return shared + self.privateStreams.withLockedValue { Array($0.values) }
    }

    /// What the status page shows of every live stream, each taken on its own loop.
    public func statuses() async -> [StreamStatus] {
        var byLoop: [ObjectIdentifier: (EventLoop, [EventStream])] = [:]
        for stream in self.streams {
            byLoop[ObjectIdentifier(stream.eventLoop), default: (stream.eventLoop, [])].1.append(stream)
        }
        var all: [StreamStatus] = []
        for (loop, streams) in byLoop.values {
            let boxed = UncheckedSendableBox(streams)
            let statuses = try? await loop.submit {
                boxed.value.lazy.filter { !$0.isEnded }.map { $0.status() }
            }.get()
            all += statuses ?? []
        }
        return all
    }
}
