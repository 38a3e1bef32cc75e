import NIOCore
import XCTest

@testable import TLS

final class SNITests: XCTestCase {
    let pki = TestPKI.shared

    private func servedFingerprint(serverName: String?, verify: Bool = false) throws -> (String?, InMemoryTLS) {
        let serverContext = try pki.serverContext([pki.localhost, pki.second, pki.cnOnly])
        let pair = try InMemoryTLS(server: serverContext, client: pki.clientContext(verify: verify), serverName: serverName)
        try pair.handshake()
        return (pair.clientHandler.connectionInfo?.peerCertificate?.sha256Fingerprint, pair)
    }

    func testExactNameSelectsSecondCertificate() throws {
        let (served, pair) = try servedFingerprint(serverName: "other.test", verify: true)
        defer { pair.finish() }
        // Verification with host name checking passed, so the certificate names other.test.
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted, "\(pair.clientRecorder.errors)")
        XCTAssertEqual(served, try pki.fingerprint(pki.second.certificate))
        XCTAssertEqual(pair.serverHandler.connectionInfo?.serverName, "other.test")
        XCTAssertEqual(pair.serverHandler.connectionInfo?.localCertificate?.sha256Fingerprint, served)
    }

    func testNameMatchIsCaseInsensitive() throws {
        let (served, pair) = try servedFingerprint(serverName: "OTHER.Test")
        defer { pair.finish() }
        XCTAssertEqual(served, try pki.fingerprint(pki.second.certificate))
    }

    func testWildcardSelectsSecondCertificate() throws {
        let (served, pair) = try servedFingerprint(serverName: "a.wild.test", verify: true)
        defer { pair.finish() }
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted, "\(pair.clientRecorder.errors)")
        XCTAssertEqual(served, try pki.fingerprint(pki.second.certificate))
    }

    func testWildcardCoversOneLabelOnly() throws {
        let (served, pair) = try servedFingerprint(serverName: "b.a.wild.test")
        defer { pair.finish() }
        XCTAssertEqual(served, try pki.fingerprint(pki.localhost.certificate))
    }

    func testCommonNameWhenNoSubjectAltNames() throws {
        let (served, pair) = try servedFingerprint(serverName: "cn-only.test", verify: true)
        defer { pair.finish() }
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted, "\(pair.clientRecorder.errors)")
        XCTAssertEqual(served, try pki.fingerprint(pki.cnOnly.certificate))
    }

    func testUnknownNameGetsDefault() throws {
        let (served, pair) = try servedFingerprint(serverName: "unknown.test")
        defer { pair.finish() }
        XCTAssertEqual(served, try pki.fingerprint(pki.localhost.certificate))
    }

    func testNoServerNameGetsDefault() throws {
        let (served, pair) = try servedFingerprint(serverName: nil)
        defer { pair.finish() }
        XCTAssertEqual(served, try pki.fingerprint(pki.localhost.certificate))
        XCTAssertNil(pair.serverHandler.connectionInfo?.serverName)
    }

    func testALPNStillWorksAfterSwitchingContext() throws {
        let serverContext = try pki.serverContext([pki.localhost, pki.second])
        let pair = try InMemoryTLS(
            server: serverContext, client: pki.clientContext(alpn: ["http/1.1", "h2"]), serverName: "other.test")
        defer { pair.finish() }
        try pair.handshake()
        XCTAssertEqual(pair.serverRecorder.negotiatedProtocols, ["h2"])
    }
}
