import COpenSSL

/// What an established TLS connection negotiated, for logs and diagnostics.
public struct TLSConnectionInfo: Sendable, Hashable {
    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String
    /// OpenSSL's name of the cipher suite, e.g. "TLS_AES_256_GCM_SHA384".
    public var cipherSuite: String
    /// The ALPN protocol, if one was negotiated.
    public var negotiatedProtocol: String?
    /// The SNI name: the one the client sent (server side) or set (client side).
    public var serverName: String?
    public var sessionReused: Bool
    /// The certificate this side presented (servers).
    public var localCertificate: TLSCertificateSummary?
    /// The peer's certificate (clients; servers do not ask for one).
    public var peerCertificate: TLSCertificateSummary?

    init(ssl: OpaquePointer) {
        protocolVersion = SSL_get_version(ssl).map { String(cString: $0) } ?? "unknown"
        cipherSuite = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "unknown"
        var alpn: UnsafePointer<UInt8>? = nil
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpn, &alpnLength)
        if let alpn, alpnLength > 0 {
            negotiatedProtocol = String(decoding: UnsafeBufferPointer(start: alpn, count: Int(alpnLength)), as: UTF8.self)
        }
        serverName = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        sessionReused = SSL_session_reused(ssl) == 1
        localCertificate = SSL_get_certificate(ssl).map { TLSCertificateSummary(x509: $0) }
        if let peer = lifeline_SSL_get_peer_certificate(ssl) {
            peerCertificate = TLSCertificateSummary(x509: peer)
            X509_free(peer)
        }
    }
}

/// A certificate as a log line can show it.
public struct TLSCertificateSummary: Sendable, Hashable {
    /// OpenSSL's one-line subject, e.g. "/CN=localhost".
    public var subject: String
    /// SHA-256 of the DER encoding, as the `openssl x509 -fingerprint -sha256` CLI prints it
    /// ("AB:CD:...").
    public var sha256Fingerprint: String

    init(x509: OpaquePointer) {
        if let line = X509_NAME_oneline(X509_get_subject_name(x509), nil, 0) {
            subject = String(cString: line)
            lifeline_OPENSSL_free(line)
        } else {
            subject = ""
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        if X509_digest(x509, EVP_sha256(), &digest, &length) == 1 {
            sha256Fingerprint = digest.prefix(Int(length)).map { byte in
                let hex = String(byte, radix: 16, uppercase: true)
                return hex.count == 1 ? "0" + hex : hex
            }.joined(separator: ":")
        } else {
            sha256Fingerprint = ""
        }
    }
}
