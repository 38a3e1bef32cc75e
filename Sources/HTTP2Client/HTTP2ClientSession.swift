import CNghttp2
import HTTP2
import NIOCore

/// What an `HTTP2ClientSession` reports, synchronously from inside `receive`, and from inside
/// `writePending` for streams that sending closes (a reset sent by `resetStream`, a request refused
/// because the server sent GOAWAY).
///
/// Callbacks run while nghttp2 is parsing or sending: they may record and account, but must not
/// call back into the session (`submitRequest`, `resetStream`, ...). Do that after it returns.
public protocol HTTP2ClientSessionDelegate: AnyObject {
    /// The final (non-1xx) response head of `streamID`. Only `:status` and `content-type` are kept:
    /// a client of long-lived streams needs no more, and keeping less costs nothing per stream.
    func http2Response(streamID: Int32, status: Int, contentType: String?)
    /// Response body bytes of `streamID`, valid only during the call (nghttp2's buffer, no copy).
    /// Flow control is automatic: the window is given back as soon as this returns.
    func http2Data(streamID: Int32, bytes: UnsafeRawBufferPointer)
    /// `streamID` is closed: ended by the server (`errorCode` 0), reset by either side, or refused
    /// (REFUSED_STREAM: not processed by the server, safe to send again).
    func http2StreamClosed(streamID: Int32, errorCode: UInt32)
    /// The server sent GOAWAY; streams above `lastStreamID` were not processed.
    func http2GoAway(errorCode: UInt32, lastStreamID: Int32)
}

/// A minimal HTTP/2 client session on libnghttp2, for many long-lived GET streams on one
/// connection (the load tool's h2c and h2 modes). No I/O of its own: feed it the bytes read from
/// the connection (`receive`) and write what it produces (`writePending`).
///
/// Flow control is nghttp2's automatic mode (WINDOW_UPDATE once half a window is consumed), with a
/// large connection window, so many busy streams do not stall on the connection's default 64 KiB.
/// Not thread-safe: use it from one thread (a channel's event loop).
public final class HTTP2ClientSession {
    public struct Failure: Error, CustomStringConvertible {
        public var code: Int32
        public var operation: String
        public var description: String {
            "\(self.operation): \(String(cString: nghttp2_strerror(self.code))) (\(self.code))"
        }
    }

    public struct Settings: Sendable {
        /// SETTINGS_INITIAL_WINDOW_SIZE: the window of each stream.
        public var streamWindow: Int32 = 1 << 20
        /// The connection's receive window (set with a WINDOW_UPDATE at start).
        public var connectionWindow: Int32 = 16 << 20
        public init() {}
    }

    public weak var delegate: HTTP2ClientSessionDelegate?
    private var session: OpaquePointer?
    private var arena: UnsafeMutablePointer<cnghttp2_arena>?
    /// `:status` and `content-type` of response heads still being decoded, by stream.
    fileprivate var pendingHeads: [Int32: (status: Int, contentType: String?)] = [:]
    /// Streams that got a 1xx head and wait for their final one, which nghttp2 files as
    /// NGHTTP2_HCAT_HEADERS (like trailers), not as a response.
    fileprivate var awaitingFinalHead: Set<Int32> = []
    /// The server's GOAWAY has arrived (new requests are refused from then on).
    fileprivate var goAwayReceived = false

    public init(delegate: HTTP2ClientSessionDelegate, settings: Settings = Settings()) throws(Failure) {
        self.delegate = delegate
        do {
            let created = try NGHTTP2SessionSetup.makeSession(
                .client,
                userData: Unmanaged.passUnretained(self).toOpaque(),
                settings: [(NGHTTP2_SETTINGS_ENABLE_PUSH, 0), (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, Int(settings.streamWindow))],
                connectionWindow: settings.connectionWindow
            ) { callbacks, _ in
                nghttp2_session_callbacks_set_on_header_callback(callbacks, clientOnHeader)
                nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, clientOnFrameRecv)
                nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, clientOnDataChunkRecv)
                nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, clientOnStreamClose)
            }
            self.session = created.session
            self.arena = created.arena
        } catch {
            throw Failure(code: error.code, operation: error.operation)
        }
    }

    deinit {
        if let session, let arena { NGHTTP2SessionSetup.Session(session: session, arena: arena).delete() }
    }

    /// Queues a request without a body and returns its stream id. `headers` are sent as given
    /// (names must be lowercase). The client connection preface goes out with the first output.
    public func submitRequest(
        method: String, scheme: String, authority: String, path: String, headers: [(String, String)] = []
    ) throws(Failure) -> Int32 {
        guard let session else { throw Failure(code: NGHTTP2_ERR_INVALID_STATE.rawValue, operation: "submitRequest") }
        var fields: [(String, String)] = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
        fields.append(contentsOf: headers)
        let streamID = NGHTTP2Session.withNameValues(fields) { nva, count in
            nghttp2_submit_request(session, nil, nva, count, nil, nil)
        }
        guard streamID > 0 else { throw Failure(code: streamID, operation: "nghttp2_submit_request") }
        return streamID
    }

    /// Resets a stream (RST_STREAM with `errorCode`, default CANCEL).
    public func resetStream(_ streamID: Int32, errorCode: UInt32 = NGHTTP2_CANCEL.rawValue) {
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
    }

    /// Feeds bytes read from the connection; the delegate hears about them before this returns.
    ///
    /// Throws when the bytes break the protocol in a way that ends the connection (not HTTP/2, a
    /// bad frame, a compression error): nothing more will be read. nghttp2 has queued a GOAWAY
    /// with the error code for `writePending`; the connection should then be closed.
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard let session, let base = bytes.baseAddress, bytes.count > 0 else { return }
        // For most connection errors nghttp2 queues GOAWAY and ignores the rest of the input, but
        // mem_recv succeeds. What shows is that requests are no longer allowed although no GOAWAY
        // came in. (After the server's GOAWAY they are not allowed anyway: such an error then
        // only shows as `isAlive` turning false once the GOAWAY is written.)
        let couldRequest = nghttp2_session_check_request_allowed(session) != 0
        let consumed = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if consumed < 0 {
            throw Failure(code: Int32(consumed), operation: "nghttp2_session_mem_recv")
        }
        if couldRequest && !self.goAwayReceived && nghttp2_session_check_request_allowed(session) == 0 {
            throw Failure(code: NGHTTP2_ERR_PROTO.rawValue, operation: "nghttp2_session_mem_recv")
        }
    }

    /// Appends every frame nghttp2 has ready (preface, SETTINGS, requests, WINDOW_UPDATE, PING
    /// acks, ...) to `buffer`. Returns whether anything was appended.
    @discardableResult
    public func writePending(into buffer: inout ByteBuffer) throws(Failure) -> Bool {
        guard let session else { return false }
        var wrote = false
        while true {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            if count < 0 {
                throw Failure(code: Int32(count), operation: "nghttp2_session_mem_send")
            }
            guard count > 0, let data else { return wrote }
            buffer.writeBytes(UnsafeRawBufferPointer(start: data, count: count))
            wrote = true
        }
    }

    /// Whether nghttp2 has frames to send (checked before allocating a buffer for `writePending`).
    public var wantsWrite: Bool {
        guard let session else { return false }
        return nghttp2_session_want_write(session) != 0
    }

    /// False once nghttp2 has nothing more to read or write (after GOAWAY both ways, or a fatal error).
    public var isAlive: Bool {
        guard let session else { return false }
        return nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    /// Queues GOAWAY with `errorCode`; the connection should be closed once it is written.
    /// Call it outside `receive` (not from the delegate).
    public func terminate(errorCode: UInt32 = NGHTTP2_NO_ERROR.rawValue) {
        guard let session else { return }
        _ = nghttp2_session_terminate_session(session, errorCode)
    }
}

// MARK: - C callbacks

@inline(__always)
private func clientSession(_ userData: UnsafeMutableRawPointer?) -> HTTP2ClientSession? {
    guard let userData else { return nil }
    return Unmanaged<HTTP2ClientSession>.fromOpaque(userData).takeUnretainedValue()
}

private let clientFrameHeaders = UInt8(NGHTTP2_HEADERS.rawValue)
private let clientFrameGoAway = UInt8(NGHTTP2_GOAWAY.rawValue)
private let clientCategoryResponse = Int32(NGHTTP2_HCAT_RESPONSE.rawValue)
private let clientCategoryHeaders = Int32(NGHTTP2_HCAT_HEADERS.rawValue)
private let clientCallbackFailure = NGHTTP2_ERR_CALLBACK_FAILURE.rawValue

/// One decoded header field of a response head (informational or final): keep `:status` and
/// `content-type`.
private func clientOnHeader(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ name: UnsafePointer<UInt8>?,
    _ nameLength: Int,
    _ value: UnsafePointer<UInt8>?,
    _ valueLength: Int,
    _ flags: UInt8,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let client = clientSession(userData), let frame, let name, let value else { return clientCallbackFailure }
    guard cnghttp2_frame_type(frame) == clientFrameHeaders else { return 0 }
    let streamID = cnghttp2_frame_stream_id(frame)
    switch cnghttp2_frame_headers_category(frame) {
    case clientCategoryResponse: break
    case clientCategoryHeaders where client.awaitingFinalHead.contains(streamID): break
    default: return 0  // trailers: not wanted
    }
    let nameBytes = UnsafeRawBufferPointer(start: name, count: nameLength)
    if nameBytes.elementsEqual(":status".utf8) {
        var status = 0
        for byte in UnsafeRawBufferPointer(start: value, count: valueLength) {
            status = status * 10 + Int(byte &- UInt8(ascii: "0"))
        }
        client.pendingHeads[streamID, default: (0, nil)].status = status
    } else if nameBytes.elementsEqual("content-type".utf8) {
        client.pendingHeads[streamID, default: (0, nil)].contentType =
            String(decoding: UnsafeRawBufferPointer(start: value, count: valueLength), as: UTF8.self)
    }
    return 0
}

private func clientOnFrameRecv(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let client = clientSession(userData), let frame else { return clientCallbackFailure }
    switch cnghttp2_frame_type(frame) {
    case clientFrameHeaders:
        let streamID = cnghttp2_frame_stream_id(frame)
        guard let head = client.pendingHeads.removeValue(forKey: streamID) else {
            return 0  // trailers
        }
        guard head.status >= 200 else {
            client.awaitingFinalHead.insert(streamID)  // 1xx: the final head comes next
            return 0
        }
        client.awaitingFinalHead.remove(streamID)
        client.delegate?.http2Response(streamID: streamID, status: head.status, contentType: head.contentType)
    case clientFrameGoAway:
        client.goAwayReceived = true
        client.delegate?.http2GoAway(
            errorCode: cnghttp2_frame_goaway_error_code(frame), lastStreamID: cnghttp2_frame_goaway_last_stream_id(frame))
    default:
        break
    }
    return 0
}

private func clientOnDataChunkRecv(
    _ session: OpaquePointer?,
    _ flags: UInt8,
    _ streamID: Int32,
    _ data: UnsafePointer<UInt8>?,
    _ length: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let client = clientSession(userData) else { return clientCallbackFailure }
    guard length > 0, let data else { return 0 }
    client.delegate?.http2Data(streamID: streamID, bytes: UnsafeRawBufferPointer(start: data, count: length))
    return 0
}

private func clientOnStreamClose(
    _ session: OpaquePointer?,
    _ streamID: Int32,
    _ errorCode: UInt32,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let client = clientSession(userData) else { return clientCallbackFailure }
    client.pendingHeads[streamID] = nil
    client.awaitingFinalHead.remove(streamID)
    client.delegate?.http2StreamClosed(streamID: streamID, errorCode: errorCode)
    return 0
}
