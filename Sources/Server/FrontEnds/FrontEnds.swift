import LifelineCore
import Logging
import NIOConcurrencyHelpers
import TLS
import NIOTLS
import NIOCore
import NIOHTTP1
import NIOPosix

/// Builds a connection's pipeline: HTTP/1.1 or HTTP/2, over plaintext or TLS, with the
/// configuration its loop has now (`LoopContext.shared`, which a reload replaces).
final class FrontEnds: Sendable {
    init() {}

    /// `--max-request-head` bounds both the header list and one header field.
    static func decoderLimits(for configuration: GatewayConfiguration) -> NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = configuration.maxRequestHeadSize
        limits.maxHeaderFieldSize = configuration.maxRequestHeadSize
        return limits
    }

    /// Plaintext: HTTP/2 with prior knowledge is told from HTTP/1.1 by its preface. `descriptor`:
    /// the connection's socket, when the gateway accepted it itself (`--io-uring`).
    func installPlaintext(on channel: Channel, loop: LoopContext, descriptor: CInt? = nil) throws {
        let timeout = loop.shared.configuration.requestHeadTimeout
        let sniffer = PrefaceSniffer(timeout: timeout, timers: loop.idleTimers) { channel, detected in
            switch detected {
            case .http1: try self.installHTTP1(on: channel, loop: loop, scheme: "http", descriptor: descriptor)
            case .http2: try HTTP2FrontEnd.install(on: channel, shared: loop.shared, loop: loop, scheme: "http")
            }
        }
        try channel.pipeline.syncOperations.addHandler(sniffer)
    }

    /// TLS: ALPN picks HTTP/2 (`h2`) or HTTP/1.1 (anything else, or no ALPN).
    func installTLS(on channel: Channel, loop: LoopContext, context: TLSServerContext) throws {
        try channel.pipeline.syncOperations.addHandler(
            OpenSSLHandler.server(context: context, metrics: loop.shared.tlsMetrics, handshakeTimers: loop.tlsHandshakeTimers)
        )
        try channel.pipeline.syncOperations.addHandler(TLSFailureLogger(logger: loop.shared.logger))
        let negotiation = ApplicationProtocolNegotiationHandler { result, channel in
            channel.eventLoop.makeCompletedFuture {
                if case .negotiated("h2") = result {
                    try HTTP2FrontEnd.install(on: channel, shared: loop.shared, loop: loop, scheme: "https")
                } else {
                    try self.installHTTP1(on: channel, loop: loop, scheme: "https")
                }
            }
        }
        try channel.pipeline.syncOperations.addHandler(negotiation)
    }

    func installHTTP1(on channel: Channel, loop: LoopContext, scheme: String, descriptor: CInt? = nil) throws {
        let decoder = ByteToMessageHandler(HTTPRequestDecoder(
            leftOverBytesStrategy: .dropBytes,
            informationalResponseStrategy: .drop,
            limitConfiguration: Self.decoderLimits(for: loop.shared.configuration)
        ))
        try channel.pipeline.syncOperations.addHandler(decoder)
        try channel.pipeline.syncOperations.addHandler(
            HTTP1ServerHandler(loop: loop, scheme: scheme, decoder: decoder, descriptor: descriptor)
        )
    }
}
