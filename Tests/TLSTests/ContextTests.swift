import Foundation
import NIOCore
import XCTest

@testable import TLS

final class ContextTests: XCTestCase {
    let pki = TestPKI.shared

    private func pair(_ certificate: String, _ key: String) -> TLSServerContext.CertificatePair {
        .init(certificatePath: certificate, keyPath: key)
    }

    func testMissingFile() {
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair("/nonexistent/cert.pem", pki.localhost.key)])) { error in
            guard case .fileNotReadable(let path, _)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/cert.pem")
            XCTAssertTrue("\(error)".contains("/nonexistent/cert.pem"))
        }
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.certificate, "/nonexistent/key.pem")])) { error in
            guard case .fileNotReadable(let path, _)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "/nonexistent/key.pem")
        }
    }

    func testNotAPEMCertificate() throws {
        let garbage = pki.scratchPath("garbage.pem")
        try TestPKI.write("not a certificate\n", to: garbage)
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(garbage, pki.localhost.key)])) { error in
            guard case .invalidCertificate(let path, let errors)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, garbage)
            XCTAssertFalse(errors.isEmpty, "OpenSSL's reason is included")
        }
        // A key where the certificate should be.
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.key, pki.localhost.key)])) { error in
            guard case .invalidCertificate? = error as? TLSError else { return XCTFail("\(error)") }
        }
    }

    func testNotAPEMKey() throws {
        let garbage = pki.scratchPath("garbage.key")
        try TestPKI.write("", to: garbage)
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.certificate, garbage)])) { error in
            guard case .invalidPrivateKey(let path, _)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, garbage)
        }
    }

    func testEncryptedKeyFailsInsteadOfPrompting() {
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.certificate, pki.encryptedKeyPath)])) { error in
            guard case .invalidPrivateKey? = error as? TLSError else { return XCTFail("\(error)") }
        }
    }

    func testKeyMismatch() {
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.certificate, pki.second.key)])) { error in
            guard case .keyMismatch(let certificate, let key, _)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(certificate, pki.localhost.certificate)
            XCTAssertEqual(key, pki.second.key)
        }
        // An RSA key for an EC certificate.
        XCTAssertThrowsError(try TLSServerContext(certificates: [pair(pki.localhost.certificate, pki.cnOnly.key)])) { error in
            guard case .keyMismatch? = error as? TLSError else { return XCTFail("\(error)") }
        }
    }

    func testNoCertificatesAndBadALPN() {
        XCTAssertThrowsError(try TLSServerContext(certificates: [])) { error in
            XCTAssertEqual(error as? TLSError, .noCertificates)
        }
        let valid = [pair(pki.localhost.certificate, pki.localhost.key)]
        XCTAssertThrowsError(try TLSServerContext(certificates: valid, alpn: ["h2", ""])) { error in
            XCTAssertEqual(error as? TLSError, .invalidALPN(""))
        }
        XCTAssertThrowsError(try TLSClientContext(alpn: [String(repeating: "x", count: 256)])) { error in
            guard case .invalidALPN? = error as? TLSError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try TLSServerContext(certificates: valid, alpn: ["h2"], cipherList: "NOT-A-CIPHER")) { error in
            guard case .invalidCipherList? = error as? TLSError else { return XCTFail("\(error)") }
        }
    }

    func testClientCAErrors() throws {
        XCTAssertThrowsError(try TLSClientContext(additionalCAPath: "/nonexistent/ca.pem")) { error in
            guard case .fileNotReadable? = error as? TLSError else { return XCTFail("\(error)") }
        }
        let garbage = pki.scratchPath("garbage-ca.pem")
        try TestPKI.write("nothing to see\n", to: garbage)
        XCTAssertThrowsError(try TLSClientContext(additionalCAPath: garbage)) { error in
            guard case .invalidCAFile(let path, _)? = error as? TLSError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, garbage)
        }
    }

    // MARK: - Reload

    func testReloadSwapsCertificateForNewHandshakesOnly() throws {
        let certificate = pki.scratchPath("reload.pem")
        let key = pki.scratchPath("reload.key")
        try pki.copy(pki.localhost, toCertificate: certificate, key: key)
        let serverContext = try TLSServerContext(certificates: [pair(certificate, key)])
        let clientContext = try pki.clientContext()
        let original = try pki.fingerprint(pki.localhost.certificate)
        let renewed = try pki.fingerprint(pki.localhostRenewed.certificate)
        XCTAssertNotEqual(original, renewed)

        func servedFingerprint() throws -> (String?, InMemoryTLS) {
            let tls = try InMemoryTLS(server: serverContext, client: clientContext)
            try tls.handshake()
            XCTAssertTrue(tls.clientRecorder.handshakeCompleted, "\(tls.clientRecorder.errors)")
            return (tls.clientHandler.connectionInfo?.peerCertificate?.sha256Fingerprint, tls)
        }

        let (before, established) = try servedFingerprint()
        defer { established.finish() }
        XCTAssertEqual(before, original)

        // New files on disk change nothing until reload.
        try pki.copy(pki.localhostRenewed, toCertificate: certificate, key: key)
        let (stillOriginal, second) = try servedFingerprint()
        second.finish()
        XCTAssertEqual(stillOriginal, original)

        try serverContext.reload()
        let (afterReload, third) = try servedFingerprint()
        third.finish()
        XCTAssertEqual(afterReload, renewed)

        // The connection established before the reload still works both ways.
        try established.client.writeAndFlush(makeBuffer("ping")).wait()
        try established.interact()
        XCTAssertEqual(established.serverRecorder.receivedString, "ping")
        try established.server.writeAndFlush(makeBuffer("pong")).wait()
        try established.interact()
        XCTAssertEqual(established.clientRecorder.receivedString, "pong")
        XCTAssertEqual(established.serverHandler.connectionInfo?.localCertificate?.sha256Fingerprint, original)
    }

    func testFailedReloadKeepsWorkingCertificates() throws {
        let certificate = pki.scratchPath("reload-bad.pem")
        let key = pki.scratchPath("reload-bad.key")
        try pki.copy(pki.localhost, toCertificate: certificate, key: key)
        let serverContext = try TLSServerContext(certificates: [pair(certificate, key)])
        let clientContext = try pki.clientContext()

        // A half-finished deployment: new certificate, old key.
        try FileManager.default.removeItem(atPath: certificate)
        try FileManager.default.copyItem(atPath: pki.localhostRenewed.certificate, toPath: certificate)
        XCTAssertThrowsError(try serverContext.reload()) { error in
            guard case .keyMismatch? = error as? TLSError else { return XCTFail("\(error)") }
        }
        try TestPKI.write("garbage", to: certificate)
        XCTAssertThrowsError(try serverContext.reload())

        let tls = try InMemoryTLS(server: serverContext, client: clientContext)
        defer { tls.finish() }
        try tls.handshake()
        XCTAssertTrue(tls.clientRecorder.handshakeCompleted, "\(tls.clientRecorder.errors)")
        XCTAssertEqual(
            tls.clientHandler.connectionInfo?.peerCertificate?.sha256Fingerprint, try pki.fingerprint(pki.localhost.certificate))
    }

    func testContextsAreReleased() throws {
        // A handler keeps its generation alive; dropping everything frees it (no leak of SSL_CTX).
        weak var generation: ServerContextGeneration?
        do {
            let serverContext = try pki.serverContext()
            generation = serverContext.generation
            let tls = try InMemoryTLS(server: serverContext, client: pki.clientContext())
            try tls.handshake()
            try serverContext.reload()
            XCTAssertNotNil(generation, "the established connection still uses it")
            tls.finish()
        }
        XCTAssertNil(generation)
    }
}

final class ALPNTests: XCTestCase {
    private func select(_ preferred: [String], _ offered: [UInt8]) -> String? {
        let preferredBytes = preferred.map { Array($0.utf8) }
        return offered.withUnsafeBytes { raw in
            ALPN.select(preferred: preferredBytes, offered: raw).map { String(decoding: raw[$0], as: UTF8.self) }
        }
    }

    func testWireFormat() throws {
        XCTAssertEqual(ALPN.wireFormat(try ALPN.validate(["h2", "http/1.1"])), [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8))
    }

    func testServerPreference() {
        let offer = ALPN.wireFormat([Array("http/1.1".utf8), Array("h2".utf8)])
        XCTAssertEqual(select(["h2", "http/1.1"], offer), "h2")
        XCTAssertEqual(select(["http/1.1", "h2"], offer), "http/1.1")
        XCTAssertNil(select(["h3"], offer))
        XCTAssertNil(select(["h2"], []))
    }

    func testMalformedOffersNeverReadOutOfBounds() {
        XCTAssertNil(select(["h2"], [5, 0x68, 0x32]))  // length past the end
        XCTAssertNil(select(["h2"], [0, 2, 0x68, 0x32]))  // an empty name stops the scan
        XCTAssertEqual(select(["h2"], [2, 0x68, 0x32, 9]), "h2")  // trailing junk after a match
        XCTAssertNil(select(["h2"], [3, 0x68, 0x32, 0x32]))  // prefix is not a match
        // Every byte string up to length 4 parses without trouble.
        for length in 0...4 {
            var bytes = [UInt8](repeating: 0, count: length)
            func visit(_ index: Int) {
                if index == length {
                    _ = select(["h2", "a"], bytes)
                    return
                }
                for value: UInt8 in [0, 1, 2, 3, 0x61, 0x68, 0x32, 255] {
                    bytes[index] = value
                    visit(index + 1)
                }
            }
            visit(0)
        }
    }
}
