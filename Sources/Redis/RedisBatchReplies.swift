import NIOCore

/// The replies of a batch (`RedisConnection.send(_: [RESPCommand])`) as they come in, shared by
/// the batch's entries in the handler's queue. A class so that the entries can share it;
/// confined to the connection's event loop like the handler.
final class RedisBatchReplies {
    private enum State {
        case collecting([RESPToken])
        /// Succeeded or failed: later calls do nothing (when the connection fails, each of the
        /// batch's pending entries fails it).
        case done
    }

    private let expected: Int
    private let promise: EventLoopPromise<[RESPToken]>
    private var state: State

    init(expected: Int, promise: EventLoopPromise<[RESPToken]>) {
        self.expected = expected
        self.promise = promise
        var replies: [RESPToken] = []
        replies.reserveCapacity(expected)
        self.state = .collecting(replies)
    }

    /// Adds the next reply; succeeds the promise with the last one.
    func append(_ reply: RESPToken) {
        guard case .collecting(var replies) = self.state else { return }
        // Through .done while appending, so that the array is not copied (it is uniquely held).
        self.state = .done
        replies.append(reply)
        if replies.count == self.expected {
            self.promise.succeed(replies)
        } else {
            self.state = .collecting(replies)
        }
    }

    func fail(_ error: any Error) {
        guard case .collecting = self.state else { return }
        self.state = .done
        self.promise.fail(error)
    }
}
