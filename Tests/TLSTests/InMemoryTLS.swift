import NIOCore
import NIOEmbedded
import NIOTLS
import XCTest

@testable import TLS

/// Sits behind the TLS handler and records what comes out of it. Errors stop here, so that
/// EmbeddedChannel does not rethrow them and tests can count them.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    var received = ByteBuffer()
    var reads = 0
    var readCompletes = 0
    var events: [TLSUserEvent] = []
    var errors: [Error] = []
    var isActive = false
    var becameInactive = false

    var receivedString: String { String(buffer: received) }

    var negotiatedProtocols: [String?] {
        events.compactMap { event in
            if case .handshakeCompleted(let negotiated) = event { return negotiated }
            return nil
        }
    }

    var handshakeCompleted: Bool {
        events.contains { if case .handshakeCompleted = $0 { return true } else { return false } }
    }

    var shutdownCompleted: Bool {
        events.contains { if case .shutdownCompleted = $0 { return true } else { return false } }
    }

    var tlsErrors: [TLSError] { errors.compactMap { $0 as? TLSError } }

    func channelActive(context: ChannelHandlerContext) {
        isActive = true
    }

    func channelInactive(context: ChannelHandlerContext) {
        becameInactive = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        reads += 1
        received.writeBuffer(&buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readCompletes += 1
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent { events.append(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        errors.append(error)
    }
}

/// A TLS client and server on two EmbeddedChannels, with a loop that moves the bytes between them
/// (the way swift-nio-ssl's tests do it).
final class InMemoryTLS {
    let loop = EmbeddedEventLoop()
    let client: EmbeddedChannel
    let server: EmbeddedChannel
    let clientHandler: OpenSSLHandler
    let serverHandler: OpenSSLHandler
    let clientRecorder = Recorder()
    let serverRecorder = Recorder()
    let clientMetrics = TLSMetrics()
    let serverMetrics = TLSMetrics()
    /// Every ciphertext buffer that went from client to server / server to client.
    var clientToServer: [ByteBuffer] = []
    var serverToClient: [ByteBuffer] = []

    init(
        server serverContext: TLSServerContext,
        client clientContext: TLSClientContext,
        serverName: String? = "localhost",
        serverHandshakeTimeout: TimeAmount? = .seconds(10),
        serverHandshakeTimers: TLSHandshakeTimers? = nil,
        shutdownTimeout: TimeAmount = .seconds(3)
    ) throws {
        serverHandler = OpenSSLHandler.server(
            context: serverContext, metrics: serverMetrics, handshakeTimeout: serverHandshakeTimeout,
            handshakeTimers: serverHandshakeTimers, shutdownTimeout: shutdownTimeout)
        clientHandler = OpenSSLHandler.client(
            context: clientContext, serverName: serverName, metrics: clientMetrics, shutdownTimeout: shutdownTimeout)
        server = EmbeddedChannel(loop: loop)
        client = EmbeddedChannel(loop: loop)
        try server.pipeline.syncOperations.addHandlers([serverHandler, serverRecorder])
        try client.pipeline.syncOperations.addHandlers([clientHandler, clientRecorder])
    }

    /// Activates both channels (the client sends its ClientHello) and runs the handshake.
    func handshake() throws {
        try activate()
        try interact()
    }

    func activate() throws {
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
    }

    /// Moves bytes both ways until neither side has anything to send.
    func interact() throws {
        var moved = true
        while moved {
            moved = false
            if let buffer = try client.readOutbound(as: ByteBuffer.self) {
                moved = true
                clientToServer.append(buffer)
                if server.isActive { try server.writeInbound(buffer) }
            }
            if let buffer = try server.readOutbound(as: ByteBuffer.self) {
                moved = true
                serverToClient.append(buffer)
                if client.isActive { try client.writeInbound(buffer) }
            }
        }
    }

    /// Everything the channel has written so far, as one buffer (not delivered anywhere).
    static func drainOutbound(_ channel: EmbeddedChannel) throws -> ByteBuffer {
        var all = ByteBuffer()
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            all.writeBuffer(&buffer)
        }
        return all
    }

    /// Simulates the peer's transport going away (TCP FIN/RST) under `channel`.
    static func dropTransport(_ channel: EmbeddedChannel) {
        channel.pipeline.fireChannelInactive()
    }

    /// Closes both sides without blocking: `EmbeddedChannel.finish()` waits for the close future,
    /// and an established TLS connection's close waits for the peer's close_notify or the
    /// shutdown timer, which an EmbeddedEventLoop only fires when time is advanced.
    func finish() {
        client.close(promise: nil)
        server.close(promise: nil)
        try? interact()
        loop.advanceTime(by: .seconds(3600))
        _ = try? client.finish(acceptAlreadyClosed: true)
        _ = try? server.finish(acceptAlreadyClosed: true)
    }
}

extension TestPKI {
    func serverContext(_ pairs: [Pair]? = nil, alpn: [String] = ["h2", "http/1.1"]) throws -> TLSServerContext {
        let pairs = pairs ?? [localhost]
        return try TLSServerContext(
            certificates: pairs.map { .init(certificatePath: $0.certificate, keyPath: $0.key) }, alpn: alpn)
    }

    func clientContext(trustingTestCA: Bool = true, verify: Bool = true, alpn: [String] = ["http/1.1"]) throws -> TLSClientContext {
        try TLSClientContext(additionalCAPath: trustingTestCA ? caPath : nil, verify: verify, alpn: alpn)
    }
}

func makeBuffer(_ string: String) -> ByteBuffer {
    ByteBuffer(string: string)
}

/// Bytes that are not all the same, so that a reordering or a lost chunk shows.
func patternBuffer(count: Int) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(count)
    for index in 0..<count {
        buffer.writeInteger(UInt8(truncatingIfNeeded: index &* 31 &+ index >> 8))
    }
    return buffer
}
