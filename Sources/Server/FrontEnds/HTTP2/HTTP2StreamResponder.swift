import HTTP2
import LifelineCore
import NIOCore
import NIOHTTP1
import Upstream

/// One HTTP/2 request stream as a `ClientResponder`.
final class HTTP2StreamResponder: ClientResponder, HTTP2ServerStreamDelegate {
    let stream: HTTP2ServerStream
    var exchange: ClientExchange?
    private unowned let frontEnd: HTTP2FrontEnd
    let eventLoop: EventLoop
    let clientScheme: String
    let clientAddress: String?
    private var finished = false
    /// For the stream's access-log line.
    let startedAt: NIODeadline
    var bytesSent = 0

    init(stream: HTTP2ServerStream, frontEnd: HTTP2FrontEnd, eventLoop: EventLoop, scheme: String, clientAddress: String?) {
        self.startedAt = eventLoop.now
        self.stream = stream
        self.frontEnd = frontEnd
        self.eventLoop = eventLoop
        self.clientScheme = scheme
        self.clientAddress = clientAddress
        stream.delegate = self
    }

    var streamID: Int32 { self.stream.streamID }
    var allocator: ByteBufferAllocator { ByteBufferAllocator() }
    var isWritable: Bool { self.stream.isWritable }

    /// Headers an HTTP/2 response must not carry (RFC 9113 §8.2.2).
    private static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    ]

    func writeHead(status: HTTPResponseStatus, headers: HTTPHeaders, isEventStream: Bool) {
        let fields = HopByHopHeaders.removing(from: headers)
            .filter { !Self.connectionSpecific.contains($0.name.lowercased()) }
            .map { ($0.name.lowercased(), $0.value) }
        self.stream.sendHead(status: status, headers: fields)
    }

    func writeShared(_ bytes: ByteBuffer) {
        self.frontEnd.countSent(bytes.readableBytes, by: self)
        self.stream.write(bytes)
    }

    func writeSharedAndFlush(_ bytes: ByteBuffer) {
        self.writeShared(bytes)
        self.stream.flush()
    }

    func writeBody(_ bytes: ByteBuffer) {
        self.frontEnd.countSent(bytes.readableBytes, by: self)
        self.stream.write(bytes)
    }

    func flush() {
        self.stream.flush()
    }

    func flushIdle() {
        self.stream.flushIdle()
    }

    func endResponse(closeConnection: Bool) {
        self.stream.end()
        self.stream.flush()
        self.done()
    }

    func abortResponse() {
        self.stream.reset()
        self.done()
    }

    func pauseRequestBody() {
        self.stream.pauseBody()
    }

    func resumeRequestBody() {
        self.stream.resumeBody()
    }

    /// HTTP/2 clients send the body without waiting for a 100 (curl waits a second at most).
    func continueRequestBody() {}

    func respond(status: HTTPResponseStatus, body: String, closeConnection: Bool) {
        var buffer = ByteBuffer()
        buffer.writeString(body)
        self.stream.sendHead(
            status: status,
            headers: [("content-type", "text/plain; charset=utf-8"), ("content-length", String(buffer.readableBytes))]
        )
        self.frontEnd.countSent(buffer.readableBytes, by: self)
        self.stream.write(buffer)
        self.stream.end()
        self.stream.flush()
        self.done()
    }

    private func done() {
        guard !self.finished else { return }
        self.finished = true
        self.frontEnd.streamFinished(self)
    }

    // MARK: HTTP2ServerStreamDelegate

    func http2Stream(_ stream: HTTP2ServerStream, didReceiveBody body: ByteBuffer) {
        self.exchange?.receiveBody(body)
    }

    func http2StreamDidReceiveEnd(_ stream: HTTP2ServerStream) {
        self.exchange?.receiveEnd()
    }

    func http2StreamDidClose(_ stream: HTTP2ServerStream, reason: HTTP2StreamCloseReason) {
        self.exchange?.clientGone()
        self.done()
    }

    func http2StreamWritabilityChanged(_ stream: HTTP2ServerStream) {
        self.exchange?.clientWritabilityChanged()
    }
}
