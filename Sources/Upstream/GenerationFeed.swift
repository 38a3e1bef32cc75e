import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import SSE

/// The origin side of a private generation: the one event-stream response to a request that must
/// not be sent twice (a POST to a chat or LLM API). It parses the response and hands each read to
/// its stream, like `UpstreamSession`, but never reconnects: when the response ends, the stream
/// ends the way it did (`originFinished`, or `originBroke` when it broke off). Confined to its loop.
public final class GenerationFeed: UpstreamFeed, OriginConnectionDelegate, @unchecked Sendable {
    private enum State {
        case idle
        case streaming(OriginConnection)
        case finished
    }

    public let eventLoop: EventLoop
    private let logger: Logger
    private var parser: SSEParser
    private weak var delegate: UpstreamFeedDelegate?
    private var state: State = .idle
    /// Outputs parsed during the current read, handed over together at its end.
    private var pending: [SSEParser.Output] = []

    public init(eventLoop: EventLoop, maxEventSize: Int, logger: Logger) {
        self.eventLoop = eventLoop
        self.logger = logger
        self.parser = SSEParser(maxEventSize: maxEventSize)
    }

    /// Starts feeding `delegate` from `connection`, whose head (200, an event stream) has been read.
    public func start(delegate: UpstreamFeedDelegate, adopting connection: OriginConnection) {
        self.eventLoop.preconditionInEventLoop()
        guard case .idle = self.state else { return }
        self.delegate = delegate
        self.state = .streaming(connection)
        connection.setDelegate(self)
        delegate.upstreamConnected(isReconnect: false)
    }

    public func stop() {
        self.eventLoop.preconditionInEventLoop()
        if case .streaming(let connection) = self.state {
            connection.detachAndClose()
        }
        self.state = .finished
        self.delegate = nil
    }

    // MARK: OriginConnectionDelegate

    public func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {}

    public func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        guard case .streaming(let current) = self.state, current === connection else { return }
        do {
            try self.parser.parse(body) { output in
                self.pending.append(output)
            }
        } catch {
            // An event over --max-event-size: this response cannot be passed on whole, and it
            // is not asked for again; the client's response breaks off as an origin's would.
            self.logger.error("origin event larger than --max-event-size in a private generation; ending it")
            self.finish(connection, .originBroke)
        }
    }

    public func originConnectionReadComplete(_ connection: OriginConnection) {
        guard case .streaming(let current) = self.state, current === connection else { return }
        self.flushPending()
    }

    public func originConnectionDidEnd(_ connection: OriginConnection) {
        self.finish(connection, .originFinished)
    }

    public func originConnection(_ connection: OriginConnection, didFail error: Error) {
        self.logger.info("origin response of a private generation broke off", metadata: ["error": "\(error)"])
        self.finish(connection, .originBroke)
    }

    private func finish(_ connection: OriginConnection, _ reason: StreamEndReason) {
        guard case .streaming(let current) = self.state, current === connection else { return }
        self.flushPending()
        let delegate = self.delegate
        self.stop()
        delegate?.upstreamEnded(reason)
    }

    private func flushPending() {
        guard !self.pending.isEmpty else { return }
        let outputs = self.pending
        self.pending.removeAll(keepingCapacity: true)
        self.delegate?.upstreamReceived(outputs)
    }
}
