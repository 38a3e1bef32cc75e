import NIOCore
import NIOHTTP1

/// Why a stream ended. Delivered once, in `HTTP2ServerStreamDelegate.http2StreamDidClose`.
public enum HTTP2StreamCloseReason: Sendable, Hashable, CustomStringConvertible {
    /// Both sides ended the stream normally (the response went out to its END_STREAM).
    case finished
    /// The client reset the stream (RST_STREAM) with this HTTP/2 error code; 0x8 is CANCEL, what
    /// browsers send when an `EventSource` is closed or a tab goes away.
    case reset(errorCode: UInt32)
    /// The server reset the stream: `HTTP2ServerStream.reset(errorCode:)`, or nghttp2 after a
    /// stream-level protocol error by the client.
    case resetLocally(errorCode: UInt32)
    /// The connection went away (closed, lost, torn down after a protocol error or a flood)
    /// while the stream was open.
    case connectionClosed

    public var description: String {
        switch self {
        case .finished: return "finished"
        case .reset(let code): return "reset by client (\(HTTP2ErrorCodeName.name(code)))"
        case .resetLocally(let code): return "reset by server (\(HTTP2ErrorCodeName.name(code)))"
        case .connectionClosed: return "connection closed"
        }
    }
}

/// Names of the HTTP/2 error codes (RFC 9113 §7), for logs.
public enum HTTP2ErrorCodeName {
    public static func name(_ code: UInt32) -> String {
        switch code {
        case 0x0: return "NO_ERROR"
        case 0x1: return "PROTOCOL_ERROR"
        case 0x2: return "INTERNAL_ERROR"
        case 0x3: return "FLOW_CONTROL_ERROR"
        case 0x4: return "SETTINGS_TIMEOUT"
        case 0x5: return "STREAM_CLOSED"
        case 0x6: return "FRAME_SIZE_ERROR"
        case 0x7: return "REFUSED_STREAM"
        case 0x8: return "CANCEL"
        case 0x9: return "COMPRESSION_ERROR"
        case 0xa: return "CONNECT_ERROR"
        case 0xb: return "ENHANCE_YOUR_CALM"
        case 0xc: return "INADEQUATE_SECURITY"
        case 0xd: return "HTTP_1_1_REQUIRED"
        default: return "0x" + String(code, radix: 16)
        }
    }
}

/// Hears what happens on one request stream. Every call comes on the connection's event loop,
/// never from inside nghttp2: the delegate may call any `HTTP2ServerStream` method from here.
public protocol HTTP2ServerStreamDelegate: AnyObject {
    /// A piece of the request body. Its bytes are released to the client's flow-control window
    /// (WINDOW_UPDATE) when this call returns, unless the stream's body is paused
    /// (`pauseBody()`): then when it is resumed, so that the window bounds what a client can send
    /// ahead of where the body is going.
    func http2Stream(_ stream: HTTP2ServerStream, didReceiveBody body: ByteBuffer)
    /// The request is complete (END_STREAM from the client).
    func http2StreamDidReceiveEnd(_ stream: HTTP2ServerStream)
    /// The stream is gone: the response was completed, the client reset it (RST_STREAM), the
    /// server reset it, or the connection closed. No more calls after this.
    func http2StreamDidClose(_ stream: HTTP2ServerStream, reason: HTTP2StreamCloseReason)
    /// `stream.isWritable` changed (queued bytes crossed `streamBufferLimit`, either way).
    func http2StreamWritabilityChanged(_ stream: HTTP2ServerStream)
}

/// One request stream of an `HTTP2ServerHandler`'s connection.
///
/// All methods must be called on the connection's event loop. Calls after the stream has closed
/// are ignored, so the application never has to race the client.
///
/// Writing: `sendHead` once, then any number of `write`s; `flush` hands the queued bytes to the
/// connection (one nghttp2 send pump for all the flushes of one event-loop tick); `end` finishes
/// the response after the queued bytes (and flushes). Bytes go out as the client's flow-control
/// window allows; until then they stay queued here, counted in `bufferedBytes`.
public final class HTTP2ServerStream {
    /// The HTTP/2 stream id (odd: client-initiated).
    public let streamID: Int32
    /// The request: method, uri (`:path`), headers (with `host` from `:authority`, `cookie`
    /// crumbs joined), version 2.0.
    public let head: HTTPRequestHead
    /// The request's `:scheme` (`http` or `https` as the client sent it).
    public let scheme: String
    /// Receives this stream's events. Set it in `onRequest`.
    public weak var delegate: HTTP2ServerStreamDelegate?

    /// The connection; nil once the stream has closed.
    private(set) weak var handler: HTTP2ServerHandler?

    // ---- Response state (owned by the handler, which drives nghttp2) ----

    enum HeadState {
        case none
        case pending(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool)
        case submitted
    }

    var headState: HeadState = .none
    /// Bytes written and not yet taken by nghttp2, oldest first.
    var outbound = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    /// Total readable bytes in `outbound`.
    var queuedBytes = 0
    /// How many of `queuedBytes` have been flushed (nghttp2 may take them).
    var flushedBytes = 0
    /// `end()` was called: END_STREAM goes out after the queued bytes.
    var endRequested = false
    /// The data provider answered NGHTTP2_ERR_DEFERRED: `nghttp2_session_resume_data` is needed
    /// before nghttp2 asks again.
    var deferred = false
    /// A reset the application asked for, not yet submitted.
    var pendingReset: UInt32?
    /// `reset(errorCode:)` was called.
    var resetRequested = false
    /// The stream is in the handler's list of streams with changes to apply.
    var isDirty = false
    /// The client sent RST_STREAM with this code.
    var remoteResetCode: UInt32?
    /// The application has been given this stream (`onRequest`).
    var delivered = false
    /// `isWritable` as last reported to the delegate.
    var reportedWritable = true
    /// `http2StreamDidClose` has been called.
    var closeDelivered = false
    /// Body bytes delivered while paused, whose window is given back on `resumeBody()`.
    var unconsumedBodyBytes = 0
    private(set) var bodyPaused = false
    private(set) var closed = false
    let bufferLimit: Int

    init(streamID: Int32, head: HTTPRequestHead, scheme: String, handler: HTTP2ServerHandler, bufferLimit: Int) {
        self.streamID = streamID
        self.head = head
        self.scheme = scheme
        self.handler = handler
        self.bufferLimit = bufferLimit
    }

    // MARK: Public API

    /// Queues the response head. Header names are lowercased; connection-specific fields
    /// (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, and `te`
    /// other than `trailers`) and fields with invalid names or values are dropped. With
    /// `endStream` the response has no body. A second call is ignored.
    public func sendHead(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool = false) {
        guard !self.closed, !self.resetRequested, let handler = self.handler, case .none = self.headState else { return }
        self.headState = .pending(status: status, headers: headers, endStream: endStream)
        if endStream {
            self.endRequested = true
            self.dropQueued()
        }
        handler.streamNeedsAttention(self, pump: true)
    }

    /// Appends `bytes` to the stream's queue. Nothing is sent until `flush()` (or `end()`).
    /// Ignored after `end()`, after a head with `endStream`, and once the stream has closed.
    public func write(_ bytes: ByteBuffer) {
        guard !self.closed, !self.endRequested, !self.resetRequested, let handler = self.handler else { return }
        guard bytes.readableBytes > 0 else { return }
        let wasWritable = self.isWritable
        self.outbound.append(bytes)
        self.queuedBytes += bytes.readableBytes
        if wasWritable != self.isWritable {
            handler.streamWritabilityMayHaveChanged(self)
        }
    }

    /// Lets the connection send what is queued. Flushes in the same event-loop tick share one
    /// nghttp2 send pump (one socket write + flush).
    public func flush() {
        guard !self.closed, !self.resetRequested, let handler = self.handler else { return }
        guard self.flushedBytes != self.queuedBytes else { return }
        self.flushedBytes = self.queuedBytes
        handler.streamNeedsAttention(self, pump: true)
    }

    /// Ends the response (END_STREAM) after the queued bytes; implies `flush()`.
    public func end() {
        guard !self.closed, !self.endRequested, !self.resetRequested, let handler = self.handler else { return }
        self.endRequested = true
        self.flushedBytes = self.queuedBytes
        handler.streamNeedsAttention(self, pump: true)
    }

    /// Resets the stream (RST_STREAM with `errorCode`, CANCEL by default). Queued bytes are
    /// dropped; the delegate then hears `http2StreamDidClose` with `.resetLocally`.
    public func reset(errorCode: UInt32 = 0x8) {
        guard !self.closed, !self.resetRequested, let handler = self.handler else { return }
        self.resetRequested = true
        self.pendingReset = errorCode
        self.dropQueued()
        handler.streamNeedsAttention(self, pump: true)
    }

    /// Stops giving the request body's bytes back to the client's flow-control window: the client
    /// can send at most one window more. For a body whose destination is not taking bytes.
    public func pauseBody() {
        self.bodyPaused = true
    }

    /// Gives back what was held since `pauseBody()`, so that the client sends more.
    public func resumeBody() {
        guard self.bodyPaused else { return }
        self.bodyPaused = false
        guard !self.closed, let handler = self.handler, self.unconsumedBodyBytes > 0 else { return }
        let count = self.unconsumedBodyBytes
        self.unconsumedBodyBytes = 0
        handler.streamConsumed(self, count: count)
    }

    /// Bytes queued by `write` and not yet taken by nghttp2 (flushed or not).
    public var bufferedBytes: Int { self.queuedBytes }

    /// `bufferedBytes <= streamBufferLimit`.
    public var isWritable: Bool { self.queuedBytes <= self.bufferLimit }

    /// The stream has closed (for any reason); writes are ignored from now on.
    public var isClosed: Bool { self.closed }

    // MARK: Internal (the handler's side)

    /// nghttp2 closed the stream, or the connection went away.
    func markClosed() {
        self.closed = true
        self.dropQueued()
        self.handler = nil
    }

    private func dropQueued() {
        self.outbound.removeAll()
        self.queuedBytes = 0
        self.flushedBytes = 0
    }

    /// Moves the first `count` queued bytes into `output` (for a DATA frame nghttp2 is sending).
    func take(_ count: Int, into output: inout ByteBuffer) {
        var remaining = min(count, self.queuedBytes)
        while remaining > 0, var first = self.outbound.first {
            if first.readableBytes <= remaining {
                remaining -= first.readableBytes
                output.writeBuffer(&first)
                self.outbound.removeFirst()
            } else {
                var slice = first.readSlice(length: remaining)!
                output.writeBuffer(&slice)
                self.outbound[self.outbound.startIndex] = first
                remaining = 0
            }
        }
        let taken = min(count, self.queuedBytes)
        self.queuedBytes -= taken
        self.flushedBytes = max(self.flushedBytes - taken, 0)
    }
}
