/// Everything that can go wrong in the TLS layer. Cases that come from OpenSSL carry its error
/// queue as strings (oldest first), so a log line says what OpenSSL said.
public enum TLSError: Error, CustomStringConvertible, Sendable, Hashable {
    /// A PEM file could not be opened.
    case fileNotReadable(path: String, openSSLErrors: [String])
    /// The file holds no usable PEM certificate (chain).
    case invalidCertificate(path: String, openSSLErrors: [String])
    /// The file holds no usable PEM private key (an encrypted key counts: we never prompt).
    case invalidPrivateKey(path: String, openSSLErrors: [String])
    /// The private key does not belong to the certificate.
    case keyMismatch(certificatePath: String, keyPath: String, openSSLErrors: [String])
    /// An extra CA file could not be loaded.
    case invalidCAFile(path: String, openSSLErrors: [String])
    /// A server context needs at least one certificate/key pair.
    case noCertificates
    /// An ALPN protocol name must be 1...255 bytes.
    case invalidALPN(String)
    /// OpenSSL refused the cipher list.
    case invalidCipherList(String, openSSLErrors: [String])
    /// OpenSSL refused the server name for SNI or hostname verification.
    case invalidServerName(String, openSSLErrors: [String])
    /// Creating or configuring an SSL_CTX / SSL object failed (allocation, policy).
    case setupFailed(step: String, openSSLErrors: [String])
    /// The handshake failed: no shared protocol or cipher, a bad message, an alert from the peer...
    case handshakeFailed(openSSLErrors: [String])
    /// The peer's certificate did not verify (chain, dates or host name); `reason` is OpenSSL's
    /// X509 verification message, e.g. "Hostname mismatch".
    case certificateVerificationFailed(reason: String, openSSLErrors: [String])
    /// The handshake did not finish within the handler's handshake timeout.
    case handshakeTimedOut
    /// A TLS error after the handshake (bad record MAC, unexpected message, ...).
    case protocolError(openSSLErrors: [String])

    public var description: String {
        switch self {
        case .fileNotReadable(let path, let errors):
            return "cannot read \(path)" + Self.suffix(errors)
        case .invalidCertificate(let path, let errors):
            return "no valid PEM certificate in \(path)" + Self.suffix(errors)
        case .invalidPrivateKey(let path, let errors):
            return "no valid unencrypted PEM private key in \(path)" + Self.suffix(errors)
        case .keyMismatch(let certificatePath, let keyPath, let errors):
            return "private key \(keyPath) does not match certificate \(certificatePath)" + Self.suffix(errors)
        case .invalidCAFile(let path, let errors):
            return "cannot load CA certificates from \(path)" + Self.suffix(errors)
        case .noCertificates:
            return "a TLS server needs at least one certificate and key"
        case .invalidALPN(let name):
            return "invalid ALPN protocol name \"\(name)\" (must be 1 to 255 bytes)"
        case .invalidCipherList(let list, let errors):
            return "invalid cipher list \"\(list)\"" + Self.suffix(errors)
        case .invalidServerName(let name, let errors):
            return "invalid TLS server name \"\(name)\"" + Self.suffix(errors)
        case .setupFailed(let step, let errors):
            return "TLS setup failed: \(step)" + Self.suffix(errors)
        case .handshakeFailed(let errors):
            return "TLS handshake failed" + Self.suffix(errors)
        case .certificateVerificationFailed(let reason, let errors):
            return "TLS certificate verification failed: \(reason)" + Self.suffix(errors)
        case .handshakeTimedOut:
            return "TLS handshake timed out"
        case .protocolError(let errors):
            return "TLS protocol error" + Self.suffix(errors)
        }
    }

    private static func suffix(_ errors: [String]) -> String {
        errors.isEmpty ? "" : " (" + errors.joined(separator: "; ") + ")"
    }
}
