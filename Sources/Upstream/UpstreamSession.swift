import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import SSE
import TLS

/// The origin side of one stream: keeps an event-stream response open, parses it, and when the
/// connection ends reconnects by itself with `Last-Event-ID`, with backoff. Confined to its loop.
public final class UpstreamSession: UpstreamFeed, OriginConnectionDelegate, @unchecked Sendable {
    public struct Configuration: Sendable {
        public var reconnectMin: TimeAmount
        public var reconnectMax: TimeAmount
        /// Reconnect when the origin sends no byte for this long (nil: never).
        public var idleTimeout: TimeAmount?
        /// End the stream when the origin has been unreachable this long (nil: never).
        public var giveUp: TimeAmount?
        public var maxEventSize: Int
        public var connectTimeout: TimeAmount
        /// Give up on a connection whose response head has not come this long after it opened.
        public var headTimeout: TimeAmount
        /// Reconnection time after clean ends, `retry:` clamping, and when the backoff resets.
        public var pacing = UpstreamPacing()
        /// For https origins: trust store and verification.
        public var tls: TLSClientContext?
        /// How connections are made (sockets; in-memory channels in tests).
        public var connector: OriginConnector = .sockets

        public init(
            reconnectMin: TimeAmount = .milliseconds(100),
            reconnectMax: TimeAmount = .seconds(10),
            idleTimeout: TimeAmount? = nil,
            giveUp: TimeAmount? = nil,
            maxEventSize: Int = 1 << 20,
            connectTimeout: TimeAmount = .seconds(5),
            headTimeout: TimeAmount = .seconds(30)
        ) {
            self.reconnectMin = reconnectMin
            self.reconnectMax = reconnectMax
            self.idleTimeout = idleTimeout
            self.giveUp = giveUp
            self.maxEventSize = maxEventSize
            self.connectTimeout = connectTimeout
            self.headTimeout = headTimeout
        }
    }

    public let eventLoop: EventLoop
    private let target: OriginTarget
    private let requestHead: HTTPRequestHead
    private let configuration: Configuration
    private let logger: Logger
    private var machine: UpstreamSessionStateMachine
    private var parser: SSEParser
    private weak var delegate: UpstreamFeedDelegate?
    private var connection: OriginConnection?
    private var reconnectTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    /// The idle timer closed the connection: its end is counted as an idle timeout.
    private var closingForIdleness = false
    /// What the origin answered instead of an event stream, for the attempt's failure reason.
    private var refusedAnswer: String?
    private var lastByteAt: NIODeadline = .uptimeNanoseconds(0)
    /// Outputs parsed during the current read, handed over together at the end of the read.
    private var pending: [SSEParser.Output] = []
    private var stopped = false
    /// Cookies the origin set on this stream's responses, sent on its later requests.
    private var cookies: StreamCookieJar
    /// The current connection hit an oversized event; the rest of its bytes are ignored.
    private var connectionFailed = false
    /// Injected in tests for deterministic jitter.
    var random: () -> Double = { Double.random(in: 0..<1) }

    public init(
        target: OriginTarget,
        requestHead: HTTPRequestHead,
        resumeID: String?,
        eventLoop: EventLoop,
        configuration: Configuration,
        keepsOriginCookies: Bool = true,
        logger: Logger
    ) {
        self.cookies = StreamCookieJar(isEnabled: keepsOriginCookies)
        self.target = target
        self.requestHead = requestHead
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.logger = logger
        self.parser = SSEParser(maxEventSize: configuration.maxEventSize, lastEventID: resumeID ?? "")
        self.machine = UpstreamSessionStateMachine(
            backoff: ReconnectBackoff(minimum: configuration.reconnectMin, maximum: configuration.reconnectMax),
            giveUp: configuration.giveUp,
            pacing: configuration.pacing
        )
    }

    /// Starts feeding `delegate`.
    /// - Parameters:
    ///   - connection: the first connection, already answered 200 with an event stream (the
    ///     rest of its body is still to come). Nil when that first request failed to connect:
    ///     the session then starts by waiting out a backoff.
    ///   - setCookies: the `Set-Cookie` lines of that first connection's response.
    public func start(delegate: UpstreamFeedDelegate, adopting connection: OriginConnection?, setCookies: [String] = []) {
        self.eventLoop.preconditionInEventLoop()
        self.delegate = delegate
        self.cookies.store(setCookie: setCookies)
        if let connection {
            self.connection = connection
            connection.setDelegate(self)
            self.lastByteAt = self.eventLoop.now
            self.armIdleTimer()
        }
        self.apply(self.machine.start(adopted: connection != nil, now: self.eventLoop.now, random: self.random()))
    }

    public func stop() {
        self.eventLoop.preconditionInEventLoop()
        guard !self.stopped else { return }
        self.stopped = true
        self.machine.stop()
        self.reconnectTimer?.cancel()
        self.reconnectTimer = nil
        self.idleTimer?.cancel()
        self.idleTimer = nil
        self.connection?.detachAndClose()
        self.connection = nil
        self.delegate = nil
    }

    /// The id a reconnect resumes from.
    public var resumeID: String { self.parser.lastEventID }

    private func apply(_ action: UpstreamSessionStateMachine.Action) {
        switch action {
        case .none:
            break
        case .connect:
            self.connect()
        case .notifyConnected(let isReconnect):
            self.delegate?.upstreamConnected(isReconnect: isReconnect)
        case .closeConnection:
            self.connection?.close()
        case .scheduleReconnect(let delay):
            self.reconnectTimer?.cancel()
            self.reconnectTimer = self.eventLoop.scheduleTask(in: delay) { [self] in
                self.reconnectTimer = nil
                self.apply(self.machine.reconnectDue())
            }
        case .end(let reason):
            let delegate = self.delegate
            self.stop()
            delegate?.upstreamEnded(reason)
        }
    }

    private func connect() {
        var head = self.requestHead
        let resumeID = self.parser.lastEventID
        if resumeID.isEmpty {
            head.headers.remove(name: "Last-Event-ID")
        } else {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: resumeID)
        }
        if !self.cookies.isEmpty, let cookie = self.cookies.header(merging: head.headers["cookie"].isEmpty ? nil : head.headers["cookie"].joined(separator: "; ")) {
            head.headers.replaceOrAdd(name: "Cookie", value: cookie)
        }
        self.logger.debug("connecting upstream", metadata: ["last-event-id": "\(resumeID)"])
        let connection = OriginConnection.open(
            to: self.target,
            head: head,
            on: self.eventLoop,
            connectTimeout: self.configuration.connectTimeout,
            headTimeout: self.configuration.headTimeout,
            tls: self.configuration.tls,
            connector: self.configuration.connector,
            delegate: self
        )
        connection.endRequest()
        self.connection = connection
        self.lastByteAt = self.eventLoop.now
        self.armIdleTimer()
    }

    // MARK: Idle timeout: one timer per session, moved at most once per timeout period.

    private func armIdleTimer() {
        guard let timeout = self.configuration.idleTimeout, timeout > .zero, self.idleTimer == nil else { return }
        self.idleTimer = self.eventLoop.scheduleTask(deadline: self.lastByteAt + timeout) { [self] in
            self.idleTimer = nil
            guard let connection = self.connection else { return }
            if self.eventLoop.now - self.lastByteAt >= timeout {
                self.logger.info("upstream idle timeout; reconnecting", metadata: ["timeout": "\(timeout)"])
                self.closingForIdleness = true
                connection.close()
            } else {
                self.armIdleTimer()
            }
        }
    }

    // MARK: OriginConnectionDelegate

    public func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        guard connection === self.connection else { return }
        self.lastByteAt = self.eventLoop.now
        self.cookies.store(setCookie: head.headers["set-cookie"])
        var isEventStream = EventStreamHead.hasEventStreamType(head)
        if isEventStream, EventStreamHead.isEncoded(head) {
            // Asked for identity and got an encoded body: unreadable as events, so an error, not
            // a silently empty stream.
            self.logger.error("origin sent an encoded event stream despite Accept-Encoding: identity; retrying")
            isEventStream = false
        }
        if head.status == .ok && isEventStream {
            self.delegate?.upstreamResponseHeaders(SharedResponseHeaders.filter(head.headers))
        } else if head.status != .noContent {
            self.logger.info("origin answered a reconnect with \(head.status.code); retrying")
            self.refusedAnswer = head.status == .ok ? "origin answered 200 without text/event-stream" : "origin answered \(head.status.code)"
        }
        self.apply(self.machine.responseHead(status: Int(head.status.code), isEventStream: isEventStream, now: self.eventLoop.now))
    }

    public func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        guard connection === self.connection, !self.stopped, !self.connectionFailed else { return }
        // Only an accepted event stream is parsed: the body of an answer that was refused (a 503
        // page, a 200 that is not text/event-stream) may come in the same read as its head,
        // before the close takes effect, and must not become events or a `retry:`.
        guard case .streaming = self.machine.state else { return }
        self.lastByteAt = self.eventLoop.now
        do {
            try self.parser.parse(body) { output in
                self.pending.append(output)
            }
        } catch {
            self.logger.error(
                "origin event larger than --max-event-size; reconnecting",
                metadata: ["limit": "\(self.configuration.maxEventSize)"]
            )
            self.flushPending()
            self.connectionFailed = true
            self.parser.startNewStreamSkippingCurrentEvent()
            connection.close()
        }
    }

    public func originConnectionReadComplete(_ connection: OriginConnection) {
        guard connection === self.connection else { return }
        self.flushPending()
    }

    public func originConnectionDidEnd(_ connection: OriginConnection) {
        self.connectionEnded(connection, reason: "origin ended the response", cleanEnd: true)
    }

    public func originConnection(_ connection: OriginConnection, didFail error: Error) {
        self.connectionEnded(connection, reason: "\(error)", cleanEnd: false)
    }

    private func connectionEnded(_ connection: OriginConnection, reason: String, cleanEnd: Bool) {
        guard connection === self.connection, !self.stopped else { return }
        self.flushPending()
        self.connection = nil
        self.idleTimer?.cancel()
        self.idleTimer = nil
        // A new connection is a new stream for the parser: an incomplete event is discarded,
        // the last event id is kept (or moved past an oversized event, see above).
        if self.connectionFailed {
            self.connectionFailed = false
        } else {
            self.parser.startNewStream()
        }
        let wasStreaming: Bool
        if case .streaming = self.machine.state { wasStreaming = true } else { wasStreaming = false }
        let action = self.machine.connectionEnded(now: self.eventLoop.now, random: self.random(), cleanEnd: cleanEnd)
        let kind: UpstreamDisconnect = cleanEnd ? .ended : self.closingForIdleness ? .idleTimeout : .dropped
        self.closingForIdleness = false
        if wasStreaming, case .scheduleReconnect = action {
            self.delegate?.upstreamDisconnected(reason: kind == .idleTimeout ? "no byte within --upstream-idle-timeout" : reason, kind: kind)
        } else {
            self.logger.debug("upstream attempt failed", metadata: ["reason": "\(reason)"])
            if case .scheduleReconnect = action {
                self.delegate?.upstreamAttemptFailed(reason: self.refusedAnswer ?? reason)
            }
        }
        self.refusedAnswer = nil
        self.apply(action)
    }

    private func flushPending() {
        guard !self.pending.isEmpty else { return }
        let outputs = self.pending
        self.pending.removeAll(keepingCapacity: true)
        for output in outputs {
            switch output {
            case .event:
                break
            case .retry(let milliseconds):
                self.machine.originRetry(milliseconds: milliseconds)
            }
        }
        self.delegate?.upstreamReceived(outputs)
    }

    /// `text/event-stream`, with or without parameters such as `charset`.
}
