import NIOCore
import NIOHTTP1

/// Serializes an HTTP/1.1 response head. The front end writes its own heads so that event bytes
/// can go to the socket as shared, pre-framed buffers with no per-client encoding step.
enum HTTP1ResponseHead {
    static func write(
        status: HTTPResponseStatus,
        headers: [(String, String)],
        into buffer: inout ByteBuffer
    ) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
        for (name, value) in headers {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// A small complete response with a text body.
    static func simple(
        status: HTTPResponseStatus,
        body: String,
        close: Bool,
        extraHeaders: [(String, String)] = []
    ) -> ByteBuffer {
        var buffer = ByteBuffer()
        var headers: [(String, String)] = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", String(body.utf8.count)),
        ]
        headers += extraHeaders
        if close {
            headers.append(("Connection", "close"))
        }
        Self.write(status: status, headers: headers, into: &buffer)
        buffer.writeString(body)
        return buffer
    }

    static let lastChunk: ByteBuffer = ByteBuffer(staticString: "0\r\n\r\n")
    /// An interim answer to `Expect: 100-continue`.
    static let `continue`: ByteBuffer = ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")
}
