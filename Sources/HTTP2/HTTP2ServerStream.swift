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
    /// `stream.isWritable` changed: queued bytes went over `streamBufferLimit` (the high
    /// watermark), or drained to half of it (the low watermark) after that.
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

    /// Everything but the bytes: driven by the calls below and by the handler.
    var state: HTTP2StreamStateMachine
    /// Bytes written and not yet taken by nghttp2, oldest first (`state.bufferedBytes` of them).
    private var outbound = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    /// The stream is in the handler's list of streams with changes to apply (the handler's
    /// bookkeeping, kept here so that the list needs no lookup).
    var isDirty = false

    init(streamID: Int32, head: HTTPRequestHead, scheme: String, handler: HTTP2ServerHandler, watermarks: HTTP2StreamStateMachine.Watermarks) {
        self.streamID = streamID
        self.head = head
        self.scheme = scheme
        self.handler = handler
        self.state = HTTP2StreamStateMachine(watermarks: watermarks)
    }

    // MARK: Public API

    /// Queues the response head. Header names are lowercased; connection-specific fields
    /// (`connection`, `keep-alive`, `proxy-connection`, `transfer-encoding`, `upgrade`, and `te`
    /// other than `trailers`) and fields with invalid names or values are dropped. With
    /// `endStream` the response has no body. A second call is ignored.
    public func sendHead(status: HTTPResponseStatus, headers: [(String, String)], endStream: Bool = false) {
        guard let handler = self.handler else { return }
        self.perform(self.state.sendHead(status: status, headers: headers, endStream: endStream), handler)
    }

    /// Appends `bytes` to the stream's queue. Nothing is sent until `flush()` (or `end()`).
    /// Ignored after `end()`, after a head with `endStream`, and once the stream has closed.
    public func write(_ bytes: ByteBuffer) {
        guard let handler = self.handler else { return }
        switch self.state.write(bytes.readableBytes) {
        case .ignore:
            break
        case .enqueue:
            self.outbound.append(bytes)
        case .enqueueAndNotifyWritability:
            self.outbound.append(bytes)
            handler.streamWritabilityMayHaveChanged(self)
        }
    }

    /// Lets the connection send what is queued. Flushes in the same event-loop tick share one
    /// nghttp2 send pump (one socket write + flush).
    public func flush() {
        guard let handler = self.handler else { return }
        self.perform(self.state.flush(), handler)
    }

    /// `flush()` for a write to an idle stream (a heartbeat): once the connection has sent
    /// everything, it gives back the pages of the session's output buffer (about 4 KiB), which
    /// its next frame takes again. Not for ordinary writes: that would cost a page fault per event.
    public func flushIdle() {
        guard let handler = self.handler else { return }
        self.perform(self.state.flush(), handler)
        handler.streamFlushedIdle()
    }

    /// Ends the response (END_STREAM) after the queued bytes; implies `flush()`.
    public func end() {
        guard let handler = self.handler else { return }
        self.perform(self.state.end(), handler)
    }

    /// Resets the stream (RST_STREAM with `errorCode`, CANCEL by default). Queued bytes are
    /// dropped; the delegate then hears `http2StreamDidClose` with `.resetLocally`.
    public func reset(errorCode: UInt32 = 0x8) {
        guard let handler = self.handler else { return }
        self.perform(self.state.reset(errorCode: errorCode), handler)
    }

    /// Stops giving the request body's bytes back to the client's flow-control window: the client
    /// can send at most one window more. For a body whose destination is not taking bytes.
    public func pauseBody() {
        self.state.pauseBody()
    }

    /// Gives back what was held since `pauseBody()`, so that the client sends more.
    public func resumeBody() {
        guard case .release(let count) = self.state.resumeBody(), let handler = self.handler else { return }
        handler.streamConsumed(self, count: count)
    }

    /// Bytes queued by `write` and not yet taken by nghttp2 (flushed or not).
    public var bufferedBytes: Int { self.state.bufferedBytes }

    /// False once `bufferedBytes` went over `streamBufferLimit` (the high watermark), until it
    /// has drained to half of it (the low watermark): see `HTTP2StreamStateMachine.Watermarks`.
    public var isWritable: Bool { self.state.isWritable }

    /// The stream has closed (for any reason); writes are ignored from now on.
    public var isClosed: Bool { self.state.isClosed }

    // MARK: Internal (the handler's side)

    private func perform(_ action: HTTP2StreamStateMachine.OutboundAction, _ handler: HTTP2ServerHandler) {
        switch action {
        case .none:
            break
        case .submit:
            handler.streamNeedsAttention(self, pump: true)
        case .discardQueueAndSubmit:
            self.outbound.removeAll()
            handler.streamNeedsAttention(self, pump: true)
        }
    }

    /// The stream closes (nghttp2 closed it, or the connection went away): its queue is dropped
    /// and it lets go of the connection. Nil when it was already closed.
    func close(_ cause: HTTP2StreamStateMachine.CloseCause) -> HTTP2StreamCloseReason? {
        guard let reason = self.state.close(cause) else { return nil }
        self.outbound.removeAll()
        self.handler = nil
        return reason
    }

    /// Moves the first `count` queued bytes into `output` (for a DATA frame nghttp2 is sending).
    func take(_ count: Int, into output: inout ByteBuffer) -> HTTP2StreamStateMachine.WritabilityAction {
        var remaining = min(count, self.state.bufferedBytes)
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
        return self.state.sent(count)
    }
}
