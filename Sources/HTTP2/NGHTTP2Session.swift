import CNghttp2
import NIOCore
import NIOHTTP1

/// Thin wrappers around libnghttp2: creating the server session with its options and SETTINGS
/// (the steps shared with the client session are in `NGHTTP2SessionSetup`), submitting responses,
/// and the C callbacks. The callbacks find their `HTTP2ServerHandler` through nghttp2's
/// `user_data` (unretained: the handler owns the session and deletes it before it goes away) and
/// only record what happened; the handler acts on it after nghttp2 returns.
package enum NGHTTP2Session {
    /// A server session for `configuration`, with the server's SETTINGS (and the connection
    /// window) already submitted. Nil when nghttp2 cannot create it.
    static func makeServerSession(configuration: HTTP2ServerConfiguration, userData: UnsafeMutableRawPointer) -> NGHTTP2SessionSetup.Session? {
        let settings: [(nghttp2_settings_id, Int)] = [
            (NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, configuration.maxConcurrentStreams),
            (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, configuration.initialWindowSize),
            (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, configuration.maxHeaderListSize),
            (NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1),
            // No HPACK dynamic table for requests either: a client sends one request per event
            // stream, and the table kept the first request's headers for the connection's life
            // (a browser's: user-agent, sec-ch-ua, cookies, ... up to 4 KiB). Until our SETTINGS
            // are acknowledged the client may still use 4,096 (nghttp2 decodes with that); on the
            // ACK nghttp2 empties the table, and the client's next header block must start with
            // a table size update (RFC 7541 §4.2), as conforming clients send.
            (NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 0),
        ]
        return try? NGHTTP2SessionSetup.makeSession(
            .server,
            userData: userData,
            settings: settings,
            connectionWindow: Int32(clamping: configuration.connectionWindowSize)
        ) { callbacks, option in
            nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
            nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
            nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameRecv)
            nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunkRecv)
            nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
            nghttp2_session_callbacks_set_send_data_callback(callbacks, sendData)
            // Window updates follow what the application has been given (nghttp2_session_consume).
            nghttp2_option_set_no_auto_window_update(option, 1)
            nghttp2_option_set_max_outbound_ack(option, configuration.maxOutboundAcks)
            nghttp2_option_set_max_settings(option, configuration.maxSettingsEntries)
            // No HPACK dynamic table for our responses: an event stream sends one HEADERS per
            // stream, and the table's entries cost every connection (1.2 KiB per idle connection,
            // measured) for a few hundred bytes saved on a connection's later heads.
            nghttp2_option_set_max_deflate_dynamic_table_size(option, 0)
        }
    }

    /// Connection-specific fields an HTTP/2 message must not carry (RFC 9113 §8.2.2).
    private static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    ]

    /// `nghttp2_submit_response` with `:status` and `headers` (lowercased, connection-specific and
    /// invalid fields dropped) and, with `dataProvider`, the deferred data provider that reads the
    /// stream's queue. Returns nghttp2's result (0 on success).
    static func submitResponse(
        _ session: OpaquePointer,
        streamID: Int32,
        status: HTTPResponseStatus,
        headers: [(String, String)],
        dataProvider: Bool
    ) -> Int32 {
        var fields: [(String, String)] = [(":status", String(status.code))]
        fields.reserveCapacity(headers.count + 1)
        for (name, value) in headers {
            let name = name.lowercased()
            guard !name.isEmpty, name.utf8.first != UInt8(ascii: ":") else { continue }
            if Self.connectionSpecific.contains(name) { continue }
            if name == "te" && value.lowercased() != "trailers" { continue }
            guard isValid(name: name, value: value) else { continue }
            fields.append((name, value))
        }
        return withNameValues(fields) { nva, count in
            if dataProvider {
                var provider = nghttp2_data_provider()
                provider.source.ptr = nil
                provider.read_callback = readData
                return nghttp2_submit_response(session, streamID, nva, count, &provider)
            } else {
                return nghttp2_submit_response(session, streamID, nva, count, nil)
            }
        }
    }

    private static func isValid(name: String, value: String) -> Bool {
        var name = name
        var value = value
        let nameOK = name.withUTF8 { nghttp2_check_header_name($0.baseAddress, $0.count) != 0 }
        let valueOK = value.withUTF8 { nghttp2_check_header_value_rfc9113($0.baseAddress, $0.count) != 0 }
        return nameOK && valueOK
    }

    /// Calls `body` with an `nghttp2_nv` array for `fields` (valid during the call; nghttp2 copies).
    /// Used by the server and the client session (module HTTP2Client) alike.
    package static func withNameValues<R>(_ fields: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>?, Int) -> R) -> R {
        var storage: [UInt8] = []
        var spans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []
        spans.reserveCapacity(fields.count)
        for (name, value) in fields {
            let nameStart = storage.count
            storage.append(contentsOf: name.utf8)
            let valueStart = storage.count
            storage.append(contentsOf: value.utf8)
            spans.append((nameStart, storage.count - nameStart - value.utf8.count, valueStart, value.utf8.count))
        }
        storage.append(0)  // never empty: baseAddress is non-nil
        return storage.withUnsafeMutableBufferPointer { bytes in
            let base = bytes.baseAddress!
            let nva = spans.map {
                nghttp2_nv(
                    name: base + $0.name,
                    value: base + $0.value,
                    namelen: $0.nameLength,
                    valuelen: $0.valueLength,
                    flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)
                )
            }
            return nva.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
        }
    }
}

// MARK: - C callbacks

@inline(__always)
private func handler(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerHandler? {
    guard let userData else { return nil }
    return Unmanaged<HTTP2ServerHandler>.fromOpaque(userData).takeUnretainedValue()
}

private let frameData = UInt8(NGHTTP2_DATA.rawValue)
private let frameHeaders = UInt8(NGHTTP2_HEADERS.rawValue)
private let frameRstStream = UInt8(NGHTTP2_RST_STREAM.rawValue)
private let frameSettings = UInt8(NGHTTP2_SETTINGS.rawValue)
private let framePing = UInt8(NGHTTP2_PING.rawValue)
private let frameGoAway = UInt8(NGHTTP2_GOAWAY.rawValue)
private let flagEndStream = UInt8(NGHTTP2_FLAG_END_STREAM.rawValue)
private let flagAck = UInt8(NGHTTP2_FLAG_ACK.rawValue)
private let categoryRequest = Int32(NGHTTP2_HCAT_REQUEST.rawValue)
private let callbackFailure = NGHTTP2_ERR_CALLBACK_FAILURE.rawValue

/// A HEADERS frame starts: a new request gets a builder.
private func onBeginHeaders(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData), let frame else { return callbackFailure }
    guard cnghttp2_frame_type(frame) == frameHeaders, cnghttp2_frame_headers_category(frame) == categoryRequest else {
        return 0
    }
    let streamID = cnghttp2_frame_stream_id(frame)
    handler.requestHead = (streamID, RequestHeadBuilder(limit: handler.configuration.maxHeaderListSize))
    return 0
}

/// One decoded header field.
private func onHeader(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ name: UnsafePointer<UInt8>?,
    _ nameLength: Int,
    _ value: UnsafePointer<UInt8>?,
    _ valueLength: Int,
    _ flags: UInt8,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData), let frame else { return callbackFailure }
    guard cnghttp2_frame_type(frame) == frameHeaders,
        let pending = handler.requestHead, pending.streamID == cnghttp2_frame_stream_id(frame)
    else {
        return 0  // trailers: not passed on
    }
    pending.builder.add(
        name: UnsafeBufferPointer(start: name, count: name == nil ? 0 : nameLength),
        value: UnsafeBufferPointer(start: value, count: value == nil ? 0 : valueLength)
    )
    return 0
}

/// A complete frame arrived.
private func onFrameRecv(
    _ session: OpaquePointer?,
    _ frame: UnsafePointer<nghttp2_frame>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData), let frame else { return callbackFailure }
    let type = cnghttp2_frame_type(frame)
    let flags = cnghttp2_frame_flags(frame)
    let streamID = cnghttp2_frame_stream_id(frame)
    switch type {
    case frameHeaders:
        if let (pendingID, builder) = handler.requestHead, pendingID == streamID {
            handler.requestHead = nil
            if builder.oversized {
                handler.pendingRejections.append(streamID)
                return 0
            }
            let (head, scheme) = builder.build()
            let stream = HTTP2ServerStream(
                streamID: streamID,
                head: head,
                scheme: scheme,
                handler: handler,
                watermarks: handler.streamWatermarks
            )
            handler.streams[streamID] = stream
            handler.events.append(.request(stream))
            if flags & flagEndStream != 0 {
                handler.events.append(.end(stream))
            }
        } else if flags & flagEndStream != 0, let stream = handler.streams[streamID] {
            handler.events.append(.end(stream))  // trailers end the request
        }
    case frameData:
        if flags & flagEndStream != 0, let stream = handler.streams[streamID] {
            handler.events.append(.end(stream))
        }
    case frameRstStream:
        handler.streams[streamID]?.state.resetReceived(errorCode: cnghttp2_frame_rst_stream_error_code(frame))
        if !handler.resetLimiter.admit(now: handler.now) {
            handler.floodErrorCode = NGHTTP2_ENHANCE_YOUR_CALM.rawValue
            handler.noteTermination(.flood("rapid reset (RST_STREAM over \(handler.configuration.maxClientResetsPerSecond)/s)"))
            return callbackFailure  // stop reading this flood now; the handler sends GOAWAY
        }
    case framePing, frameSettings:
        if flags & flagAck != 0 {
            if type == framePing, cnghttp2_frame_ping_opaque(frame) == handler.shutdownPingOpaque {
                handler.shutdownPingAcknowledged()
            }
        } else if !handler.controlLimiter.admit(now: handler.now) {
            handler.floodErrorCode = NGHTTP2_ENHANCE_YOUR_CALM.rawValue
            let kind = type == framePing ? "PING" : "SETTINGS"
            handler.noteTermination(.flood("\(kind) frames over \(handler.configuration.maxControlFramesPerSecond)/s"))
            return callbackFailure
        }
    case frameGoAway:
        handler.noteTermination(.clientGoAway(errorCode: cnghttp2_frame_goaway_error_code(frame)))
    default:
        break
    }
    return 0
}

/// Request body bytes.
private func onDataChunkRecv(
    _ session: OpaquePointer?,
    _ flags: UInt8,
    _ streamID: Int32,
    _ data: UnsafePointer<UInt8>?,
    _ length: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData) else { return callbackFailure }
    guard length > 0, let data else { return 0 }
    if let stream = handler.streams[streamID] {
        var bytes = handler.allocator.buffer(capacity: length)
        bytes.writeBytes(UnsafeRawBufferPointer(start: data, count: length))
        handler.events.append(.body(stream, bytes))
    } else {
        handler.events.append(.consume(streamID: streamID, count: length))
    }
    return 0
}

/// A stream closed (both ends done, reset by either side, or refused).
private func onStreamClose(
    _ session: OpaquePointer?,
    _ streamID: Int32,
    _ errorCode: UInt32,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData) else { return callbackFailure }
    if handler.requestHead?.streamID == streamID {
        handler.requestHead = nil
    }
    guard let stream = handler.streams.removeValue(forKey: streamID),
        let reason = stream.close(.nghttp2(errorCode: errorCode))
    else { return 0 }
    handler.events.append(.closed(stream, reason))
    return 0
}

/// The data provider, as the stream's state machine answers (`readData(maxLength:)`): how many
/// of the stream's flushed bytes go into the next DATA frame, with NO_COPY (nghttp2 keeps no copy
/// of its own: `sendData` moves them from the stream's queue into the pump's output), and EOF when
/// `end()` was called and these are the last of them; DEFERRED when nothing is flushed yet (or the
/// application reset the stream: only its RST_STREAM goes out).
private func readData(
    _ session: OpaquePointer?,
    _ streamID: Int32,
    _ buffer: UnsafeMutablePointer<UInt8>?,
    _ length: Int,
    _ dataFlags: UnsafeMutablePointer<UInt32>?,
    _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    guard let handler = handler(userData), let dataFlags else { return Int(callbackFailure) }
    guard let stream = handler.streams[streamID] else {
        return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    }
    switch stream.state.readData(maxLength: length) {
    case .streamClosed:
        return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    case .deferred:
        return Int(NGHTTP2_ERR_DEFERRED.rawValue)
    case .send(let count, let endStream):
        dataFlags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        if endStream {
            dataFlags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return count
    }
}

/// Writes one DATA frame (header from nghttp2, payload from the stream's queue) into the
/// pump's output. Pauses nghttp2 once the output buffer is full.
private func sendData(
    _ session: OpaquePointer?,
    _ frame: UnsafeMutablePointer<nghttp2_frame>?,
    _ frameHeader: UnsafePointer<UInt8>?,
    _ length: Int,
    _ source: UnsafeMutablePointer<nghttp2_data_source>?,
    _ userData: UnsafeMutableRawPointer?
) -> Int32 {
    guard let handler = handler(userData), let frame, let frameHeader, var output = handler.output else {
        return callbackFailure
    }
    let streamID = cnghttp2_frame_stream_id(frame)
    guard let stream = handler.streams[streamID], stream.bufferedBytes >= length else {
        return callbackFailure  // nghttp2 asked for bytes the provider did not offer: a bug, not input
    }
    handler.output = nil  // keep `output` uniquely referenced while it grows
    output.writeBytes(UnsafeRawBufferPointer(start: frameHeader, count: 9))
    let padding = cnghttp2_frame_data_padlen(frame)
    if padding > 0 {
        output.writeInteger(UInt8(truncatingIfNeeded: padding - 1))
    }
    let writability = stream.take(length, into: &output)
    if padding > 1 {
        output.writeRepeatingByte(0, count: padding - 1)
    }
    let full = output.readableBytes >= handler.configuration.outputChunkSize
    handler.output = output
    if case .notifyWritability = writability {
        handler.events.append(.writability(stream))
    }
    if full {
        return NGHTTP2_ERR_PAUSE.rawValue  // the pump sees the full buffer
    }
    return 0
}
