import NIOCore
import NIOHTTP1

/// The request side of one HTTP/1.1 connection as a pure state machine: which request is being
/// answered, what is parked behind it, whether reads may flow, how a response is framed, and what
/// happens when it ends (keep-alive, pipelining, HEAD, HTTP/1.0). `HTTP1ServerHandler` feeds it
/// request parts and response events and carries out what it returns.
///
/// Memory stays bounded whatever the client sends: as SwiftNIO's `HTTPServerPipelineHandler`
/// does, reads are held (`readRequested` answers false) while a pipelined request is parked, so at
/// most what one read brought is parked; and while a request body waits for its destination.
struct HTTP1ConnectionStateMachine {
    enum State {
        /// Waiting for a request head. `droppingRequestEnd`: the last response went out before the
        /// end of its (bodiless) request was read; that end is dropped when it comes.
        case awaitingHead(droppingRequestEnd: Bool)
        /// A request is being answered.
        case exchanging(Exchange)
        /// The connection is closing: nothing more is read or answered.
        case closed
    }

    /// The request being answered and its response's framing.
    struct Exchange {
        var version: HTTPVersion
        var isHEAD: Bool
        var keepAlive: Bool
        /// The request announced a body (`Content-Length` other than 0, or `Transfer-Encoding`).
        var hasBody: Bool
        var requestEnded = false
        /// The body waits for its destination: reads are held.
        var bodyPaused = false
        /// Set once the response head is written.
        var framing: Framing?
    }

    /// How a response's body is delimited.
    struct Framing: Equatable {
        /// Body bytes go out as HTTP/1.1 chunks.
        var chunked = false
        /// No body (HEAD, 1xx, 204, 304).
        var bodyless = false
        /// The connection closes after this response (HTTP/1.0 without length, `Connection: close`).
        var closeAfter = false
        var isEventStream = false
    }

    enum PartAction: Equatable {
        /// A new request: start answering it.
        case startExchange(HTTPRequestHead)
        case deliverBody(ByteBuffer)
        case deliverEnd
        /// Pipelined behind the current response; held until it ends.
        case park
        case drop
    }

    enum EndAction: Equatable {
        case close
        /// Wait for the next request: first handle `replay` (what was parked) in order, then pass
        /// on a held read if `passHeldRead`.
        case awaitNext(replay: [HTTPServerRequestPart], passHeldRead: Bool)
    }

    private(set) var state = State.awaitingHead(droppingRequestEnd: false)
    /// Parts of requests pipelined behind the current one, in order.
    private(set) var parked: [HTTPServerRequestPart] = []
    /// A `read()` was held back.
    private var readPending = false
    /// The gateway is shutting down: no request after the current one.
    private var shuttingDown = false

    // MARK: Request parts

    mutating func receive(_ part: HTTPServerRequestPart) -> PartAction {
        switch (self.state, part) {
        case (.closed, _):
            return .drop
        case (.exchanging, _) where !self.parked.isEmpty:
            self.parked.append(part)
            return .park
        case (.exchanging(let exchange), .body(let body)) where !exchange.requestEnded:
            return .deliverBody(body)
        case (.exchanging(var exchange), .end) where !exchange.requestEnded:
            exchange.requestEnded = true
            self.state = .exchanging(exchange)
            return .deliverEnd
        case (.exchanging, _):
            // A request pipelined behind the current one (its head, or the parts that follow).
            self.parked.append(part)
            return .park
        case (.awaitingHead, .head(let head)):
            self.state = .exchanging(
                Exchange(
                    version: head.version,
                    isHEAD: head.method == .HEAD,
                    keepAlive: head.isKeepAlive,
                    hasBody: Self.announcesBody(head)
                )
            )
            return .startExchange(head)
        case (.awaitingHead(droppingRequestEnd: true), .end):
            self.state = .awaitingHead(droppingRequestEnd: false)
            return .drop
        case (.awaitingHead, .body), (.awaitingHead, .end):
            return .drop
        }
    }

    static func announcesBody(_ head: HTTPRequestHead) -> Bool {
        !head.headers["transfer-encoding"].isEmpty || head.headers["content-length"].contains { $0 != "0" }
    }

    // MARK: Reads

    /// The channel asks to read: true to pass it on now; false to hold it until reads may flow.
    mutating func readRequested() -> Bool {
        if self.readsHeld {
            self.readPending = true
            return false
        }
        return true
    }

    private var readsHeld: Bool {
        if !self.parked.isEmpty { return true }
        if case .exchanging(let exchange) = self.state { return exchange.bodyPaused }
        return false
    }

    /// The request body's destination is not taking bytes.
    mutating func pauseBody() {
        guard case .exchanging(var exchange) = self.state else { return }
        exchange.bodyPaused = true
        self.state = .exchanging(exchange)
    }

    /// Returns true when a held read must be passed on now.
    mutating func resumeBody() -> Bool {
        guard case .exchanging(var exchange) = self.state, exchange.bodyPaused else { return false }
        exchange.bodyPaused = false
        self.state = .exchanging(exchange)
        return self.takeHeldRead()
    }

    private mutating func takeHeldRead() -> Bool {
        guard self.readPending, !self.readsHeld else { return false }
        self.readPending = false
        return true
    }

    // MARK: Responses

    /// The response head is going out: how its body is framed, and the headers that says
    /// (`Transfer-Encoding`, `Connection`). Nil when there is no request to answer or its head
    /// already went out.
    mutating func responseHead(
        status: HTTPResponseStatus,
        hasContentLength: Bool,
        isEventStream: Bool
    ) -> (framing: Framing, addHeaders: [(String, String)])? {
        guard case .exchanging(var exchange) = self.state, exchange.framing == nil else { return nil }
        var framing = Framing(closeAfter: !exchange.keepAlive || self.shuttingDown, isEventStream: isEventStream)
        var headers: [(String, String)] = []
        if isEventStream {
            // An event stream has no length: chunked for HTTP/1.1, until close for HTTP/1.0.
            if exchange.version == .http1_1 {
                framing.chunked = true
            } else {
                framing.closeAfter = true
            }
        } else {
            framing.bodyless = exchange.isHEAD || status.code < 200 || status == .noContent || status == .notModified
            if framing.bodyless || hasContentLength {
                // As the origin sent it (a HEAD answer keeps its Content-Length).
            } else if exchange.version == .http1_1 {
                framing.chunked = true
            } else {
                framing.closeAfter = true
            }
        }
        if framing.chunked {
            headers.append(("Transfer-Encoding", "chunked"))
        }
        if framing.closeAfter {
            headers.append(("Connection", "close"))
        }
        exchange.framing = framing
        self.state = .exchanging(exchange)
        return (framing, headers)
    }

    /// The current response's framing, once its head went out.
    var framing: Framing? {
        if case .exchanging(let exchange) = self.state { return exchange.framing }
        return nil
    }

    /// Whether the current response will close the connection (the client asked, HTTP/1.0 without
    /// keep-alive, a framing without length, or shutdown).
    var closesAfterResponse: Bool {
        guard case .exchanging(let exchange) = self.state else { return true }
        return exchange.framing?.closeAfter ?? (!exchange.keepAlive || self.shuttingDown)
    }

    /// Whether the connection can carry nothing but the current event stream any more: its
    /// request was read to the end and nothing is parked behind it. The request decoder can go.
    var carriesOnlyTheEventStream: Bool {
        guard case .exchanging(let exchange) = self.state else { return false }
        return exchange.requestEnded && self.parked.isEmpty && (exchange.framing?.isEventStream ?? false)
    }

    /// An `Expect: 100-continue` may be answered: HTTP/1.1, no head sent, body not yet read.
    var mayContinue: Bool {
        guard case .exchanging(let exchange) = self.state else { return false }
        return exchange.version == .http1_1 && exchange.framing == nil && !exchange.requestEnded
    }

    /// The response is complete (or the gateway answered on its own).
    /// - Parameters:
    ///   - closeRequested: the response asked to close the connection.
    ///   - streamingOnly: the request decoder is gone; no request can follow.
    mutating func responseEnded(closeRequested: Bool, streamingOnly: Bool) -> EndAction {
        guard case .exchanging(let exchange) = self.state else { return .close }
        // A response that went out before its request's body was read closes the connection:
        // reading and dropping a body that may never end is not worth a connection.
        let unreadBody = !exchange.requestEnded && exchange.hasBody
        if closeRequested || (exchange.framing?.closeAfter ?? false) || self.shuttingDown || streamingOnly || unreadBody {
            self.state = .closed
            return .close
        }
        self.state = .awaitingHead(droppingRequestEnd: !exchange.requestEnded)
        let replay = self.parked
        self.parked.removeAll()
        return .awaitNext(replay: replay, passHeldRead: self.takeHeldRead())
    }

    /// The response was cut short (or the connection failed): close.
    mutating func responseAborted() {
        self.state = .closed
    }

    /// The gateway is shutting down: true when the connection should close now (it is between
    /// requests); otherwise it closes after the current response.
    mutating func shutdown() -> Bool {
        self.shuttingDown = true
        if case .awaitingHead = self.state {
            self.state = .closed
            return true
        }
        return false
    }

    /// The connection is gone.
    mutating func closed() {
        self.state = .closed
        self.parked.removeAll()
    }

    var isAwaitingHead: Bool {
        if case .awaitingHead = self.state { return true }
        return false
    }
}
