import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Answers one request received by a ``ScriptedOrigin``. Callable from any thread.
///
/// Calls take effect on the connection's event loop in the order they were made (each one is
/// queued there), so `send("a"); closeAbruptly()` delivers `a` before the connection closes.
/// Calls after the response has ended or the connection has closed do nothing.
///
/// The body is chunked unless the head carries `Content-Length`. ``send(_:)`` and ``end()``
/// send the default head first if ``sendHead(status:headers:)`` was not called.
public final class OriginResponder: Sendable {
    private struct State {
        var headSent = false
        var ended = false
    }

    /// The request this responder answers.
    public let request: ScriptedOrigin.Request
    private let channel: Channel
    private let state = NIOLockedValueBox(State())
    private let signal: ChangeSignal

    init(request: ScriptedOrigin.Request, channel: Channel, signal: ChangeSignal) {
        self.request = request
        self.channel = channel
        self.signal = signal
    }

    /// Sends the response head. Without `Content-Length` in `headers` the body is chunked.
    public func sendHead(status: Int = 200, headers: [(String, String)] = [("Content-Type", "text/event-stream")]) {
        self.onLoop {
            self.writeHeadIfNeeded(status: status, headers: headers)
        }
    }

    /// Sends `text` as the next body chunk, e.g. `"id: 1\ndata: a\n\n"`.
    public func send(_ text: String) {
        self.onLoop {
            self.writeHeadIfNeeded()
            guard !self.state.withLockedValue({ $0.ended }) else { return }
            let buffer = self.channel.allocator.buffer(string: text)
            self.channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
        }
    }

    /// Ends the response (the terminating chunk). The connection stays open for the next request
    /// unless the request asked for `Connection: close`.
    public func end() {
        self.onLoop {
            self.writeHeadIfNeeded()
            let wasEnded = self.state.withLockedValue { state -> Bool in
                defer { state.ended = true }
                return state.ended
            }
            guard !wasEnded else { return }
            let written = self.channel.writeAndFlush(HTTPServerResponsePart.end(nil))
            if !self.request.isKeepAlive {
                let channel = self.channel
                written.whenComplete { _ in channel.close(promise: nil) }
            }
            self.signal.notify()
        }
    }

    /// Closes the TCP connection (FIN) without ending the body: to the peer, a chunked body cut
    /// short or a response that stops in the middle.
    public func closeAbruptly() {
        self.onLoop {
            self.channel.close(promise: nil)
        }
    }

    /// Closes the connection with `SO_LINGER` 0, so the peer sees a TCP reset (`ECONNRESET`).
    public func reset() {
        self.onLoop {
            let channel = self.channel
            guard let provider = channel as? SocketOptionProvider else {
                channel.close(promise: nil)
                return
            }
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    /// Whether the connection this request came on is still open.
    public var isConnected: Bool {
        self.channel.isActive
    }

    /// Whether the connection accepts more data without queueing past its high-water mark; false
    /// while the peer is not reading fast enough (e.g. a gateway applying backpressure).
    public var isWritable: Bool {
        self.channel.isWritable
    }

    /// Whether the head has been sent.
    public var headSent: Bool {
        self.state.withLockedValue { $0.headSent }
    }

    /// Whether the response has been ended with ``end()``.
    public var hasEnded: Bool {
        self.state.withLockedValue { $0.ended }
    }

    /// Head sent, not ended, connection open: a response in progress, e.g. an SSE stream.
    public var isStreaming: Bool {
        let (headSent, ended) = self.state.withLockedValue { ($0.headSent, $0.ended) }
        return headSent && !ended && self.channel.isActive
    }

    /// Waits until the connection is closed, typically by the peer (e.g. the gateway dropping
    /// its upstream connection); also returns if the origin closed it.
    public func waitUntilClosedByPeer(timeout: TimeAmount = .seconds(5)) async throws {
        try await self.signal.wait(
            timeout: timeout,
            until: { !self.channel.isActive },
            failure: { reason in
                TestWaitError("OriginResponder for \(self.request) waiting for the connection to close: \(reason)")
            }
        )
    }

    // MARK: On the event loop

    /// Queues `body` on the connection's loop, always (even when called on it), so that calls
    /// from the test and from the request handler stay in call order.
    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        self.channel.eventLoop.execute(body)
    }

    private func writeHeadIfNeeded(
        status: Int = 200,
        headers: [(String, String)] = [("Content-Type", "text/event-stream")]
    ) {
        let alreadySent = self.state.withLockedValue { state -> Bool in
            defer { state.headSent = true }
            return state.headSent || state.ended
        }
        guard !alreadySent else { return }
        var responseHeaders = HTTPHeaders(headers)
        if !self.request.isKeepAlive, !responseHeaders.contains(name: "Connection") {
            responseHeaders.add(name: "Connection", value: "close")
        }
        let head = HTTPResponseHead(
            version: self.request.version,
            status: HTTPResponseStatus(statusCode: status),
            headers: responseHeaders
        )
        self.channel.writeAndFlush(HTTPServerResponsePart.head(head), promise: nil)
        self.signal.notify()
    }
}
