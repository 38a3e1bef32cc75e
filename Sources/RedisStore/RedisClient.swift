import Logging
import NIOCore
import Redis

/// One event loop's connection to Redis for commands (not blocking reads): connects on first
/// use, reconnects with backoff, fails fast while Redis is down (so that streams fall back at
/// once instead of queueing), and gives up on a command that gets no answer in `timeout` by
/// replacing the connection (a wedged server or a half-open socket answers nothing, ever).
///
/// Confined to `eventLoop`: only the streams of that loop use it, so nothing crosses loops.
final class RedisClient: RedisCommandRouting {
    enum State {
        case idle
        case connecting(EventLoopFuture<RedisConnection>)
        case connected(RedisConnection)
        /// The last attempt failed; commands fail until `until`, then the next one reconnects.
        case backingOff(until: NIODeadline, reason: String)
    }

    let eventLoop: EventLoop
    private let endpoint: RedisEndpoint
    private let logger: Logger
    private var state: State = .idle
    private var attempt = 0
    /// Scripts known to be loaded on the current connection.
    private var loadedScripts: Set<String> = []

    init(endpoint: RedisEndpoint, eventLoop: EventLoop, logger: Logger) {
        self.endpoint = endpoint
        self.eventLoop = eventLoop
        self.logger = logger
    }

    /// Whether the last thing tried worked (for the health gauge).
    var isUp: Bool {
        if case .connected = self.state { return true }
        return false
    }

    /// Sends one command; fails with `RedisUnavailable` when Redis cannot be reached or does not
    /// answer in time, with `RedisServerError` for an error reply.
    func send(_ command: RESPCommand, key: String? = nil) -> EventLoopFuture<RESPToken> {
        self.eventLoop.preconditionInEventLoop()
        return self.connection().assumeIsolated().flatMap { connection in
            CommandDeadline.apply(connection.send(command), closing: connection, after: self.endpoint.commandTimeout,
                                  on: self.eventLoop, source: "redis")
        }.nonisolated()
    }

    /// Runs a server-side script by its digest, loading it (`EVAL`) when the server does not
    /// have it (a new connection, a restarted or flushed server).
    func run(_ script: RedisScript, keys: [String], arguments: [RESPArgument]) -> EventLoopFuture<RESPToken> {
        self.eventLoop.preconditionInEventLoop()
        var evalsha: [RESPArgument] = [.string("EVALSHA"), .string(script.sha1), .integer(keys.count)]
        evalsha += keys.map { .string($0) }
        evalsha += arguments
        return self.send(RESPCommand(arguments: evalsha)).assumeIsolated().flatMapError { error in
            guard let serverError = error as? RedisServerError, serverError.code == "NOSCRIPT" else {
                return self.eventLoop.makeFailedFuture(error)
            }
            var eval: [RESPArgument] = [.string("EVAL"), .string(script.source), .integer(keys.count)]
            eval += keys.map { .string($0) }
            eval += arguments
            return self.send(RESPCommand(arguments: eval))
        }.nonisolated()
    }

    func address(forKey key: String) -> EventLoopFuture<RedisAddress> {
        self.eventLoop.makeSucceededFuture(self.endpoint.primaryAddress)
    }

    func close() {
        switch self.state {
        case .connected(let connection):
            connection.close()
        case .connecting(let future):
            future.whenSuccess { $0.close() }
        case .idle, .backingOff:
            break
        }
        self.state = .idle
    }

    // MARK: Connecting

    private func connection() -> EventLoopFuture<RedisConnection> {
        switch self.state {
        case .connected(let connection):
            return self.eventLoop.makeSucceededFuture(connection)
        case .connecting(let future):
            return future
        case .backingOff(let until, let reason) where self.eventLoop.now < until:
            return self.eventLoop.makeFailedFuture(RedisUnavailable(reason: reason))
        case .idle, .backingOff:
            return self.connect()
        }
    }

    private func connect() -> EventLoopFuture<RedisConnection> {
        let future = self.endpoint.connect(on: self.eventLoop).hop(to: self.eventLoop)
        self.state = .connecting(future)
        future.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let connection):
                self.attempt = 0
                self.state = .connected(connection)
                connection.closeFuture.hop(to: self.eventLoop).assumeIsolated().whenComplete { _ in
                    self.connectionClosed(connection)
                }
            case .failure(let error):
                let delay = RedisEndpoint.backoff(attempt: self.attempt)
                self.attempt += 1
                let reason = "redis unreachable: \(error)"
                self.state = .backingOff(until: self.eventLoop.now + delay, reason: reason)
                self.logger.warning("could not connect to redis", metadata: ["error": "\(error)", "retry_in_ms": "\(delay.nanoseconds / 1_000_000)"])
            }
        }
        return future.flatMapErrorThrowing { error in throw RedisUnavailable(reason: "\(error)") }
    }

    private func connectionClosed(_ connection: RedisConnection) {
        guard case .connected(let current) = self.state, current === connection else { return }
        self.logger.warning("redis connection closed")
        self.state = .idle
    }
}

/// Redis could not be used (unreachable, closed, or no answer in time).
struct RedisUnavailable: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
}

extension RESPArgument {
    /// A count or a time in a command: `Int` as Swift code has it.
    static func integer(_ value: Int) -> RESPArgument { .int(Int64(value)) }
}
