import HTTP2
import NIOCore

/// Records what a stream's delegate hears.
package final class RecordingDelegate: HTTP2ServerStreamDelegate {
    package var bodies: [String] = []
    package var ended = false
    package var closeReasons: [HTTP2StreamCloseReason] = []
    package var writability: [Bool] = []
    package var onEnd: ((HTTP2ServerStream) -> Void)?

    package init() {}

    package func http2Stream(_ stream: HTTP2ServerStream, didReceiveBody body: ByteBuffer) {
        self.bodies.append(String(buffer: body))
    }

    package func http2StreamDidReceiveEnd(_ stream: HTTP2ServerStream) {
        self.ended = true
        self.onEnd?(stream)
    }

    package func http2StreamDidClose(_ stream: HTTP2ServerStream, reason: HTTP2StreamCloseReason) {
        self.closeReasons.append(reason)
    }

    package func http2StreamWritabilityChanged(_ stream: HTTP2ServerStream) {
        self.writability.append(stream.isWritable)
    }
}
