import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP/1.1 origin on 127.0.0.1 whose answer to each request is up to the test: a closure
/// gets the request and an ``OriginResponder`` with which to send a head, body chunks, an end,
/// or to cut the connection. It plays misbehaving and controllable origins for gateway tests.
///
/// The handler runs on the connection's event loop and must not block; it may answer at once or
/// keep the responder and answer later from any thread. Every request is recorded in order.
///
/// For the common SSE case, ``sseHandler(status:headers:prelude:)`` answers every request with
/// an open `text/event-stream` response, and ``broadcast(_:)`` pushes text to all of them:
///
/// ```swift
/// let origin = try await ScriptedOrigin.start(group: group, handler: ScriptedOrigin.sseHandler())
/// // ... start the gateway against origin.port, connect a client through it ...
/// try await origin.waitForStreams(count: 1)     // the gateway's upstream response is open
/// origin.broadcast("id: 1\ndata: a\n\n")
/// origin.closeAllConnections()                  // make the gateway reconnect
/// try await origin.waitForRequests(count: 2)
/// XCTAssertEqual(origin.requests[1].lastEventID, "1")
/// try await origin.stop()
/// ```
public final class ScriptedOrigin: Sendable {
    private let serverChannel: Channel
    private let registry: ScriptedOriginRegistry

    /// The port the origin listens on (127.0.0.1).
    public let port: Int

    private init(serverChannel: Channel, registry: ScriptedOriginRegistry, port: Int) {
        self.serverChannel = serverChannel
        self.registry = registry
        self.port = port
    }

    /// Starts listening on `127.0.0.1:port` (0 picks a free port; `SO_REUSEADDR` lets a test stop
    /// an origin and start another on the same port at once, to play an origin restart).
    public static func start(
        port: Int = 0,
        group: EventLoopGroup,
        handler: @escaping @Sendable (Request, OriginResponder) -> Void
    ) async throws -> ScriptedOrigin {
        let registry = ScriptedOriginRegistry(signal: ChangeSignal(eventLoop: group.next()), handler: handler)
        let serverChannel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                guard registry.connectionOpened(channel) else {
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in registry.connectionClosed(channel) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScriptedOriginHandler(registry: registry))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
        guard let boundPort = serverChannel.localAddress?.port else {
            try? await serverChannel.close()
            throw ChannelError.unknownLocalAddress
        }
        return ScriptedOrigin(serverChannel: serverChannel, registry: registry, port: boundPort)
    }

    /// A handler for the common SSE case: answers every request with `status` and `headers` and
    /// leaves the response open; then sends `prelude(request)` if it is not empty (e.g. a replay
    /// chosen by the request's `Last-Event-ID`). Push events with ``broadcast(_:)`` or through
    /// ``responders``.
    public static func sseHandler(
        status: Int = 200,
        headers: [(String, String)] = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
        prelude: @escaping @Sendable (Request) -> String = { _ in "" }
    ) -> @Sendable (Request, OriginResponder) -> Void {
        { request, responder in
            responder.sendHead(status: status, headers: headers)
            let text = prelude(request)
            if !text.isEmpty {
                responder.send(text)
            }
        }
    }

    // MARK: What happened

    /// Every request received so far, in order of arrival.
    public var requests: [Request] {
        self.registry.state.withLockedValue { $0.requests }
    }

    /// The responder of every request so far, in the same order as ``requests``.
    public var responders: [OriginResponder] {
        self.registry.state.withLockedValue { $0.responders }
    }

    /// The responses currently streaming: head sent, not ended, connection open.
    public var streamingResponders: [OriginResponder] {
        self.responders.filter(\.isStreaming)
    }

    /// The number of client connections currently open.
    public var openConnectionCount: Int {
        self.registry.state.withLockedValue { $0.connections.count }
    }

    // MARK: Waiting

    /// Waits until at least `count` requests have arrived in total.
    public func waitForRequests(count: Int, timeout: TimeAmount = .seconds(5)) async throws {
        try await self.waitUntil(timeout: timeout, what: "\(count) requests") { $0.requests.count >= count }
    }

    /// Waits until at least `count` responses are streaming at the same time (see
    /// ``streamingResponders``); only after that does ``broadcast(_:)`` reach them.
    public func waitForStreams(count: Int, timeout: TimeAmount = .seconds(5)) async throws {
        try await self.waitUntil(timeout: timeout, what: "\(count) streaming responses") {
            $0.streamingResponders.count >= count
        }
    }

    /// Waits until `condition` holds; it is re-checked whenever a request arrives, a head is
    /// sent, a response ends, a connection opens or closes, or its writability changes.
    public func waitUntil(
        timeout: TimeAmount = .seconds(5),
        _ condition: @Sendable (ScriptedOrigin) -> Bool
    ) async throws {
        try await self.waitUntil(timeout: timeout, what: "a condition", condition)
    }

    private func waitUntil(timeout: TimeAmount, what: String, _ condition: (ScriptedOrigin) -> Bool) async throws {
        try await self.registry.signal.wait(
            timeout: timeout,
            until: { condition(self) },
            failure: { reason in TestWaitError("ScriptedOrigin waiting for \(what): \(reason)\n\(self.report())") }
        )
    }

    /// A multi-line account of the requests and connections so far, for failure messages.
    public func report() -> String {
        let (requests, responders, connections) = self.registry.state.withLockedValue {
            ($0.requests, $0.responders, $0.connections.count)
        }
        var lines = ["port \(self.port), open connections: \(connections), requests: \(requests.count)"]
        for (index, (request, responder)) in zip(requests, responders).enumerated() {
            let state =
                responder.hasEnded
                ? "ended"
                : (responder.isStreaming ? "streaming" : (responder.headSent ? "connection closed" : "no head sent"))
            lines.append("  #\(index + 1) \(request) -> \(state)")
        }
        return lines.joined(separator: "\n")
    }

    // MARK: Acting on all responses

    /// Sends `text` to every response currently streaming, e.g. `"id: 3\ndata: c\n\n"`.
    /// Returns how many responses it was sent to.
    @discardableResult
    public func broadcast(_ text: String) -> Int {
        let targets = self.streamingResponders
        for responder in targets {
            responder.send(text)
        }
        return targets.count
    }

    /// Ends every streaming response cleanly (terminating chunk), as a graceful origin would.
    public func endAllStreams() {
        for responder in self.streamingResponders {
            responder.end()
        }
    }

    /// Closes every open connection abruptly but keeps listening: an origin that drops its
    /// clients, so that they reconnect.
    public func closeAllConnections() {
        let open = self.registry.state.withLockedValue { Array($0.connections.values) }
        for channel in open {
            channel.close(promise: nil)
        }
    }

    /// Closes the listener and all connections (abruptly, without ending responses). Idempotent.
    public func stop() async throws {
        let open = self.registry.state.withLockedValue { state -> [Channel] in
            state.isStopping = true
            return Array(state.connections.values)
        }
        do {
            try await self.serverChannel.close()
        } catch ChannelError.alreadyClosed {
            // Stopped before.
        }
        for channel in open {
            try? await channel.close()
        }
    }
}
