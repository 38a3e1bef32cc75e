import LifelineCore
import NIOCore
import NIOHTTP1

/// The client side of one request, as a `ClientExchange` sees it: an HTTP/1.1 connection or an
/// HTTP/2 stream. The responder owns framing (chunked, Content-Length, DATA frames) and what
/// happens to the connection afterwards; the exchange owns routing, streams and proxying.
///
/// Every method is called on `eventLoop`.
protocol ClientResponder: AnyObject {
    var eventLoop: EventLoop { get }
    var allocator: ByteBufferAllocator { get }
    /// The client's address, for `X-Forwarded-For` and per-address limits.
    var clientAddress: String? { get }
    /// `http` or `https`, for `X-Forwarded-Proto`.
    var clientScheme: String { get }
    /// Whether the client takes more bytes now (its connection's or stream's buffer is below
    /// the bound). When it turns true again the owner calls `clientWritabilityChanged`.
    var isWritable: Bool { get }

    /// Writes the response head. `isEventStream`: an event-stream response of unknown length.
    /// Otherwise `headers` are the origin's (hop-by-hop removed) and decide the body's framing.
    func writeHead(status: HTTPResponseStatus, headers: HTTPHeaders, isEventStream: Bool)
    /// Event-stream bytes that other subscribers on this loop are sent alike (a batch, a
    /// heartbeat): HTTP/1.1 frames them once per loop (`HTTP1ChunkFramer`).
    func writeShared(_ bytes: ByteBuffer)
    /// `writeShared`, then `flush`: a live event to an idle client, the hottest write there is,
    /// in one pass through the pipeline where the front end can.
    func writeSharedAndFlush(_ bytes: ByteBuffer)
    /// Plain body bytes.
    func writeBody(_ bytes: ByteBuffer)
    func flush()
    /// `flush` after a heartbeat, to a client idle for a whole interval: a front end may give
    /// back memory it keeps for sending until the next write (HTTP/2: the session's output
    /// buffer pages).
    func flushIdle()
    /// The response is complete.
    func endResponse(closeConnection: Bool)
    /// The response cannot be completed: the client must see it fail (close, or RST_STREAM).
    func abortResponse()
    /// A small complete response of the gateway's own (400, 404, 502, 504); `closeConnection`
    /// after a request that cannot be trusted to leave the connection in order.
    func respond(status: HTTPResponseStatus, body: String, closeConnection: Bool)

    /// Stop taking the request body from the client until `resumeRequestBody` (its destination is
    /// not taking bytes): HTTP/1.1 stops reading the socket, HTTP/2 holds back the window.
    func pauseRequestBody()
    func resumeRequestBody()
    /// The client asked `Expect: 100-continue` and its body is wanted: tell it to send.
    func continueRequestBody()
}

extension ClientResponder {
    func flushIdle() {
        self.flush()
    }
}
