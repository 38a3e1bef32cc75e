import COpenSSL
import NIOConcurrencyHelpers

/// Server side: one or more certificate/key pairs (PEM files). The first is the default; the
/// others are chosen by SNI, matching the client's server name exactly or by wildcard against each
/// certificate's DNS names (its subject CN when it has none), in the order given.
///
/// ALPN uses the server's preference order (`alpn`), not the client's. A client that offers none of
/// them gets no ALPN answer (and falls back to HTTP/1.1) rather than a fatal alert.
///
/// TLS 1.2 minimum; forward-secret AEAD ciphers for TLS 1.2, OpenSSL's defaults for TLS 1.3;
/// `SSL_MODE_RELEASE_BUFFERS`; no compression, no renegotiation; session tickets but no server
/// session cache.
public final class TLSServerContext: Sendable {
    public struct CertificatePair: Sendable, Hashable {
        public var certificatePath: String
        public var keyPath: String

        public init(certificatePath: String, keyPath: String) {
            self.certificatePath = certificatePath
            self.keyPath = keyPath
        }
    }

    private let pairs: NIOLockedValueBox<[CertificatePair]>
    /// The PEM files read at start and at each reload.
    public var certificates: [CertificatePair] { self.pairs.withLockedValue { $0 } }
    public let alpn: [String]
    private let cipherList: String
    private let current: NIOLockedValueBox<ServerContextGeneration>

    /// Loads every pair now: a missing file, a bad PEM or a key that does not match its
    /// certificate throws a `TLSError` naming the file.
    public convenience init(certificates: [CertificatePair], alpn: [String] = ["h2", "http/1.1"]) throws {
        try self.init(certificates: certificates, alpn: alpn, cipherList: SSLContextPolicy.serverCipherList)
    }

    /// As above, with an OpenSSL cipher list for TLS 1.2 instead of the default policy.
    public init(certificates: [CertificatePair], alpn: [String], cipherList: String) throws {
        self.pairs = NIOLockedValueBox(certificates)
        self.alpn = alpn
        self.cipherList = cipherList
        let generation = try ServerContextGeneration(pairs: certificates, alpn: ALPN.validate(alpn), cipherList: cipherList)
        self.current = NIOLockedValueBox(generation)
    }

    /// Re-reads the PEM files (SIGHUP). New handshakes use the new certificates; established
    /// connections are untouched (each keeps the contexts it started with). On failure the old
    /// certificates stay in use and the error is thrown.
    public func reload() throws {
        try self.reload(certificates: self.certificates)
    }

    /// Reads `certificates` (a configuration reload may name other files); on success they are
    /// the ones later reloads read.
    public func reload(certificates: [CertificatePair]) throws {
        let generation = try ServerContextGeneration(pairs: certificates, alpn: ALPN.validate(alpn), cipherList: cipherList)
        self.pairs.withLockedValue { $0 = certificates }
        current.withLockedValue { $0 = generation }
    }

    /// The contexts new connections start with.
    var generation: ServerContextGeneration {
        current.withLockedValue { $0 }
    }
}

/// One load of the certificate files: an SSL_CTX per pair, configured identically, the first being
/// the default. Connections keep a strong reference to the generation they started with, because
/// the SNI and ALPN callbacks receive it as their (unretained) argument.
///
/// `@unchecked Sendable`: immutable after `init`; OpenSSL allows SSL_new and the callbacks' reads
/// (X509_check_host on the loaded certificates) from several threads at once.
final class ServerContextGeneration: @unchecked Sendable {
    let contexts: [OpaquePointer]
    let alpn: [[UInt8]]

    init(pairs: [TLSServerContext.CertificatePair], alpn: [[UInt8]], cipherList: String) throws {
        guard !pairs.isEmpty else { throw TLSError.noCertificates }
        var contexts: [OpaquePointer] = []
        do {
            for pair in pairs {
                let ctx = try SSLContextPolicy.makeContext(server: true, cipherList: cipherList)
                contexts.append(ctx)
                try Self.loadPair(pair, into: ctx)
            }
        } catch {
            for ctx in contexts { SSL_CTX_free(ctx) }
            throw error
        }
        self.contexts = contexts
        self.alpn = alpn
        let argument = Unmanaged.passUnretained(self).toOpaque()
        for ctx in contexts {
            // Every context gets both callbacks: after SNI switches an SSL to another context,
            // OpenSSL takes the ALPN callback from the new one.
            _ = lifeline_SSL_CTX_set_tlsext_servername_callback(ctx, serverNameCallback)
            _ = lifeline_SSL_CTX_set_tlsext_servername_arg(ctx, argument)
            SSL_CTX_set_alpn_select_cb(ctx, alpnSelectCallback, argument)
        }
    }

    deinit {
        // Connections still using a context hold their own OpenSSL reference to it.
        for ctx in contexts { SSL_CTX_free(ctx) }
    }

    var defaultContext: OpaquePointer { contexts[0] }

    /// The first context whose certificate matches `serverName`, or nil.
    func context(forServerName serverName: String) -> OpaquePointer? {
        var name = serverName
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty else { return nil }
        let length = name.utf8.count
        let flags = UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
        for ctx in contexts {
            guard let certificate = SSL_CTX_get0_certificate(ctx) else { continue }
            let matched = name.withCString { pointer in
                X509_check_host(certificate, pointer, length, flags, nil)
            }
            if matched == 1 { return ctx }
        }
        return nil
    }

    private static func loadPair(_ pair: TLSServerContext.CertificatePair, into ctx: OpaquePointer) throws {
        try SSLContextPolicy.checkReadable(pair.certificatePath)
        try SSLContextPolicy.checkReadable(pair.keyPath)

        OpenSSLErrorQueue.clear()
        guard SSL_CTX_use_certificate_chain_file(ctx, pair.certificatePath) == 1,
            let certificate = SSL_CTX_get0_certificate(ctx)
        else {
            throw TLSError.invalidCertificate(path: pair.certificatePath, openSSLErrors: OpenSSLErrorQueue.drain())
        }

        // The key is read separately so that a key of the wrong certificate is reported as a
        // mismatch, not as an unreadable key.
        guard let keyBIO = BIO_new_file(pair.keyPath, "r") else {
            throw TLSError.fileNotReadable(path: pair.keyPath, openSSLErrors: OpenSSLErrorQueue.drain())
        }
        defer { BIO_free(keyBIO) }
        guard let key = PEM_read_bio_PrivateKey(keyBIO, nil, noPassphrase, nil) else {
            throw TLSError.invalidPrivateKey(path: pair.keyPath, openSSLErrors: OpenSSLErrorQueue.drain())
        }
        defer { EVP_PKEY_free(key) }
        guard X509_check_private_key(certificate, key) == 1 else {
            throw TLSError.keyMismatch(
                certificatePath: pair.certificatePath, keyPath: pair.keyPath, openSSLErrors: OpenSSLErrorQueue.drain())
        }
        guard SSL_CTX_use_PrivateKey(ctx, key) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.keyMismatch(
                certificatePath: pair.certificatePath, keyPath: pair.keyPath, openSSLErrors: OpenSSLErrorQueue.drain())
        }
    }
}

/// SNI: switch the connection to the context whose certificate matches the requested name. No
/// name, or no match: stay on the default. Runs inside SSL_do_handshake on the event loop.
private func serverNameCallback(
    _ ssl: OpaquePointer?, _ alert: UnsafeMutablePointer<CInt>?, _ argument: UnsafeMutableRawPointer?
) -> CInt {
    guard let ssl, let argument, let namePointer = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
        return SSL_TLSEXT_ERR_OK
    }
    let generation = Unmanaged<ServerContextGeneration>.fromOpaque(argument).takeUnretainedValue()
    // OpenSSL has checked the name: at most 255 bytes, no NUL.
    let name = String(cString: namePointer)
    if let ctx = generation.context(forServerName: name), ctx != SSL_get_SSL_CTX(ssl) {
        _ = SSL_set_SSL_CTX(ssl, ctx)
    }
    return SSL_TLSEXT_ERR_OK
}

/// ALPN: the server's preference among the client's offer; no overlap means no ALPN (NOACK).
private func alpnSelectCallback(
    _ ssl: OpaquePointer?,
    _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?,
    _ offered: UnsafePointer<UInt8>?,
    _ offeredLength: UInt32,
    _ argument: UnsafeMutableRawPointer?
) -> CInt {
    guard let out, let outLength, let offered, let argument else { return SSL_TLSEXT_ERR_NOACK }
    let generation = Unmanaged<ServerContextGeneration>.fromOpaque(argument).takeUnretainedValue()
    let offer = UnsafeRawBufferPointer(start: offered, count: Int(offeredLength))
    guard let range = ALPN.select(preferred: generation.alpn, offered: offer) else { return SSL_TLSEXT_ERR_NOACK }
    out.pointee = offered + range.lowerBound
    outLength.pointee = UInt8(range.count)
    return SSL_TLSEXT_ERR_OK
}
