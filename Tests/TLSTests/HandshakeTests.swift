import NIOCore
import NIOEmbedded
import NIOTLS
import XCTest

@testable import TLS

final class HandshakeTests: XCTestCase {
    let pki = TestPKI.shared

    func testHandshakeCompletesAndServerPrefersH2() throws {
        // The client prefers http/1.1, the server prefers h2: the server's preference wins.
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: ["http/1.1", "h2"]))
        defer { pair.finish() }
        try pair.handshake()

        XCTAssertEqual(pair.clientRecorder.negotiatedProtocols, ["h2"])
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, ["h2"])
        XCTAssertEqual(pair.clientHandler.negotiatedProtocol, "h2")
        XCTAssertEqual(pair.serverHandler.negotiatedProtocol, "h2")
        XCTAssertEqual(pair.clientMetrics.snapshot.handshakesCompleted, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesCompleted, 1)
        XCTAssertTrue(pair.clientRecorder.errors.isEmpty, "\(pair.clientRecorder.errors)")
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty, "\(pair.serverRecorder.errors)")
    }

    func testHTTP1FallbackWhenClientOffersOnlyHTTP1() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: ["http/1.1"]))
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(pair.clientRecorder.negotiatedProtocols, ["http/1.1"])
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, ["http/1.1"])
    }

    func testNoALPNOffered() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: []))
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(pair.clientRecorder.negotiatedProtocols, [nil])
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, [nil])
    }

    func testNoCommonALPNProtocolIsNotFatal() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: ["spdy/3", "h3"]))
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, [nil])
        XCTAssertEqual(pair.clientRecorder.negotiatedProtocols, [nil])
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesFailed, 0)
    }

    func testConfiguredServerALPNOrder() throws {
        let pair = try InMemoryTLS(
            server: pki.serverContext(alpn: ["http/1.1", "h2"]), client: pki.clientContext(alpn: ["h2", "http/1.1"]))
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, ["http/1.1"])
    }

    func testApplicationProtocolNegotiationHandlerSeesTheResult() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: ["h2", "http/1.1"]))
        defer { pair.finish() }
        let chosen = NIOLockedBox<String?>(nil)
        let negotiation = ApplicationProtocolNegotiationHandler { result in
            if case .negotiated(let name) = result { chosen.value = name } else { chosen.value = "fallback" }
            return pair.loop.makeSucceededVoidFuture()
        }
        try pair.server.pipeline.syncOperations.addHandler(negotiation, position: .after(pair.serverHandler))
        try pair.handshake()
        XCTAssertEqual(chosen.value, "h2")
    }

    func testConnectionInfo() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(alpn: ["h2"]))
        defer { pair.finish() }
        XCTAssertNil(pair.clientHandler.connectionInfo)
        try pair.handshake()

        let fingerprint = try pki.fingerprint(pki.localhost.certificate)
        let client = try XCTUnwrap(pair.clientHandler.connectionInfo)
        let server = try XCTUnwrap(pair.serverHandler.connectionInfo)
        XCTAssertEqual(client.protocolVersion, "TLSv1.3")
        XCTAssertEqual(server.protocolVersion, "TLSv1.3")
        XCTAssertEqual(client.cipherSuite, server.cipherSuite)
        XCTAssertEqual(client.negotiatedProtocol, "h2")
        XCTAssertEqual(server.serverName, "localhost")
        XCTAssertEqual(client.peerCertificate?.sha256Fingerprint, fingerprint)
        XCTAssertEqual(client.peerCertificate?.subject, "/CN=localhost")
        XCTAssertEqual(server.localCertificate?.sha256Fingerprint, fingerprint)
        XCTAssertNil(server.peerCertificate)
    }

    func testGarbageInsteadOfClientHelloFailsOnceAndCloses() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        // Plain HTTP sent to a TLS port.
        try pair.server.writeInbound(makeBuffer("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertFalse(pair.server.isActive)
        XCTAssertEqual(pair.serverRecorder.tlsErrors.count, 1)
        if case .handshakeFailed(let errors)? = pair.serverRecorder.tlsErrors.first {
            XCTAssertFalse(errors.isEmpty)
        } else {
            XCTFail("expected handshakeFailed, got \(pair.serverRecorder.errors)")
        }
        // More bytes after the failure are dropped without another error.
        XCTAssertNoThrow(try pair.server.writeInbound(makeBuffer("more garbage")))
        XCTAssertEqual(pair.serverRecorder.errors.count, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesFailed, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesAbandoned, 0)
        XCTAssertFalse(pair.serverRecorder.handshakeCompleted)
    }

    func testPeerLeavingDuringHandshakeIsAbandonedNotFailed() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.activate()
        try pair.server.writeInbound(InMemoryTLS.drainOutbound(pair.client))
        InMemoryTLS.dropTransport(pair.server)
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesAbandoned, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesFailed, 0)
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty)
    }

    func testTCPProbeIsNotCounted() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        InMemoryTLS.dropTransport(pair.server)
        XCTAssertEqual(pair.serverMetrics.snapshot, TLSMetrics.Snapshot())
    }

    func testHandshakeTimeout() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(), serverHandshakeTimeout: .seconds(2))
        defer { pair.finish() }
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        pair.loop.advanceTime(by: .milliseconds(1999))
        XCTAssertTrue(pair.server.isActive)
        pair.loop.advanceTime(by: .milliseconds(1))
        XCTAssertFalse(pair.server.isActive)
        XCTAssertEqual(pair.serverRecorder.tlsErrors, [.handshakeTimedOut])
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesFailed, 1)
    }

    func testHandshakeTimerIsCancelledOnSuccess() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(), serverHandshakeTimeout: .seconds(2))
        defer { pair.finish() }
        try pair.handshake()
        pair.loop.advanceTime(by: .seconds(10))
        XCTAssertTrue(pair.server.isActive)
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty)
    }

    /// Given the loop's timers (the gateway's list of deadlines), the handshake's deadline is an
    /// entry there, not a scheduled task of its own.
    func testHandshakeDeadlineOnTheLoopsTimersFailsTheHandshakeWhenItExpires() throws {
        let timers = RecordingHandshakeTimers()
        let pair = try InMemoryTLS(
            server: pki.serverContext(), client: pki.clientContext(), serverHandshakeTimeout: .seconds(2),
            serverHandshakeTimers: timers.timers)
        defer { pair.finish() }
        try pair.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        XCTAssertEqual(timers.armed.map(\.deadline), [pair.loop.now + .seconds(2)])
        pair.loop.advanceTime(by: .seconds(10))
        XCTAssertTrue(pair.server.isActive, "no timer of its own")
        timers.armed[0].expired()
        XCTAssertFalse(pair.server.isActive)
        XCTAssertEqual(pair.serverRecorder.tlsErrors, [.handshakeTimedOut])
        XCTAssertEqual(pair.serverMetrics.snapshot.handshakesFailed, 1)
    }

    func testHandshakeDeadlineOnTheLoopsTimersIsDisarmedOnSuccessAndOnClose() throws {
        let timers = RecordingHandshakeTimers()
        let pair = try InMemoryTLS(
            server: pki.serverContext(), client: pki.clientContext(), serverHandshakeTimers: timers.timers)
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(timers.armed.count, 1)
        XCTAssertEqual(timers.disarmed, 1, "disarmed when the handshake completed")

        let leaving = RecordingHandshakeTimers()
        let other = try InMemoryTLS(
            server: pki.serverContext(), client: pki.clientContext(), serverHandshakeTimers: leaving.timers)
        try other.server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        InMemoryTLS.dropTransport(other.server)
        XCTAssertEqual(leaving.disarmed, 1, "disarmed when the peer left mid-handshake")
        other.finish()
    }

    func testHandlerAddedToActiveChannelStartsHandshake() throws {
        let serverContext = try pki.serverContext()
        let clientContext = try pki.clientContext()
        let loop = EmbeddedEventLoop()
        let server = EmbeddedChannel(loop: loop)
        let client = EmbeddedChannel(loop: loop)
        defer {
            server.close(promise: nil)
            client.close(promise: nil)
            loop.advanceTime(by: .seconds(3600))
            _ = try? server.finish(acceptAlreadyClosed: true)
            _ = try? client.finish(acceptAlreadyClosed: true)
        }
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let serverRecorder = Recorder()
        let clientRecorder = Recorder()
        try server.pipeline.syncOperations.addHandlers([OpenSSLHandler.server(context: serverContext), serverRecorder])
        try client.pipeline.syncOperations.addHandlers([
            OpenSSLHandler.client(context: clientContext, serverName: "localhost"), clientRecorder,
        ])
        for _ in 0..<10 {
            if let buffer = try client.readOutbound(as: ByteBuffer.self) { try server.writeInbound(buffer) }
            if let buffer = try server.readOutbound(as: ByteBuffer.self) { try client.writeInbound(buffer) }
        }
        XCTAssertTrue(serverRecorder.handshakeCompleted)
        XCTAssertTrue(clientRecorder.handshakeCompleted)
    }
}

/// A box for values set from callbacks in single-threaded (embedded) tests.
final class NIOLockedBox<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Handshake timers that record what is armed and disarmed, and fire only when a test says so.
final class RecordingHandshakeTimers {
    var armed: [(deadline: NIODeadline, expired: () -> Void)] = []
    var disarmed = 0

    var timers: TLSHandshakeTimers {
        TLSHandshakeTimers { [unowned self] deadline, expired in
            self.armed.append((deadline, expired))
            return { [unowned self] in self.disarmed += 1 }
        }
    }
}
