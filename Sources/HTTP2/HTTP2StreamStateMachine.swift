import NIOHTTP1

/// The state of one request stream on the server side, without any I/O: the response the
/// application is producing and how far nghttp2 has taken it, the queued bytes and the watermarks
/// that make the stream (un)writable, the request body's flow control, and what the application
/// has been told. `HTTP2ServerStream` (the application's calls) and `HTTP2ServerHandler` plus the
/// nghttp2 callbacks (the connection's side) run it and carry out the actions it returns.
///
/// Every call is valid in every state: a call that makes no sense in the current state returns
/// the action that does nothing, so that an application never has to race the client.
struct HTTP2StreamStateMachine {
    /// Bounds on the bytes queued and not yet taken by nghttp2. Above `high` the stream turns
    /// unwritable; it turns writable again only at or below `low`, so that an application
    /// writing as fast as the client reads is told to stop and go on once per `high - low`
    /// bytes drained, not once per DATA frame.
    struct Watermarks: Hashable, Sendable {
        let low: Int
        let high: Int

        init(low: Int, high: Int) {
            precondition(0 <= low && low <= high, "watermarks need 0 <= low <= high")
            self.low = low
            self.high = high
        }

        /// `high` is the one bound the configuration has (`streamBufferLimit`); `low` is half of
        /// it, as Envoy derives its low watermark and as NIO's channel defaults are (32/64 KiB):
        /// half a buffer is enough to keep the client's window busy while the application is
        /// woken up, and few enough wake-ups that the writer works in bulk.
        init(streamBufferLimit: Int) {
            let high = max(streamBufferLimit, 0)
            self.init(low: high / 2, high: high)
        }
    }

    enum Writability: Hashable {
        case writable
        case unwritable
    }

    /// The data provider that feeds a submitted response's body to nghttp2.
    enum DataProvider: Hashable {
        /// nghttp2 asks it for bytes when the client's window allows.
        case ready
        /// It answered NGHTTP2_ERR_DEFERRED (nothing flushed): nghttp2 asks again only after
        /// `nghttp2_session_resume_data`.
        case deferred
    }

    /// The response head.
    enum Head {
        /// `sendHead` has not been called.
        case none
        /// `sendHead` was called; the head waits to be submitted to nghttp2.
        case pending(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool)
        /// Submitted to nghttp2 (with a data provider unless it had `endStream`).
        case submitted(DataProvider)
    }

    /// The response body, from the application's side.
    enum Body: Hashable {
        /// Writes are taken.
        case writing
        /// `end()` (or a head with `endStream`): END_STREAM goes out after the queued bytes.
        case ended
    }

    enum State {
        /// The application is answering.
        case open(Head, Body)
        /// `reset(errorCode:)` was called; the RST_STREAM waits to be submitted.
        case resetPending(errorCode: UInt32)
        /// The RST_STREAM is submitted; nghttp2 closes the stream once it goes out.
        case resetSubmitted
        /// nghttp2 closed the stream, or the connection went away. Final.
        case closed
    }

    /// How far the application has been told about the stream (events are delivered after
    /// nghttp2 returns, so a stream can close before the application has seen it).
    enum Delivery: Hashable {
        /// `onRequest` has not been called (yet).
        case notDelivered
        /// `onRequest` was called: the delegate hears the stream's events.
        case delivered
        /// `http2StreamDidClose` was called: the delegate hears nothing more.
        case closeDelivered
    }

    /// The request body's bytes and the client's flow-control window.
    enum RequestBody: Hashable {
        /// Bytes are given back to the window (WINDOW_UPDATE) as soon as they are delivered.
        case flowing
        /// `pauseBody()`: delivered bytes are held and given back on `resumeBody()` or at the
        /// close, so the window bounds what the client sends ahead of the body's destination.
        case paused(heldBytes: Int)
    }

    // MARK: Actions

    /// What to do after `sendHead`, `flush`, `end` and `reset`.
    enum OutboundAction: Hashable {
        /// Nothing: the call was ignored or changed nothing that nghttp2 needs.
        case none
        /// The stream has something to submit or to send: have the handler look at it and pump.
        case submit
        /// Drop the stream's queued bytes (a head with `endStream`, a reset), then as `submit`.
        case discardQueueAndSubmit
    }

    /// What to do with the bytes of a `write`.
    enum WriteAction: Hashable {
        /// Ignored (empty, after `end`, reset or close).
        case ignore
        /// Append them to the stream's queue.
        case enqueue
        /// Append them; the stream turned unwritable: tell the delegate (after the current call).
        case enqueueAndNotifyWritability
    }

    /// What to do after bytes left the queue.
    enum WritabilityAction: Hashable {
        case none
        /// The stream turned writable: tell the delegate (after the current call).
        case notifyWritability
    }

    /// Whether an event reaches the application.
    enum DeliveryAction: Hashable {
        case deliver
        case drop
    }

    /// Received request body bytes, once the delegate has seen them.
    enum WindowAction: Hashable {
        /// Hold them (the body is paused).
        case none
        /// Give this many bytes back to the client's window (`nghttp2_session_consume`).
        case release(Int)
    }

    /// What the close event does.
    enum CloseAction: Hashable {
        /// Give `release` held bytes back to the connection's window, then tell the delegate.
        case deliver(release: Int)
        /// Give `release` held bytes back; the application never saw the stream.
        case drop(release: Int)
    }

    /// What the handler submits to nghttp2 for this stream.
    enum Submission {
        case none
        case reset(errorCode: UInt32)
        case response(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool)
        /// `nghttp2_session_resume_data`: the deferred provider has bytes or the end.
        case resumeData
    }

    /// The data provider's answer.
    enum ReadAction: Hashable {
        /// The stream is gone (NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE).
        case streamClosed
        /// Nothing to send yet (NGHTTP2_ERR_DEFERRED).
        case deferred
        /// Send `count` queued bytes without a copy, with END_STREAM when `endStream`.
        case send(count: Int, endStream: Bool)
    }

    enum CloseCause: Hashable {
        /// nghttp2 closed the stream with this error code.
        case nghttp2(errorCode: UInt32)
        /// The connection closed (or the handler went away) while the stream was open.
        case connectionClosed
    }

    // MARK: State

    let watermarks: Watermarks
    private(set) var state: State = .open(.none, .writing)
    private(set) var delivery: Delivery = .notDelivered
    private(set) var requestBody: RequestBody = .flowing
    private(set) var writability: Writability = .writable
    /// `writability` as last told to the delegate.
    private(set) var reportedWritability: Writability = .writable
    /// Bytes written and not yet taken by nghttp2 (flushed or not).
    private(set) var bufferedBytes = 0
    /// How many of `bufferedBytes` were flushed: the data provider may offer them.
    private(set) var flushedBytes = 0
    /// The error code of the client's RST_STREAM, if it sent one: the close is then its reset.
    private(set) var clientResetCode: UInt32?

    init(watermarks: Watermarks) {
        self.watermarks = watermarks
    }

    var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    var isWritable: Bool { self.writability == .writable }

    // MARK: The application's calls

    mutating func sendHead(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool) -> OutboundAction {
        guard case .open(.none, let body) = self.state else { return .none }
        self.state = .open(.pending(status: status, headers: headers, endStream: endStream), endStream ? .ended : body)
        guard endStream else { return .submit }
        self.discardQueue()
        return .discardQueueAndSubmit
    }

    mutating func write(_ count: Int) -> WriteAction {
        guard count > 0, case .open(_, .writing) = self.state else { return .ignore }
        self.bufferedBytes += count
        return self.updateWritability() ? .enqueueAndNotifyWritability : .enqueue
    }

    mutating func flush() -> OutboundAction {
        guard case .open = self.state, self.flushedBytes != self.bufferedBytes else { return .none }
        self.flushedBytes = self.bufferedBytes
        return .submit
    }

    mutating func end() -> OutboundAction {
        guard case .open(let head, .writing) = self.state else { return .none }
        self.state = .open(head, .ended)
        self.flushedBytes = self.bufferedBytes
        return .submit
    }

    mutating func reset(errorCode: UInt32) -> OutboundAction {
        guard case .open = self.state else { return .none }
        self.state = .resetPending(errorCode: errorCode)
        self.discardQueue()
        return .discardQueueAndSubmit
    }

    mutating func pauseBody() {
        if case .flowing = self.requestBody {
            self.requestBody = .paused(heldBytes: 0)
        }
    }

    mutating func resumeBody() -> WindowAction {
        guard case .paused(let held) = self.requestBody else { return .none }
        // Once closed, the close event gives the held bytes back (the stream's window is gone).
        guard !self.isClosed else { return .none }
        self.requestBody = .flowing
        return held > 0 ? .release(held) : .none
    }

    // MARK: Events from nghttp2, delivered after it returns

    /// The request's HEADERS are complete and nghttp2 has returned.
    mutating func requestReceived() -> DeliveryAction {
        // A stream reset (or lost) before the application saw it is dropped quietly: a
        // rapid-reset client causes no work upstream.
        guard case .notDelivered = self.delivery, !self.isClosed else { return .drop }
        self.delivery = .delivered
        return .deliver
    }

    /// Whether the delegate hears body and end events now. They were recorded before any close,
    /// so they still reach an application that has not been told about the close yet.
    var deliversEvents: Bool { self.delivery == .delivered }

    /// `count` request body bytes have been delivered (or dropped): what becomes of their window.
    mutating func requestBodyReceived(_ count: Int) -> WindowAction {
        if case .paused(let held) = self.requestBody, !self.isClosed {
            self.requestBody = .paused(heldBytes: held + count)
            return .none
        }
        return .release(count)
    }

    /// The client sent RST_STREAM (nghttp2 closes the stream right after).
    mutating func resetReceived(errorCode: UInt32) {
        self.clientResetCode = errorCode
    }

    /// The stream closes. Nil when it already was closed.
    mutating func close(_ cause: CloseCause) -> HTTP2StreamCloseReason? {
        guard !self.isClosed else { return nil }
        self.state = .closed
        self.discardQueue()
        switch cause {
        case .connectionClosed:
            return .connectionClosed
        case .nghttp2(let errorCode):
            if let code = self.clientResetCode { return .reset(errorCode: code) }
            return errorCode == 0 ? .finished : .resetLocally(errorCode: errorCode)
        }
    }

    /// The close event is being delivered.
    mutating func closeReceived() -> CloseAction {
        var release = 0
        if case .paused(let held) = self.requestBody, held > 0 {
            release = held
            self.requestBody = .paused(heldBytes: 0)
        }
        guard case .delivered = self.delivery else { return .drop(release: release) }
        self.delivery = .closeDelivered
        return .deliver(release: release)
    }

    /// A writability event is being delivered: the delegate hears it only when the stream is
    /// open and its writability differs from what the delegate last heard.
    mutating func writabilityEventReceived() -> DeliveryAction {
        guard case .delivered = self.delivery, !self.isClosed, self.writability != self.reportedWritability else {
            return .drop
        }
        self.reportedWritability = self.writability
        return .deliver
    }

    // MARK: The handler and nghttp2's data provider

    /// What the handler submits next; at most one thing per call, and each only once.
    mutating func nextSubmission() -> Submission {
        switch self.state {
        case .resetPending(let errorCode):
            self.state = .resetSubmitted
            return .reset(errorCode: errorCode)
        case .open(.pending(let status, let headers, let endStream), let body):
            self.state = .open(.submitted(.ready), body)
            return .response(status: status, headers: headers, endStream: endStream)
        case .open(.submitted(.deferred), let body) where self.flushedBytes > 0 || body == .ended:
            self.state = .open(.submitted(.ready), body)
            return .resumeData
        case .open, .resetSubmitted, .closed:
            return .none
        }
    }

    /// nghttp2 asks for up to `maxLength` bytes for the next DATA frame.
    mutating func readData(maxLength: Int) -> ReadAction {
        switch self.state {
        case .closed:
            return .streamClosed
        case .resetPending, .resetSubmitted:
            // Nothing more but the RST_STREAM (which nghttp2 sends before any DATA).
            return .deferred
        case .open(let head, let body):
            let count = min(maxLength, self.flushedBytes)
            if count == 0 && body == .writing {
                if case .submitted = head {
                    self.state = .open(.submitted(.deferred), body)
                }
                return .deferred
            }
            return .send(count: count, endStream: body == .ended && count == self.flushedBytes)
        }
    }

    /// nghttp2 took `count` queued bytes (they were flushed) into a DATA frame.
    mutating func sent(_ count: Int) -> WritabilityAction {
        let taken = min(count, self.bufferedBytes)
        self.bufferedBytes -= taken
        self.flushedBytes = max(self.flushedBytes - taken, 0)
        return self.updateWritability() ? .notifyWritability : .none
    }

    // MARK: Private

    /// Moves between writable and unwritable across the watermarks. True when it moved.
    private mutating func updateWritability() -> Bool {
        switch self.writability {
        case .writable where self.bufferedBytes > self.watermarks.high:
            self.writability = .unwritable
            return true
        case .unwritable where self.bufferedBytes <= self.watermarks.low:
            self.writability = .writable
            return true
        case .writable, .unwritable:
            return false
        }
    }

    /// Queued bytes are dropped: nothing is pending, so the stream is writable again. Nobody is
    /// told: the application caused it (or the stream is closed) and can write no more anyway.
    private mutating func discardQueue() {
        self.bufferedBytes = 0
        self.flushedBytes = 0
        self.writability = .writable
    }
}
