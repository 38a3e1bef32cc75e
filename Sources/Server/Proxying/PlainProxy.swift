import LifelineCore
import NIOCore
import NIOHTTP1
import Upstream

/// Who a `PlainProxy` reports to: the exchange of its client.
protocol PlainProxyOwner: AnyObject {
    /// The response is over (complete, failed, or cut short).
    func proxyFinished(_ outcome: ExchangeOutcome)
    /// A plain GET was answered with an event stream (`curl -N` sends no
    /// `Accept: text/event-stream`): the owner makes it a stream subscription.
    func proxyAnsweredWithEventStream(_ head: HTTPResponseHead, connection: OriginConnection)
    /// Another request (a POST to a chat API) was answered with an event stream: the owner makes
    /// it a private generation (heartbeats in pauses; never requested again).
    func proxyAnsweredWithPrivateGeneration(_ head: HTTPResponseHead, connection: OriginConnection)
}

/// A request answered with the origin's response as it is, streamed both ways with backpressure:
/// the request body is read from the client only as fast as the origin takes it, and the
/// response body only as fast as the client takes it. Memory per exchange is bounded by the
/// socket buffers and `OriginConnection.pendingLimit`, whatever either side sends.
///
/// Holds its client weakly; confined to the client's event loop.
final class PlainProxy: OriginConnectionDelegate {
    enum State {
        /// Waiting for the origin's response head.
        case awaitingHead
        /// The head went to the client; the body follows.
        case streamingBody
        case finished
    }

    /// Set at once by each initializer (implicitly unwrapped only so that `self` can be its delegate).
    private var connection: OriginConnection!
    private weak var responder: ClientResponder?
    private weak var owner: PlainProxyOwner?
    private let shared: GatewayShared
    /// A GET whose answer turns out to be an event stream becomes a stream subscription.
    private let mayBecomeStream: Bool
    /// Any other request whose answer is an event stream becomes a private generation (once its
    /// body has gone to the origin whole: the generation takes the connection over).
    private let mayBecomeGeneration: Bool
    private(set) var state: State
    private var requestEnded: Bool
    private var bodyPaused = false

    /// Sends `request` to its origin. `requestEnded`: the whole request (no body) has been read.
    init(
        _ request: ClientRequest,
        requestEnded: Bool,
        responder: ClientResponder,
        owner: PlainProxyOwner,
        shared: GatewayShared
    ) {
        self.responder = responder
        self.owner = owner
        self.shared = shared
        // A GET on an unshared route is the client's own, like a POST.
        let isOwnGet = request.head.method == .GET && request.isUnshared
        self.mayBecomeStream = request.head.method == .GET && !isOwnGet
        self.mayBecomeGeneration = isOwnGet || (request.head.method != .GET && request.head.method != .HEAD)
        self.state = .awaitingHead
        self.requestEnded = requestEnded
        self.connection = shared.openOrigin(
            request,
            head: isOwnGet ? request.ownStreamHead() : request.upstreamHead(forStream: false),
            on: responder.eventLoop,
            delegate: self
        )
        if requestEnded {
            self.connection.endRequest()
        } else if request.head.headers[canonicalForm: "expect"].contains(where: { $0.lowercased() == "100-continue" }) {
            responder.continueRequestBody()
        }
    }

    /// Takes over a connection whose head has been read (the origin's answer to a stream opening
    /// that was not an event stream): the head goes to the client now.
    init(adopting connection: OriginConnection, head: HTTPResponseHead, responder: ClientResponder, owner: PlainProxyOwner, shared: GatewayShared) {
        self.connection = connection
        self.responder = responder
        self.owner = owner
        self.shared = shared
        self.mayBecomeStream = false
        self.mayBecomeGeneration = false
        self.state = .awaitingHead
        self.requestEnded = true
        connection.setDelegate(self)
        self.writeHead(head)
    }

    // MARK: From the client

    func receiveBody(_ body: ByteBuffer) {
        guard !self.requestEnded, self.state != .finished else { return }
        self.connection.sendBody(body)
        if !self.connection.isWritable, !self.bodyPaused {
            self.bodyPaused = true
            self.responder?.pauseRequestBody()
        }
    }

    func receiveEnd() {
        guard !self.requestEnded else { return }
        self.requestEnded = true
        self.connection.endRequest()
    }

    func clientWritabilityChanged() {
        if self.responder?.isWritable ?? false {
            self.connection.resumeReading()
        }
    }

    /// The client is gone: so is the origin request.
    func clientGone() {
        self.state = .finished
        self.connection.detachAndClose()
    }

    // MARK: OriginConnectionDelegate

    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        guard self.state == .awaitingHead else { return }
        if self.mayBecomeStream, EventStreamHead.isUsable(head) {
            self.state = .finished
            self.owner?.proxyAnsweredWithEventStream(head, connection: connection)
            return
        }
        if self.mayBecomeGeneration, self.requestEnded, EventStreamHead.isUsable(head) {
            self.state = .finished
            self.owner?.proxyAnsweredWithPrivateGeneration(head, connection: connection)
            return
        }
        self.writeHead(head)
    }

    private func writeHead(_ head: HTTPResponseHead) {
        self.state = .streamingBody
        self.responder?.writeHead(status: head.status, headers: head.headers, isEventStream: false)
        self.responder?.flush()
    }

    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        guard self.state == .streamingBody, let responder = self.responder else { return }
        responder.writeBody(body)
        if !responder.isWritable {
            connection.pauseReading()
        }
    }

    func originConnectionReadComplete(_ connection: OriginConnection) {
        guard self.state == .streamingBody else { return }
        self.responder?.flush()
    }

    func originConnectionWritabilityChanged(_ connection: OriginConnection) {
        guard self.bodyPaused, connection.isWritable else { return }
        self.bodyPaused = false
        self.responder?.resumeRequestBody()
    }

    func originConnectionDidEnd(_ connection: OriginConnection) {
        guard self.state == .streamingBody else { return }
        self.state = .finished
        self.resumeIfPaused()
        self.owner?.proxyFinished(.completed)
        self.responder?.endResponse(closeConnection: !self.requestEnded)
    }

    func originConnection(_ connection: OriginConnection, didFail error: Error) {
        let state = self.state
        guard state != .finished else { return }
        self.state = .finished
        self.resumeIfPaused()
        // A response that went out before the request's body was read closes the connection:
        // the rest of the body would otherwise be read as the next request.
        let close = !self.requestEnded
        switch state {
        case .streamingBody:
            // The body was cut short: so is the client's response.
            self.owner?.proxyFinished(.originFailedMidResponse)
            self.responder?.abortResponse()
        case .awaitingHead:
            let counters = self.shared.metrics.counters(for: connection.eventLoop)
            let refusal: RequestRefusal
            if case OriginConnection.Failure.headTimeout = error {
                refusal = .originTimeout
            } else {
                refusal = .originUnreachable
                self.shared.logger.info("origin unreachable", metadata: ["error": "\(error)"])
            }
            counters.values.refused[refusal.reason] += 1
            self.owner?.proxyFinished(.refused(refusal))
            self.responder?.respond(status: refusal.status, body: refusal.body, closeConnection: close)
        case .finished:
            break
        }
    }

    private func resumeIfPaused() {
        if self.bodyPaused {
            self.bodyPaused = false
            self.responder?.resumeRequestBody()
        }
    }
}
