import NIOCore
import XCTest

@testable import TLS

final class VerificationTests: XCTestCase {
    let pki = TestPKI.shared

    private func handshake(serving pair: TestPKI.Pair, client: TLSClientContext, serverName: String? = "localhost") throws -> InMemoryTLS {
        let tls = try InMemoryTLS(server: pki.serverContext([pair]), client: client, serverName: serverName)
        try tls.handshake()
        return tls
    }

    private func assertRejected(_ tls: InMemoryTLS, reasonContains reason: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(tls.clientRecorder.handshakeCompleted, file: file, line: line)
        XCTAssertFalse(tls.client.isActive, file: file, line: line)
        XCTAssertEqual(tls.clientRecorder.tlsErrors.count, 1, "\(tls.clientRecorder.errors)", file: file, line: line)
        if case .certificateVerificationFailed(let actual, _)? = tls.clientRecorder.tlsErrors.first {
            XCTAssertTrue(actual.contains(reason), "\(actual)", file: file, line: line)
        } else {
            XCTFail("expected a verification failure, got \(tls.clientRecorder.errors)", file: file, line: line)
        }
        XCTAssertEqual(tls.clientMetrics.snapshot.handshakesFailed, 1, file: file, line: line)
        // The client's alert reached the server, which counts a failed handshake too.
        XCTAssertEqual(tls.serverMetrics.snapshot.handshakesFailed, 1, file: file, line: line)
        XCTAssertEqual(tls.serverMetrics.snapshot.handshakesCompleted, 0, file: file, line: line)
    }

    func testAcceptsWithTheExtraCA() throws {
        let tls = try handshake(serving: pki.localhost, client: pki.clientContext(trustingTestCA: true))
        defer { tls.finish() }
        XCTAssertTrue(tls.clientRecorder.handshakeCompleted, "\(tls.clientRecorder.errors)")
        XCTAssertTrue(tls.serverRecorder.handshakeCompleted)
        XCTAssertEqual(tls.clientMetrics.snapshot.handshakesCompleted, 1)
    }

    func testRejectsWrongHostname() throws {
        let tls = try handshake(serving: pki.wrongHost, client: pki.clientContext())
        defer { tls.finish() }
        assertRejected(tls, reasonContains: "mismatch")
    }

    func testRejectsUntrustedCAEvenWithTheExtraCA() throws {
        let tls = try handshake(serving: pki.untrusted, client: pki.clientContext(trustingTestCA: true))
        defer { tls.finish() }
        assertRejected(tls, reasonContains: "issuer")
    }

    func testRejectsTestCAWithoutTheExtraCA() throws {
        // Only the system store: our test CA is not in it.
        let tls = try handshake(serving: pki.localhost, client: pki.clientContext(trustingTestCA: false))
        defer { tls.finish() }
        assertRejected(tls, reasonContains: "issuer")
    }

    func testRejectsExpiredCertificate() throws {
        let tls = try handshake(serving: pki.expired, client: pki.clientContext())
        defer { tls.finish() }
        assertRejected(tls, reasonContains: "expired")
    }

    func testVerifiesIPAddressAgainstIPSAN() throws {
        let tls = try handshake(serving: pki.localhost, client: pki.clientContext(), serverName: "127.0.0.1")
        defer { tls.finish() }
        XCTAssertTrue(tls.clientRecorder.handshakeCompleted, "\(tls.clientRecorder.errors)")
        // IP addresses are never sent as SNI.
        XCTAssertNil(tls.serverHandler.connectionInfo?.serverName)
    }

    func testRejectsIPAddressNotInCertificate() throws {
        let tls = try handshake(serving: pki.localhost, client: pki.clientContext(), serverName: "10.1.2.3")
        defer { tls.finish() }
        assertRejected(tls, reasonContains: "mismatch")
    }

    func testVerifyFalseAcceptsAnything() throws {
        for pair in [pki.wrongHost, pki.untrusted, pki.expired] {
            let tls = try handshake(serving: pair, client: pki.clientContext(trustingTestCA: false, verify: false))
            defer { tls.finish() }
            XCTAssertTrue(tls.clientRecorder.handshakeCompleted, "\(pair.certificate): \(tls.clientRecorder.errors)")
            XCTAssertTrue(tls.clientRecorder.errors.isEmpty)
            // SNI is still sent.
            XCTAssertEqual(tls.serverHandler.connectionInfo?.serverName, "localhost")
        }
    }

    func testInvalidServerNameFailsTheConnection() throws {
        let tooLong = String(repeating: "a", count: 300) + ".test"
        let tls = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(), serverName: tooLong)
        defer { tls.finish() }
        try tls.activate()
        XCTAssertFalse(tls.client.isActive)
        if case .invalidServerName? = tls.clientRecorder.tlsErrors.first {} else {
            XCTFail("expected invalidServerName, got \(tls.clientRecorder.errors)")
        }
    }
}
