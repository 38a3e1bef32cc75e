import NIOCore

/// Settings and limits of one HTTP/2 server connection (`HTTP2ServerHandler`).
///
/// The first three are announced to the client in the server's SETTINGS frame or bound what the
/// server buffers; the rest are protections against abusive peers. The defaults suit an SSE
/// gateway: many long-lived, mostly idle streams whose data flows server → client.
public struct HTTP2ServerConfiguration: Sendable, Hashable {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (`--h2-max-streams`). A client that opens more streams
    /// than this before it has acknowledged the server's SETTINGS gets those streams refused
    /// (RST_STREAM REFUSED_STREAM), the others unaffected; one that does so after acknowledging
    /// them loses the connection (nghttp2: GOAWAY PROTOCOL_ERROR). Browsers queue instead.
    public var maxConcurrentStreams: Int = 128

    /// The largest request header list accepted, counted as RFC 9113 §6.5.2 does (name + value +
    /// 32 bytes per field) and announced as SETTINGS_MAX_HEADER_LIST_SIZE. A request over it is
    /// answered `431 Request Header Fields Too Large` with END_STREAM on that stream only (the
    /// application never sees it); other streams and the connection carry on.
    ///
    /// Independently, nghttp2 accepts at most 8 CONTINUATION frames after a HEADERS frame and a
    /// single header field of at most 64 KiB; a peer that goes past those loses the connection.
    public var maxHeaderListSize: Int = 32 << 10

    /// Per-stream bound on bytes queued by `HTTP2ServerStream.write(_:)` and not yet taken by
    /// nghttp2 (`--client-buffer`): the high watermark. Over it the stream reports
    /// `isWritable == false` and its delegate hears `http2StreamWritabilityChanged`; the bytes are
    /// still kept (the application decides whether to stop writing or to reset the stream). The
    /// stream is writable again once the queue has drained to half of it (the low watermark).
    public var streamBufferLimit: Int = 1 << 20

    /// The receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE): how many bytes of request
    /// body a client may send ahead of the application. Data to the client is governed by the
    /// client's window, not this one. SSE requests have no body, so this only matters for plain
    /// proxied uploads; 256 KiB keeps uploads fast without letting one connection park much memory.
    public var initialWindowSize: Int = 256 << 10

    /// The receive window of the whole connection (raised with a WINDOW_UPDATE on stream 0 at
    /// start when above the protocol's 65,535).
    public var connectionWindowSize: Int = 1 << 20

    /// Rapid-reset protection (CVE-2023-44487): more RST_STREAM frames from the client than this
    /// per second (a token bucket with this many tokens, refilled at this rate) ends the
    /// connection with GOAWAY ENHANCE_YOUR_CALM. 0 turns the check off (nghttp2's own, looser
    /// limit still applies).
    public var maxClientResetsPerSecond: Int = 100

    /// SETTINGS and PING flood protection: more of those frames (not counting ACKs) from the
    /// client than this per second ends the connection with GOAWAY ENHANCE_YOUR_CALM. 0 turns the
    /// check off.
    public var maxControlFramesPerSecond: Int = 200

    /// How many SETTINGS ACK and PING ACK frames nghttp2 may hold unsent (a client that sends
    /// PINGs but does not read is flooding); over it nghttp2 ends the session.
    /// (`nghttp2_option_set_max_outbound_ack`; nghttp2's default is 1000.)
    public var maxOutboundAcks: Int = 100

    /// The most entries accepted in one SETTINGS frame (`nghttp2_option_set_max_settings`).
    public var maxSettingsEntries: Int = 32

    /// Graceful shutdown: after the shutdown notice (a GOAWAY with the largest stream id) and a
    /// PING, the final GOAWAY with the real last stream id is sent when the PING's ACK comes back
    /// (one round trip), or after this long at the latest.
    public var gracefulShutdownPingTimeout: TimeAmount = .seconds(1)

    /// When the connection is being closed with a GOAWAY, how long to wait for the last bytes to
    /// reach the socket before closing anyway.
    public var closeTimeout: TimeAmount = .seconds(2)

    /// How many bytes of output one pump gathers into a single buffer before handing it to the
    /// channel (the channel's writability is checked between buffers).
    public var outputChunkSize: Int = 64 << 10

    public init(
        maxConcurrentStreams: Int = 128,
        maxHeaderListSize: Int = 32 << 10,
        streamBufferLimit: Int = 1 << 20,
        initialWindowSize: Int = 256 << 10,
        connectionWindowSize: Int = 1 << 20,
        maxClientResetsPerSecond: Int = 100,
        maxControlFramesPerSecond: Int = 200,
        maxOutboundAcks: Int = 100,
        maxSettingsEntries: Int = 32,
        gracefulShutdownPingTimeout: TimeAmount = .seconds(1),
        closeTimeout: TimeAmount = .seconds(2),
        outputChunkSize: Int = 64 << 10
    ) {
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxHeaderListSize = maxHeaderListSize
        self.streamBufferLimit = streamBufferLimit
        self.initialWindowSize = initialWindowSize
        self.connectionWindowSize = connectionWindowSize
        self.maxClientResetsPerSecond = maxClientResetsPerSecond
        self.maxControlFramesPerSecond = maxControlFramesPerSecond
        self.maxOutboundAcks = maxOutboundAcks
        self.maxSettingsEntries = maxSettingsEntries
        self.gracefulShutdownPingTimeout = gracefulShutdownPingTimeout
        self.closeTimeout = closeTimeout
        self.outputChunkSize = outputChunkSize
    }

    /// The values clamped to what HTTP/2 and nghttp2 accept.
    var sanitized: HTTP2ServerConfiguration {
        var copy = self
        let maxWindow = Int(Int32.max)
        copy.maxConcurrentStreams = min(max(copy.maxConcurrentStreams, 0), maxWindow)
        copy.maxHeaderListSize = min(max(copy.maxHeaderListSize, 0), Int(UInt32.max))
        copy.streamBufferLimit = max(copy.streamBufferLimit, 0)
        copy.initialWindowSize = min(max(copy.initialWindowSize, 0), maxWindow)
        copy.connectionWindowSize = min(max(copy.connectionWindowSize, 65_535), maxWindow)
        copy.maxClientResetsPerSecond = max(copy.maxClientResetsPerSecond, 0)
        copy.maxControlFramesPerSecond = max(copy.maxControlFramesPerSecond, 0)
        copy.maxOutboundAcks = max(copy.maxOutboundAcks, 1)
        copy.maxSettingsEntries = max(copy.maxSettingsEntries, 1)
        copy.outputChunkSize = max(copy.outputChunkSize, 1024)
        return copy
    }
}
