import NIOCore

/// The pipelining end of a connection: writes commands as they are sent, keeps one pending entry
/// per command in send order, and matches each reply with the oldest. Push messages are not
/// replies: they go to `onPush`.
///
/// Subscription commands (SUBSCRIBE and friends) get no ordinary reply in RESP3 when they
/// succeed, only confirmation pushes, one per channel. So each is sent followed by a `PING`, and
/// its entry completes with the PING's reply: the last confirmation push it saw, or its error.
/// (Without the PING, a SUBSCRIBE would take the reply of the next command, and UNSUBSCRIBE with
/// no channels gives no count to wait for.)
///
/// Confined to the channel's event loop, like every handler; `RedisConnection` reaches it there.
final class RedisConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = RESPToken
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// In a pipeline that has not connected yet.
        case idle
        /// Connected; the handshake's commands are out. `promise` succeeds when their replies
        /// are right, and the timer closes the connection if they take too long.
        case handshaking(promise: EventLoopPromise<Void>, timer: Scheduled<Void>?, timeout: TimeAmount)
        /// Usable.
        case ready
        /// Closed or closing: every pending and later command fails with the error.
        case closed(RedisConnectionError)
    }

    /// Where a reply goes.
    private enum Target {
        case single(EventLoopPromise<RESPToken>)
        case batch(RedisBatchReplies)
    }

    /// A subscription command's progress towards its sentinel PING's reply.
    private struct Subscription {
        let kind: RedisSubscriptionKind
        /// The last push confirming the command. Once one came, the next ordinary reply is the
        /// PING's.
        var confirmation: RESPToken?
        /// The command's error reply (then no confirmation comes, and the PING's reply follows).
        var error: RESPToken?
    }

    private struct Pending {
        var target: Target
        var subscription: Subscription?
    }

    /// `PING` as a RESP array: the sentinel after a subscription command.
    private static let sentinel: StaticString = "*1\r\n$4\r\nPING\r\n"

    private var state = State.idle
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var context: ChannelHandlerContext?

    /// Receives every push message (pub/sub messages, subscription confirmations, client-side
    /// caching invalidations), in arrival order. Called on the event loop.
    var onPush: ((RESPToken) -> Void)?

    /// Commands sent whose replies have not all come.
    var pendingCount: Int { self.pending.count }

    /// Handshaking or ready.
    var isOpen: Bool {
        switch self.state {
        case .handshaking, .ready: return true
        case .idle, .closed: return false
        }
    }

    // MARK: - Handshake

    /// Sends the handshake's commands and completes `promise` when their replies come: with
    /// success, or with what went wrong after closing the connection. The connection is closed
    /// as well if the replies take longer than `timeout`.
    func startHandshake(_ handshake: RedisHandshake, timeout: TimeAmount, promise: EventLoopPromise<Void>) {
        guard let context, case .idle = self.state else {
            promise.fail(RedisConnectionError.closed)
            return
        }
        // Both callbacks run on this loop; `close` cancels the timer.
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.handshakeTimedOut()
        }
        self.state = .handshaking(promise: promise, timer: timer, timeout: timeout)
        let replies = context.eventLoop.makePromise(of: [RESPToken].self)
        replies.futureResult.whenSuccess { replies in
            bound.value.handshakeReplied(replies)
        }
        // A failure of `replies` means the connection closed; `close` has failed `promise`.
        self.send(handshake.commands, promise: replies)
    }

    private func handshakeReplied(_ replies: [RESPToken]) {
        guard case .handshaking(let promise, let timer, _) = self.state else { return }
        timer?.cancel()
        if let error = RedisHandshake.check(replies) {
            self.close(error)
        } else {
            self.state = .ready
            promise.succeed()
        }
    }

    private func handshakeTimedOut() {
        guard case .handshaking(_, _, let timeout) = self.state else { return }
        self.close(ChannelError.connectTimeout(timeout))
    }

    // MARK: - Commands

    func send(_ command: RESPCommand, promise: EventLoopPromise<RESPToken>) {
        self.write([command], target: .single(promise))
    }

    /// The replies come back in one array, errors included as tokens.
    func send(_ commands: [RESPCommand], promise: EventLoopPromise<[RESPToken]>) {
        guard !commands.isEmpty else {
            promise.succeed([])
            return
        }
        self.write(commands, target: .batch(RedisBatchReplies(expected: commands.count, promise: promise)))
    }

    /// Queues an entry per command and writes them all in one buffer, one write and one flush.
    private func write(_ commands: [RESPCommand], target: Target) {
        guard let context, self.isOpen else {
            Self.fail(target, RedisConnectionError.closed)
            return
        }
        var length = 0
        for command in commands {
            length += command.encodedLength
            if command.subscriptionKind != nil { length += Self.sentinel.utf8CodeUnitCount }
        }
        var buffer = context.channel.allocator.buffer(capacity: length)
        for command in commands {
            command.write(into: &buffer)
            let kind = command.subscriptionKind
            if kind != nil {
                buffer.writeStaticString(Self.sentinel)
            }
            self.pending.append(Pending(target: target, subscription: kind.map { Subscription(kind: $0) }))
        }
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
    }

    // MARK: - Replies

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let token = self.unwrapInboundIn(data)
        guard self.isOpen else { return }
        if token.isPush {
            self.received(push: token)
            return
        }
        guard let head = self.pending.first else {
            self.close(RedisConnectionError.unexpectedReply)
            return
        }
        if var subscription = head.subscription {
            if subscription.confirmation == nil, subscription.error == nil {
                // Not confirmed, so this is the command's own reply: an error (success would
                // have been a push). Its PING's reply is still to come.
                subscription.error = token
                self.pending[self.pending.startIndex].subscription = subscription
                return
            }
            self.pending.removeFirst()
            Self.deliver(subscription.error ?? subscription.confirmation ?? token, to: head.target)
            return
        }
        // Dequeued before delivering: completing the promise may run code that sends or closes.
        self.pending.removeFirst()
        Self.deliver(token, to: head.target)
    }

    private func received(push: RESPToken) {
        if let head = self.pending.first, let subscription = head.subscription, subscription.error == nil,
           subscription.kind.confirms(push) {
            self.pending[self.pending.startIndex].subscription?.confirmation = push
        }
        self.onPush?(push)
    }

    private static func deliver(_ token: RESPToken, to target: Target) {
        switch target {
        case .single(let promise):
            if let message = token.errorMessage {
                promise.fail(RedisServerError(message: message))
            } else {
                promise.succeed(token)
            }
        case .batch(let replies):
            replies.append(token)
        }
    }

    private static func fail(_ target: Target, _ error: any Error) {
        switch target {
        case .single(let promise): promise.fail(error)
        case .batch(let replies): replies.fail(error)
        }
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.close(RedisConnectionError.closed)
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.close(RedisConnectionError.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Every error ends the connection: after a parsing error the stream is out of step, and
        // the I/O and TLS errors that get here leave nothing to continue.
        self.close(error)
    }

    /// Closes once: fails the handshake (with `error` itself, so that a TLS or timeout error
    /// reaches `connect`'s caller) and every pending command (with a `RedisConnectionError`),
    /// then closes the channel.
    private func close(_ error: any Error) {
        let cause: RedisConnectionError
        switch error {
        case let error as RedisConnectionError: cause = error
        case let error as RESPParsingError: cause = .protocolError(error)
        default: cause = .closed
        }
        let previous = self.state
        if case .closed = previous { return }
        self.state = .closed(cause)
        if case .handshaking(let promise, let timer, _) = previous {
            timer?.cancel()
            promise.fail(error is RESPParsingError ? cause : error)
        }
        // Taken out first: failing a promise may run code that sends (and fails at once).
        let failed = self.pending
        self.pending.removeAll()
        for entry in failed {
            Self.fail(entry.target, cause)
        }
        self.context?.close(promise: nil)
    }
}
