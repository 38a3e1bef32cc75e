import LifelineCore
import Logging
import NIOCore
import Redis

/// Follows one stream's history with blocking reads (`XREAD BLOCK`) on a connection of its own,
/// from the last entry it delivered, so that it never skips one; each answer is one batch. A kept
/// private generation's history is followed the same way, to its end entry.
///
/// A read that is not answered within its block time plus a grace is a connection that answers
/// nothing (a wedged server, a half-open socket): it is replaced once; if no connection can be
/// made, the follow fails and the stream falls back to the origin.
final class RedisHistoryFollower: HistoryFollowing {
    private enum State {
        case connecting(attempt: Int)
        case reading(RedisConnection)
        case stopped
    }

    private let key: String
    /// The epoch every entry must carry (shared histories); nil for a kept generation.
    private let epoch: String?
    /// A kept generation's facts key: when a read waits in vain, a missing key means its
    /// recorder is gone without an end (its instance died).
    private let liveKey: String?
    private var lastSequence: UInt64
    private let endpoint: RedisEndpoint
    /// Says which node holds the key (the one server, or the slot's master in a cluster).
    private let routing: RedisCommandRouting
    private let blockTime: TimeAmount
    private let eventLoop: EventLoop
    private weak var delegate: HistoryFollowerDelegate?
    private let logger: Logger
    private let allocator = ByteBufferAllocator()
    private var state: State = .connecting(attempt: 0)
    private var watchdog: Scheduled<Void>?

    init(key: String, epoch: String?, liveKey: String? = nil, after sequence: UInt64, endpoint: RedisEndpoint,
         routing: RedisCommandRouting, blockTime: TimeAmount, eventLoop: EventLoop, delegate: HistoryFollowerDelegate,
         logger: Logger) {
        self.key = key
        self.epoch = epoch
        self.liveKey = liveKey
        self.lastSequence = sequence
        self.endpoint = endpoint
        self.routing = routing
        self.blockTime = blockTime
        self.eventLoop = eventLoop
        self.delegate = delegate
        self.logger = logger
    }

    func start() {
        self.connect(attempt: 0)
    }

    func stop() {
        self.eventLoop.preconditionInEventLoop()
        // Stopped before the close: closing fails the pending read at once, and that failure
        // must not reach the delegate.
        let state = self.state
        self.state = .stopped
        self.watchdog?.cancel()
        self.watchdog = nil
        if case .reading(let connection) = state {
            connection.close()
        }
    }

    private func connect(attempt: Int) {
        self.state = .connecting(attempt: attempt)
        let eventLoop = self.eventLoop
        let endpoint = self.endpoint
        self.routing.address(forKey: self.key).flatMap { address in
            endpoint.connect(to: address, on: eventLoop)
        }.hop(to: self.eventLoop).assumeIsolated().whenComplete { result in
            guard case .connecting = self.state else {
                if case .success(let connection) = result { connection.close() }
                return
            }
            switch result {
            case .success(let connection):
                self.state = .reading(connection)
                self.read(on: connection)
            case .failure(let error):
                self.fail("cannot reach redis to follow the history: \(error)")
            }
        }
    }

    private func read(on connection: RedisConnection) {
        let blockMilliseconds = max(1, Int(self.blockTime.nanoseconds / 1_000_000))
        let command = RESPCommand(
            "XREAD", .string("COUNT"), .integer(1000), .string("BLOCK"), .integer(blockMilliseconds),
            .string("STREAMS"), .string(self.key), .string("\(self.lastSequence)-0")
        )
        let deadline = self.blockTime + self.endpoint.commandTimeout
        self.watchdog = self.eventLoop.assumeIsolated().scheduleTask(in: deadline) { [weak self] in
            self?.wedged(connection)
        }
        connection.send(command).hop(to: self.eventLoop).assumeIsolated().whenComplete { result in
            guard case .reading(let current) = self.state, current === connection else { return }
            self.watchdog?.cancel()
            self.watchdog = nil
            switch result {
            case .success(let reply):
                do {
                    let (events, end) = try self.batch(in: reply)
                    if let last = events.last {
                        self.lastSequence = last.sequence
                        self.delegate?.historyReceived(events)
                    }
                    // The delegate may have stopped us.
                    guard case .reading = self.state else { return }
                    if let end {
                        self.state = .stopped
                        connection.close()
                        self.delegate?.historyEnded(end)
                    } else if events.isEmpty, let liveKey = self.liveKey {
                        self.checkAlive(liveKey, then: connection)
                    } else {
                        self.read(on: connection)
                    }
                } catch {
                    connection.close()
                    self.fail("\(error)")
                }
            case .failure(let error):
                connection.close()
                self.fail("the history follow's connection failed: \(error)")
            }
        }
    }

    /// A read waited in vain on a kept generation: read on while its facts are there.
    private func checkAlive(_ liveKey: String, then connection: RedisConnection) {
        self.routing.send(RESPCommand("EXISTS", .string(liveKey)), key: liveKey).assumeIsolated().whenComplete { result in
            guard case .reading(let current) = self.state, current === connection else { return }
            switch result {
            case .success(let reply) where reply.int == 0:
                connection.close()
                self.fail("the generation's recording stopped without an end")
            case .success:
                self.read(on: connection)
            case .failure(let error):
                connection.close()
                self.fail("cannot reach redis to follow the generation: \(error)")
            }
        }
    }

    /// No answer in time: replace the connection once, resuming from the last delivered entry.
    private func wedged(_ connection: RedisConnection) {
        guard case .reading(let current) = self.state, current === connection else { return }
        self.logger.warning("redis did not answer a blocking read in time; replacing the connection")
        self.connect(attempt: 1)
        connection.close()
    }

    private func fail(_ reason: String) {
        guard case .stopped = self.state else {
            self.state = .stopped
            self.delegate?.historyFollowFailed(reason)
            return
        }
    }

    /// The entries of an XREAD answer: RESP3 gives a map of key to entries, RESP2 an array of
    /// [key, entries]; null when the block time passed with nothing new.
    private func batch(in reply: RESPToken) throws -> (events: [EncodedEvent], end: StreamEndReason?) {
        let entries: RESPToken.Array?
        switch reply.value {
        case .null:
            return ([], nil)
        case .map(let map):
            entries = map.first(where: { _ in true })?.value.array
        case .array(let streams):
            entries = streams.first(where: { _ in true })?.array.flatMap { pair in
                Array(pair).dropFirst().first?.array
            }
        default:
            entries = nil
        }
        guard let entries else { throw StoredEntry.DecodingError.malformed("unexpected XREAD answer") }
        if self.liveKey == nil {
            return (try StoredEntry.events(entries, epoch: self.epoch, receivedAt: self.eventLoop.now, allocator: self.allocator), nil)
        }
        return try StoredEntry.batch(entries, epoch: self.epoch, receivedAt: self.eventLoop.now, allocator: self.allocator)
    }
}
