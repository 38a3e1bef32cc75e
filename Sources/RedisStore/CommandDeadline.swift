import NIOCore
import Redis

/// A command without an answer in time means its connection answers nothing (a wedged server, a
/// half-open socket): the command fails as `RedisUnavailable` and the connection is closed, so
/// that the next command makes a new one. Error replies pass through as they are.
enum CommandDeadline {
    /// `future`'s result on `eventLoop`, or a failure after `timeout`; `source` names the server
    /// in the failure ("redis", "redis node 10.0.0.1:7000").
    static func apply<Value: Sendable>(
        _ future: EventLoopFuture<Value>, closing connection: RedisConnection, after timeout: TimeAmount,
        on eventLoop: EventLoop, source: String
    ) -> EventLoopFuture<Value> {
        let promise = eventLoop.makePromise(of: Value.self)
        let timer = eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            promise.fail(RedisUnavailable(reason: "\(source) did not answer within \(timeout.nanoseconds / 1_000_000) ms"))
            connection.close()
        }
        future.hop(to: eventLoop).assumeIsolated().whenComplete { result in
            timer.cancel()
            switch result {
            case .success(let value):
                promise.succeed(value)
            case .failure(let error as RedisServerError):
                promise.fail(error)
            case .failure(let error as RedisUnavailable):
                promise.fail(error)
            case .failure(let error):
                promise.fail(RedisUnavailable(reason: "\(source): \(error)"))
            }
        }
        return promise.futureResult
    }
}
