import NIOCore
import NIOEmbedded
import XCTest

@testable import TLS

/// What an established, idle connection keeps: an SSE gateway holds thousands of them, so the
/// handler must hold no buffer between reads and writes, and OpenSSL must free its own.
final class FootprintTests: XCTestCase {
    let pki = TestPKI.shared

    private func establishedPair(offer: TLSClientContext.Offer = .origin) throws -> InMemoryTLS {
        let client = try TLSClientContext(additionalCAPath: pki.caPath, alpn: ["http/1.1"], offer: offer)
        let pair = try InMemoryTLS(server: pki.serverContext(), client: client)
        try pair.handshake()
        XCTAssertTrue(pair.serverRecorder.handshakeCompleted)
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted)
        return pair
    }

    private let nothingHeld = OpenSSLHandler.HeldBuffers(ciphertext: false, queuedWrites: 0, queuedWriteCapacity: 0)

    func testNothingIsHeldAfterTheHandshake() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        XCTAssertEqual(pair.serverHandler.heldBuffers, nothingHeld)
        XCTAssertEqual(pair.clientHandler.heldBuffers, nothingHeld)
    }

    func testNothingIsHeldAfterReadsAndWritesComplete() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        // A request, a response head, then heartbeats: written one by one and in a batch.
        try pair.client.writeAndFlush(makeBuffer("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")).wait()
        try pair.interact()
        try pair.server.writeAndFlush(makeBuffer("HTTP/1.1 200 OK\r\n\r\n")).wait()
        pair.server.write(makeBuffer(":heartbeat\n\n"), promise: nil)
        pair.server.write(makeBuffer("data: 1\n\n"), promise: nil)
        pair.server.flush()
        try pair.interact()
        XCTAssertEqual(pair.serverRecorder.receivedString, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(pair.clientRecorder.receivedString, "HTTP/1.1 200 OK\r\n\r\n:heartbeat\n\ndata: 1\n\n")

        XCTAssertEqual(pair.serverHandler.heldBuffers, nothingHeld)
        XCTAssertEqual(pair.clientHandler.heldBuffers, nothingHeld)
    }

    func testQueueStorageIsReleasedOnceEverythingIsFlushed() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        // A flush that leaves an unflushed write behind keeps the queue...
        pair.server.write(makeBuffer("a"), promise: nil)
        pair.server.flush()
        pair.server.write(makeBuffer("b"), promise: nil)
        XCTAssertEqual(pair.serverHandler.heldBuffers.queuedWrites, 1)
        // ...and the flush that empties it drops its storage as well.
        pair.server.flush()
        try pair.interact()
        XCTAssertEqual(pair.clientRecorder.receivedString, "ab")
        XCTAssertEqual(pair.serverHandler.heldBuffers, nothingHeld)
    }

    func testPartialRecordIsHeldByOpenSSLNotByTheHandler() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        try pair.client.writeAndFlush(makeBuffer("GET /events HTTP/1.1\r\n\r\n")).wait()
        var record = try InMemoryTLS.drainOutbound(pair.client)
        XCTAssertGreaterThan(record.readableBytes, 10)
        let head = record.readSlice(length: record.readableBytes / 2)!
        try pair.server.writeInbound(head)
        // OpenSSL pulled the half record into its own buffer: no ciphertext waits in ours.
        XCTAssertEqual(pair.serverHandler.heldBuffers, nothingHeld)
        XCTAssertEqual(pair.serverRecorder.receivedString, "")
        try pair.server.writeInbound(record)
        XCTAssertEqual(pair.serverRecorder.receivedString, "GET /events HTTP/1.1\r\n\r\n")
        XCTAssertEqual(pair.serverHandler.heldBuffers, nothingHeld)
    }

    func testOpenSSLReleasesItsRecordBuffersOnBothSides() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        XCTAssertEqual(pair.serverHandler.sslConnection?.releasesRecordBuffers, true)
        XCTAssertEqual(pair.clientHandler.sslConnection?.releasesRecordBuffers, true)
    }

    func testBrowserLikeOfferIsWhatTheServerSees() throws {
        let pair = try establishedPair(offer: .browserLike)
        defer { pair.finish() }
        let offer = try XCTUnwrap(pair.serverHandler.sslConnection?.peerOffer)
        // 12 TLS 1.2 suites and OpenSSL's 3 TLS 1.3 suites, 8 signature algorithms, 3 groups.
        XCTAssertEqual(offer.cipherSuites, 15)
        XCTAssertEqual(offer.signatureAlgorithms, 8)
        XCTAssertEqual(offer.groups, 3)
    }

    func testOriginOfferIsBroader() throws {
        // Towards origins Lifeline offers many more TLS 1.2 suites (origins can be old).
        let pair = try establishedPair(offer: .origin)
        defer { pair.finish() }
        let offer = try XCTUnwrap(pair.serverHandler.sslConnection?.peerOffer)
        XCTAssertGreaterThan(offer.cipherSuites, 15)
    }

    func testInvalidOfferIsRefused() {
        let badGroups = TLSClientContext.Offer(tls12Ciphers: "ECDHE+AESGCM", groups: "no-such-group")
        XCTAssertThrowsError(try TLSClientContext(offer: badGroups)) { error in
            guard case .setupFailed(let step, _) = error as? TLSError else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertTrue(step.contains("no-such-group"), step)
        }
        let badSignatures = TLSClientContext.Offer(tls12Ciphers: "ECDHE+AESGCM", signatureAlgorithms: "nonsense")
        XCTAssertThrowsError(try TLSClientContext(offer: badSignatures))
        XCTAssertThrowsError(try TLSClientContext(offer: .init(tls12Ciphers: "NO-SUCH-CIPHER")))
    }
}
