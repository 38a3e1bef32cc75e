import COpenSSL
import NIOCore
import NIOTLS

/// TLS on a NIO channel, over a `ByteBuffer` BIO. Inbound: ciphertext in, plaintext out.
/// Outbound: plaintext in, ciphertext out. Put it first in the pipeline (next to the socket).
///
/// - After the handshake it fires NIOTLS's `TLSUserEvent.handshakeCompleted(negotiatedProtocol:)`,
///   so NIOTLS's `ApplicationProtocolNegotiationHandler` can pick HTTP/1.1 or HTTP/2.
/// - `close()` sends close_notify and closes the channel when the peer's close_notify arrives or
///   after `shutdownTimeout`, whichever is first, so its future completes only then (on an
///   `EmbeddedEventLoop`: advance time, or `finish()` waits forever). The peer's close_notify is
///   answered with ours, then the channel closes, and `TLSUserEvent.shutdownCompleted` is fired.
/// - A peer that goes away without close_notify (browsers do it all the time) is counted in
///   `TLSMetrics.uncleanEOFs`; no error is fired.
/// - A failed handshake (or one slower than `handshakeTimeout`) and a TLS error after it are
///   counted, fired once as a `TLSError` through `errorCaught`, and close the channel. The handler
///   logs nothing.
///
/// Writes are buffered until `flush`; a flush encrypts everything pending (coalescing small
/// writes into records of up to 16 KiB) and writes the ciphertext to the channel once. Writes
/// made during the handshake go out when it completes. Only `close(mode: .all)` and `.input` are
/// supported; `.output` (TLS half-close) fails with `ChannelError.operationUnsupported`.
///
/// Every OpenSSL call happens on the channel's event loop.
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum Role {
        case server(TLSServerContext)
        case client(TLSClientContext, serverName: String?)
    }

    private enum State {
        /// The channel is not active yet: no SSL object.
        case idle
        case handshaking
        case active
        /// We sent close_notify (someone called close); waiting for the peer's or the timeout.
        case closing
        /// The channel is closed or closing below us; the SSL object is not used again.
        case closed
    }

    private struct PendingWrite {
        var data: ByteBuffer
        var promise: EventLoopPromise<Void>?
    }

    /// Small writes (SSE events) are gathered into one TLS record up to this size: one AEAD
    /// operation and 22 bytes of record overhead instead of one per event.
    private static let coalescingLimit = 16 * 1024
    private static let maximumReadBufferSize = 64 * 1024
    private static let minimumReadBufferSize = 256

    // Every connection has one handler for its lifetime, so the stored properties are ordered
    // to leave no padding: the 8-byte ones first, then the 9-byte optional, then the 1-byte ones
    // (Swift lays them out in declaration order).
    private let role: Role
    private let metrics: TLSMetrics?
    private let shutdownTimeout: TimeAmount
    private var connection: SSLConnection?
    /// Plaintext written but not yet encrypted; the first `flushedWriteCount` were flushed.
    private var pendingWrites: [PendingWrite] = []
    private var flushedWriteCount = 0
    /// The promise of the `close` that started our shutdown.
    private var closePromise: EventLoopPromise<Void>?
    /// Where the handshake's deadline is kept; nil: a scheduled task of its own.
    private let handshakeTimers: TLSHandshakeTimers?
    /// The handshake timer while handshaking, the shutdown timer while closing.
    private var timer = Timer.none
    private let handshakeTimeout: TimeAmount?
    private var state = State.idle
    private var deliveredReadSinceReadComplete = false
    /// Whether the peer sent anything: tells an abandoned handshake from a TCP probe.
    private var receivedBytes = false
    private var handshakeCompleted = false

    private enum Timer {
        case none
        case scheduled(Scheduled<Void>)
        /// An entry in `handshakeTimers`; the closure disarms it.
        case armed(disarm: () -> Void)
    }

    private init(
        role: Role, metrics: TLSMetrics?, handshakeTimeout: TimeAmount?, handshakeTimers: TLSHandshakeTimers?,
        shutdownTimeout: TimeAmount
    ) {
        self.role = role
        self.metrics = metrics
        self.handshakeTimeout = handshakeTimeout
        self.handshakeTimers = handshakeTimers
        self.shutdownTimeout = shutdownTimeout
    }

    /// A server handler. The certificates are those of `context` when the handshake starts.
    /// - Parameters:
    ///   - handshakeTimeout: a peer that has not completed the handshake after this long is
    ///     dropped (counted as a failed handshake). nil: no limit.
    ///   - handshakeTimers: keeps that deadline with many others on one timer (nil: a
    ///     scheduled task for this handshake).
    ///   - shutdownTimeout: how long `close()` waits for the peer's close_notify.
    public static func server(
        context: TLSServerContext,
        metrics: TLSMetrics? = nil,
        handshakeTimeout: TimeAmount? = .seconds(10),
        handshakeTimers: TLSHandshakeTimers? = nil,
        shutdownTimeout: TimeAmount = .seconds(3)
    ) -> OpenSSLHandler {
        OpenSSLHandler(
            role: .server(context), metrics: metrics,
            handshakeTimeout: handshakeTimeout, handshakeTimers: handshakeTimers, shutdownTimeout: shutdownTimeout)
    }

    /// A client handler. `serverName` is sent as SNI (unless it is an IP address) and, when the
    /// context verifies, the certificate must name it. With `serverName: nil` only the chain is
    /// verified.
    public static func client(
        context: TLSClientContext,
        serverName: String?,
        metrics: TLSMetrics? = nil,
        handshakeTimeout: TimeAmount? = .seconds(10),
        shutdownTimeout: TimeAmount = .seconds(3)
    ) -> OpenSSLHandler {
        OpenSSLHandler(
            role: .client(context, serverName: serverName), metrics: metrics,
            handshakeTimeout: handshakeTimeout, handshakeTimers: nil, shutdownTimeout: shutdownTimeout)
    }

    /// The ALPN protocol chosen in the handshake; nil before it completes or when none was.
    /// Call on the channel's event loop.
    public var negotiatedProtocol: String? {
        guard handshakeCompleted else { return nil }
        return connection?.negotiatedProtocol
    }

    /// Details of the established connection (protocol version, cipher, ALPN, SNI, certificates),
    /// for logs; nil before the handshake completes. Computed on each call, so that idle
    /// connections do not carry it. Call on the channel's event loop.
    public var connectionInfo: TLSConnectionInfo? {
        guard handshakeCompleted, let connection else { return nil }
        return TLSConnectionInfo(ssl: connection.ssl)
    }

    /// What the handler holds between reads and writes, beyond the `SSL` itself: ciphertext
    /// buffers (either direction) and queued plaintext writes. An established connection that is
    /// not in the middle of a read or a write holds none of them. For tests; call on the channel's
    /// event loop.
    struct HeldBuffers: Equatable {
        var ciphertext: Bool
        var queuedWrites: Int
        /// The capacity of the queue's storage: an empty queue keeps none.
        var queuedWriteCapacity: Int
    }

    var heldBuffers: HeldBuffers {
        HeldBuffers(
            ciphertext: connection?.transport.holdsBuffers ?? false,
            queuedWrites: pendingWrites.count,
            queuedWriteCapacity: pendingWrites.capacity)
    }

    /// The connection's `SSL` and its buffers; nil before the channel is active. For tests.
    var sslConnection: SSLConnection? { connection }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            startHandshake(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
        state = .closed
        failPendingWrites(ChannelError.ioOnClosedChannel)
        if let closePromise {
            self.closePromise = nil
            closePromise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func channelActive(context: ChannelHandlerContext) {
        // Forward first: if the handshake fails at once, later handlers should see active before
        // inactive.
        context.fireChannelActive()
        startHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        let previous = state
        state = .closed
        switch previous {
        case .idle, .closed:
            break
        case .handshaking:
            if receivedBytes { metrics?.record(.handshakeAbandoned) }
        case .active:
            // No close_notify and we were not closing: a truncation as far as TLS can tell. Not an
            // error: the protocol above knows whether its message was complete.
            metrics?.record(.uncleanEOF)
        case .closing:
            // We closed in order; the peer went away instead of answering. That is fine.
            metrics?.record(.cleanClose)
            if let closePromise {
                self.closePromise = nil
                closePromise.succeed()
            }
        }
        failPendingWrites(ChannelError.ioOnClosedChannel)
        connection?.discardInbound()
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let ciphertext = unwrapInboundIn(data)
        if case .idle = state {
            startHandshake(context: context)
        }
        guard let connection else { return }
        if ciphertext.readableBytes > 0 { receivedBytes = true }
        switch state {
        case .handshaking:
            connection.receive(ciphertext)
            doHandshakeStep(context: context)
        case .active:
            connection.receive(ciphertext)
            decodeAvailable(context: context)
        case .closing:
            connection.receive(ciphertext)
            drainWhileClosing(context: context)
        case .idle, .closed:
            // After a failure or close nothing reads these bytes; drop them silently.
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if deliveredReadSinceReadComplete {
            deliveredReadSinceReadComplete = false
            context.fireChannelReadComplete()
        } else if !autoRead(context) {
            // The handler above asked for data and got none (handshake bytes or a partial
            // record): ask again, or it would wait forever.
            context.read()
        }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch state {
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .idle, .handshaking, .active:
            pendingWrites.append(PendingWrite(data: unwrapOutboundIn(data), promise: promise))
        }
    }

    public func flush(context: ChannelHandlerContext) {
        flushedWriteCount = pendingWrites.count
        encryptFlushedWrites(context: context)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .input:
            context.close(mode: .input, promise: promise)
            return
        case .output:
            promise?.fail(ChannelError.operationUnsupported)
            return
        case .all:
            break
        }

        switch state {
        case .idle, .handshaking:
            // Nothing to protect yet: no close_notify, just close.
            cancelTimer()
            state = .closed
            failPendingWrites(ChannelError.ioOnClosedChannel)
            context.close(promise: promise)
        case .active:
            startShutdown(context: context, promise: promise)
        case .closing:
            if let promise {
                if let closePromise {
                    closePromise.futureResult.cascade(to: promise)
                } else {
                    closePromise = promise
                }
            }
        case .closed:
            context.close(mode: mode, promise: promise)
        }
    }

    // MARK: - Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        do {
            switch role {
            case .server(let serverContext):
                connection = try SSLConnection.server(generation: serverContext.generation)
            case .client(let clientContext, let serverName):
                connection = try SSLConnection.client(context: clientContext, serverName: serverName)
            }
        } catch {
            state = .closed
            metrics?.record(.handshakeFailed)
            context.fireErrorCaught(error)
            context.close(promise: nil)
            return
        }
        state = .handshaking
        if let handshakeTimeout {
            if let handshakeTimers {
                // The entry holds the handler until it fires or is disarmed (at the latest when
                // the channel closes or the handler is removed).
                timer = .armed(disarm: handshakeTimers.arm(context.eventLoop.now + handshakeTimeout) {
                    self.handshakeTimedOut(context: context)
                })
            } else {
                timer = .scheduled(context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) {
                    self.handshakeTimedOut(context: context)
                })
            }
        }
        if !autoRead(context) {
            context.read()
        }
        doHandshakeStep(context: context)
    }

    private func doHandshakeStep(context: ChannelHandlerContext) {
        guard case .handshaking = state, let connection else { return }
        switch connection.doHandshake() {
        case .incomplete:
            flushCiphertext(context: context)
        case .complete:
            cancelTimer()
            state = .active
            handshakeCompleted = true
            metrics?.record(.handshakeCompleted)
            // The server's session tickets, the client's Finished.
            flushCiphertext(context: context)
            context.fireUserInboundEventTriggered(
                TLSUserEvent.handshakeCompleted(negotiatedProtocol: connection.negotiatedProtocol))
            // Records that arrived with the peer's last handshake flight (a request sent right
            // behind the client's Finished), then the writes made during the handshake.
            decodeAvailable(context: context)
            encryptFlushedWrites(context: context)
        case .failed(let error):
            fail(context: context, error: error, event: .handshakeFailed)
        }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext) {
        timer = .none
        guard case .handshaking = state else { return }
        fail(context: context, error: .handshakeTimedOut, event: .handshakeFailed)
    }

    // MARK: - Application data

    /// Decrypts everything available and passes it on, in buffers sized by what arrived.
    private func decodeAvailable(context: ChannelHandlerContext) {
        guard case .active = state, let connection else { return }
        var plaintext: ByteBuffer? = nil
        readLoop: while case .active = state {
            if plaintext == nil {
                plaintext = context.channel.allocator.buffer(capacity: readBufferSize(hint: connection.pendingBytesHint))
            }
            switch connection.read(into: &plaintext!) {
            case .read:
                if plaintext!.writableBytes == 0 {
                    deliver(context: context, plaintext!)
                    plaintext = nil
                }
            case .wantRead:
                break readLoop
            case .closeNotify:
                if let buffer = plaintext.take(), buffer.readableBytes > 0 { deliver(context: context, buffer) }
                peerSentCloseNotify(context: context)
                break readLoop
            case .failed(let error):
                // What was decrypted before the error is authentic: pass it on first.
                if let buffer = plaintext.take(), buffer.readableBytes > 0 { deliver(context: context, buffer) }
                fail(context: context, error: error, event: .protocolError)
                break readLoop
            }
        }
        if case .active = state, let buffer = plaintext, buffer.readableBytes > 0 {
            deliver(context: context, buffer)
        }
        if case .active = state {
            // Reading can produce records to send (a TLS 1.3 KeyUpdate answer, an alert).
            flushCiphertext(context: context)
        }
    }

    private func readBufferSize(hint: Int) -> Int {
        // Plaintext is never longer than the ciphertext it came from, so the hint bounds what
        // this round can produce; clamped so a trickle does not get 64 KiB buffers.
        min(max(hint, Self.minimumReadBufferSize), Self.maximumReadBufferSize)
    }

    private func deliver(context: ChannelHandlerContext, _ plaintext: ByteBuffer) {
        deliveredReadSinceReadComplete = true
        context.fireChannelRead(wrapInboundOut(plaintext))
    }

    /// Encrypts the flushed writes and writes the ciphertext once. Writes made before the
    /// handshake completes wait for it.
    private func encryptFlushedWrites(context: ChannelHandlerContext) {
        guard case .active = state, let connection, flushedWriteCount > 0 else { return }

        // Take the writes out before anything can call back into us (a promise, the pipeline).
        var writes: [PendingWrite] = []
        if flushedWriteCount == pendingWrites.count {
            swap(&writes, &pendingWrites)
        } else {
            writes = Array(pendingWrites[..<flushedWriteCount])
            pendingWrites.removeFirst(flushedWriteCount)
        }
        flushedWriteCount = 0

        var failure: TLSError? = nil
        func encrypt(_ buffer: inout ByteBuffer) {
            guard failure == nil else { return }
            switch connection.write(&buffer) {
            case .complete:
                break
            case .incomplete:
                // Our BIO never pushes back and renegotiation is off: OpenSSL should never ask.
                failure = .protocolError(openSSLErrors: ["SSL_write wants to wait for the peer"])
            case .failed(let error):
                failure = error
            }
        }

        var promises: [EventLoopPromise<Void>] = []
        var batch: ByteBuffer? = nil
        for var write in writes {
            let size = write.data.readableBytes
            if size >= Self.coalescingLimit {
                if var pending = batch.take() { encrypt(&pending) }
                encrypt(&write.data)
            } else if size > 0 {
                if var pending = batch.take() {
                    if pending.readableBytes + size > Self.coalescingLimit {
                        encrypt(&pending)
                        batch = write.data
                    } else {
                        pending.writeImmutableBuffer(write.data)
                        batch = pending
                    }
                } else {
                    batch = write.data
                }
            }
            if let promise = write.promise { promises.append(promise) }
        }
        if var pending = batch.take() { encrypt(&pending) }

        if let failure {
            for promise in promises { promise.fail(failure) }
            fail(context: context, error: failure, event: .protocolError)
            return
        }
        flushCiphertext(context: context, promises: promises)
    }

    /// Writes and flushes whatever OpenSSL produced, completing `promises` when it is written.
    private func flushCiphertext(context: ChannelHandlerContext, promises: [EventLoopPromise<Void>] = []) {
        let promise: EventLoopPromise<Void>?
        switch promises.count {
        case 0:
            promise = nil
        case 1:
            promise = promises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            combined.futureResult.whenComplete { result in
                for promise in promises { promise.completeWith(result) }
            }
            promise = combined
        }
        if let ciphertext = connection?.takeCiphertext() {
            context.writeAndFlush(wrapOutboundOut(ciphertext), promise: promise)
        } else if let promise {
            // Empty plaintext writes: complete them in order with everything else written.
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
        }
    }

    // MARK: - Shutdown

    private func startShutdown(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let connection else {
            state = .closed
            context.close(promise: promise)
            return
        }
        state = .closing
        closePromise = promise
        // Flushed writes are already encrypted; unflushed ones are dropped, as NIO does on close.
        failPendingWrites(ChannelError.ioOnClosedChannel)
        switch connection.shutdown() {
        case .sent:
            flushCiphertext(context: context)
            timer = .scheduled(context.eventLoop.assumeIsolated().scheduleTask(in: shutdownTimeout) {
                self.shutdownTimedOut(context: context)
            })
        case .complete:
            finishShutdown(context: context, peerNotified: true)
        case .failed:
            finishShutdown(context: context, peerNotified: false)
        }
    }

    /// While closing: read (and drop) whatever the peer still sends, until its close_notify.
    private func drainWhileClosing(context: ChannelHandlerContext) {
        guard let connection else { return }
        while case .closing = state {
            switch connection.discardRead() {
            case .read:
                continue
            case .wantRead:
                flushCiphertext(context: context)
                return
            case .closeNotify:
                _ = connection.shutdown()
                finishShutdown(context: context, peerNotified: true)
            case .failed:
                finishShutdown(context: context, peerNotified: false)
            }
        }
    }

    private func shutdownTimedOut(context: ChannelHandlerContext) {
        timer = .none
        guard case .closing = state else { return }
        finishShutdown(context: context, peerNotified: false)
    }

    /// Ends a shutdown we started: the close_notify exchange is over, or we stop waiting.
    private func finishShutdown(context: ChannelHandlerContext, peerNotified: Bool) {
        cancelTimer()
        state = .closed
        metrics?.record(.cleanClose)
        flushCiphertext(context: context)
        if peerNotified {
            context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted)
        }
        let promise = closePromise
        closePromise = nil
        context.close(promise: promise)
    }

    /// The peer's close_notify while we were not closing: answer it and close.
    private func peerSentCloseNotify(context: ChannelHandlerContext) {
        cancelTimer()
        state = .closed
        metrics?.record(.cleanClose)
        _ = connection?.shutdown()
        flushCiphertext(context: context)
        failPendingWrites(ChannelError.ioOnClosedChannel)
        context.fireUserInboundEventTriggered(TLSUserEvent.shutdownCompleted)
        context.close(promise: nil)
    }

    /// A TLS failure: send OpenSSL's alert, count it, report it once, close.
    private func fail(context: ChannelHandlerContext, error: TLSError, event: TLSMetrics.Event) {
        cancelTimer()
        state = .closed
        metrics?.record(event)
        flushCiphertext(context: context)
        failPendingWrites(error)
        connection?.discardInbound()
        context.fireErrorCaught(error)
        let promise = closePromise
        closePromise = nil
        context.close(promise: promise)
    }

    // MARK: - Helpers

    private func failPendingWrites(_ error: Error) {
        guard !pendingWrites.isEmpty else { return }
        var writes: [PendingWrite] = []
        swap(&writes, &pendingWrites)
        flushedWriteCount = 0
        for write in writes { write.promise?.fail(error) }
    }

    private func cancelTimer() {
        switch timer {
        case .none:
            return
        case .scheduled(let scheduled):
            scheduled.cancel()
        case .armed(let disarm):
            disarm()
        }
        timer = .none
    }

    private func autoRead(_ context: ChannelHandlerContext) -> Bool {
        (try? context.channel.syncOptions?.getOption(ChannelOptions.autoRead)) ?? true
    }
}

@available(*, unavailable)
extension OpenSSLHandler: Sendable {}

extension Optional {
    /// Returns the value and leaves nil behind.
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
