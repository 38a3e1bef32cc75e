import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP/1.1 client on a real socket that sends one request and records the response: the
/// head, the de-chunked body, and the SSE events and comments parsed from it.
///
/// Every accessor is a snapshot and safe from any thread. The `wait…` methods return as soon as
/// their condition holds (they are woken by each read, not by polling) and throw a
/// ``TestWaitError`` that shows the body received so far when the timeout passes first, or as
/// soon as the connection has closed without the condition being met.
///
/// The client sends the request as soon as it is connected. Unless `headers` say otherwise it
/// sends `Host: host:port` and `Accept: text/event-stream`, like a browser's `EventSource`. It
/// closes the connection itself once the response has ended, so ``isClosed`` becomes true either
/// way and ``endedCleanly`` tells an ended response from a dropped connection.
///
/// ```swift
/// let client = try await SSETestClient.connect(port: gateway.port, path: "/events", group: group)
/// defer { Task { await client.close() } }   // or `await client.close()` at the end
/// XCTAssertEqual(try await client.waitForHead().status, .ok)
/// let events = try await client.waitForEvents(count: 2)
/// XCTAssertEqual(events.map(\.id), ["1", "2"])
/// ```
public final class SSETestClient: Sendable {
    struct State {
        var head: HTTPResponseHead?
        var bodyBytes: [UInt8] = []
        var parser = TestSSEParser()
        var isClosed = false
        var endedCleanly = false
        var error: String?
    }

    private let channel: Channel
    private let state: NIOLockedValueBox<State>
    private let signal: ChangeSignal
    private let requestLine: String

    private init(channel: Channel, state: NIOLockedValueBox<State>, signal: ChangeSignal, requestLine: String) {
        self.channel = channel
        self.state = state
        self.signal = signal
        self.requestLine = requestLine
    }

    /// Connects to `host:port` and sends `method path` with `headers` (and `body`, if given).
    ///
    /// - Parameters:
    ///   - headers: request headers, sent in order; `Host` and `Accept` are added unless present.
    ///   - receiveBufferSize: `SO_RCVBUF` for the socket, set before connecting; with a small value
    ///     and ``pauseReading()`` the kernel buffers fill quickly, making a slow client.
    ///   - method: the request method (`GET` by default).
    ///   - body: a request body; `Content-Length` is added unless present.
    /// - Throws: if the connection cannot be made (within 5 s).
    public static func connect(
        host: String = "127.0.0.1",
        port: Int,
        path: String,
        headers: [(String, String)] = [],
        group: EventLoopGroup,
        receiveBufferSize: Int? = nil,
        method: HTTPMethod = .GET,
        body: String? = nil
    ) async throws -> SSETestClient {
        var requestHeaders = HTTPHeaders(headers)
        if !requestHeaders.contains(name: "Host") {
            requestHeaders.add(name: "Host", value: "\(host):\(port)")
        }
        if !requestHeaders.contains(name: "Accept") {
            requestHeaders.add(name: "Accept", value: "text/event-stream")
        }
        if let body, !requestHeaders.contains(name: "Content-Length") {
            requestHeaders.add(name: "Content-Length", value: String(body.utf8.count))
        }
        let requestHead = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: requestHeaders)

        let loop = group.next()
        let state = NIOLockedValueBox(State())
        let signal = ChangeSignal(eventLoop: loop)
        var bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let receiveBufferSize {
            bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferSize))
        }
        let channel = try await bootstrap.channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(
                    SSETestClientHandler(request: requestHead, body: body, state: state, signal: signal)
                )
            }
        }.connect(host: host, port: port).get()
        return SSETestClient(
            channel: channel,
            state: state,
            signal: signal,
            requestLine: "\(method) \(path) to \(host):\(port)"
        )
    }

    // MARK: What has been received

    /// The response head, once received.
    public var head: HTTPResponseHead? {
        self.state.withLockedValue { $0.head }
    }

    /// The whole de-chunked body received so far, decoded as UTF-8.
    public var body: String {
        self.state.withLockedValue { String(decoding: $0.bodyBytes, as: UTF8.self) }
    }

    /// The number of body bytes received so far.
    public var bodyByteCount: Int {
        self.state.withLockedValue { $0.bodyBytes.count }
    }

    /// The SSE events parsed from the body so far (blocks with at least one `data` field).
    public var events: [TestEvent] {
        self.state.withLockedValue { $0.parser.events }
    }

    /// The comment lines received so far, without the `:` and one following space.
    public var comments: [String] {
        self.state.withLockedValue { $0.parser.comments }
    }

    /// The last `retry:` value received, in milliseconds.
    public var retry: Int? {
        self.state.withLockedValue { $0.parser.retry }
    }

    /// True once the connection has closed, for whatever reason.
    public var isClosed: Bool {
        self.state.withLockedValue { $0.isClosed }
    }

    /// True if the complete response was received (the end of a chunked body, all of a
    /// `Content-Length` body, or a body delimited by the server closing). False while the
    /// response is still streaming and when the connection dropped in the middle of it.
    public var endedCleanly: Bool {
        self.state.withLockedValue { $0.endedCleanly }
    }

    /// The first error the connection reported (a reset, a malformed response), if any.
    public var error: String? {
        self.state.withLockedValue { $0.error }
    }

    // MARK: Waiting

    /// Waits for the response head. Throws if the connection closes first.
    @discardableResult
    public func waitForHead(timeout: TimeAmount = .seconds(5)) async throws -> HTTPResponseHead {
        try await self.waitUntil(timeout: timeout, what: "the response head") { $0.head != nil }
        return self.head!
    }

    /// Waits until at least `count` events have arrived and returns the first `count` of them
    /// (so that an assertion on them is not upset by a later event arriving meanwhile).
    @discardableResult
    public func waitForEvents(count: Int, timeout: TimeAmount = .seconds(5)) async throws -> [TestEvent] {
        try await self.waitUntil(timeout: timeout, what: "\(count) events") { $0.events.count >= count }
        return Array(self.events.prefix(count))
    }

    /// Waits until `condition` holds. It is checked now and again whenever bytes arrive or the
    /// connection closes; once the connection is closed and the condition is still false, the
    /// wait fails at once. The error describes the response received so far.
    public func waitUntil(
        timeout: TimeAmount = .seconds(5),
        _ condition: @Sendable (SSETestClient) -> Bool
    ) async throws {
        try await self.waitUntil(timeout: timeout, what: "a condition", condition)
    }

    /// Waits until the connection has closed (the response ended, or the connection dropped).
    public func waitForClose(timeout: TimeAmount = .seconds(5)) async throws {
        try await self.waitUntil(timeout: timeout, what: "the connection to close") { $0.isClosed }
    }

    private func waitUntil(
        timeout: TimeAmount,
        what: String,
        _ condition: (SSETestClient) -> Bool
    ) async throws {
        try await self.signal.wait(
            timeout: timeout,
            until: { condition(self) },
            hopeless: { self.isClosed },
            failure: { reason in TestWaitError("SSETestClient waiting for \(what): \(reason)\n\(self.report())") }
        )
    }

    /// A multi-line account of the response so far, for failure messages.
    public func report(maxBodyBytes: Int = 4000) -> String {
        let (head, bodyBytes, events, comments, isClosed, endedCleanly, error) = self.state.withLockedValue {
            (
                $0.head, $0.bodyBytes, $0.parser.events.count, $0.parser.comments.count, $0.isClosed, $0.endedCleanly,
                $0.error
            )
        }
        var lines = ["request: \(self.requestLine)"]
        if let head {
            let headers = head.headers.map { "\($0.name): \($0.value)" }.joined(separator: ", ")
            lines.append("response: \(head.version) \(head.status.code) \(head.status.reasonPhrase) [\(headers)]")
        } else {
            lines.append("response: no head received")
        }
        let connection =
            isClosed ? (endedCleanly ? "closed after a complete response" : "closed before the response ended") : "open"
        lines.append("connection: \(connection)\(error.map { " (error: \($0))" } ?? "")")
        lines.append("events: \(events), comments: \(comments)")
        if bodyBytes.count > maxBodyBytes {
            let tail = String(decoding: bodyBytes.suffix(maxBodyBytes), as: UTF8.self)
            lines.append("body (\(bodyBytes.count) bytes, the last \(maxBodyBytes)):\n…\(tail)")
        } else {
            lines.append("body (\(bodyBytes.count) bytes):\n\(String(decoding: bodyBytes, as: UTF8.self))")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: Control

    /// Stops reading from the socket (turns `autoRead` off) so that unread data piles up in the
    /// kernel buffers and the server sees a slow client. Returns once the option is in effect (it
    /// blocks the calling thread for that hop to the event loop, so that data sent afterwards is
    /// certainly not read); a read already under way may still deliver one more batch.
    public func pauseReading() {
        self.setAutoRead(false)
    }

    /// Starts reading again after ``pauseReading()``.
    public func resumeReading() {
        self.setAutoRead(true)
    }

    private func setAutoRead(_ on: Bool) {
        let done = self.channel.setOption(ChannelOptions.autoRead, value: on)
        if !self.channel.eventLoop.inEventLoop {
            // Synchronous by design (tests call it between sends); a short, bounded hop.
            try? done.wait()
        }
    }

    /// Closes the connection and waits until it is closed. Safe to call more than once.
    public func close() async {
        try? await self.channel.close()
        // Wait for the close to be fully processed so that `isClosed` is true afterwards.
        try? await self.channel.closeFuture.get()
    }
}
