import LifelineCore
import Logging
import NIOConcurrencyHelpers
import TLS
import NIOTLS
import NIOCore
import NIOHTTP1
import NIOPosix

/// Logs failed TLS handshakes at debug level: they are routine on the internet (scanners,
/// browsers closing tabs) and are counted in `TLSMetrics`. Once the handshake is done it leaves
/// the pipeline (one handler less on every idle TLS connection); a later failure, such as a
/// connection cut mid-record, is counted in `TLSMetrics` and ends up in the access log's `end`.
final class TLSFailureLogger: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let handshakeDone: Bool
        if case .handshakeCompleted = event as? TLSUserEvent {
            handshakeDone = true
        } else {
            handshakeDone = false
        }
        context.fireUserInboundEventTriggered(event)
        if handshakeDone {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is TLSError {
            self.logger.debug(
                "TLS connection failed",
                metadata: ["client": "\(context.channel.remoteAddress?.ipAddress ?? "-")", "error": "\(error)"]
            )
        }
        context.fireErrorCaught(error)
    }
}
