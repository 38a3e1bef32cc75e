import COpenSSL
import NIOCore

/// One `SSL` over a `ByteBufferBIO`: the calls the handler needs, each mapped to a small result
/// enum. Confined to the channel's event loop; every call clears the thread's error queue first.
final class SSLConnection {
    enum HandshakeResult {
        case incomplete
        case complete
        case failed(TLSError)
    }

    enum ReadResult {
        /// Bytes were appended to the buffer.
        case read
        /// No complete record: wait for more ciphertext.
        case wantRead
        /// The peer's close_notify.
        case closeNotify
        case failed(TLSError)
    }

    enum WriteResult {
        case complete
        case incomplete
        case failed(TLSError)
    }

    enum ShutdownResult {
        /// Our close_notify is written; the peer's has not arrived.
        case sent
        /// Both close_notify alerts have been exchanged.
        case complete
        case failed(TLSError)
    }

    let ssl: OpaquePointer
    /// The ciphertext buffers behind this connection's BIO (the BIO's callbacks use them).
    var transport = ByteBufferBIO()
    /// Keeps the callbacks' argument (the server generation) or the client context alive.
    private let owner: AnyObject

    /// Takes ownership of `ssl` and of the one reference to `bio`, which it gives to the `SSL`.
    private init(ssl: OpaquePointer, bio: OpaquePointer, owner: AnyObject) {
        self.ssl = ssl
        self.owner = owner
        // Unretained: the connection owns the SSL, the SSL owns the BIO, and `deinit` detaches
        // the pointer first, so the BIO can never reach a dead connection.
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        // Same BIO both ways: SSL_set_bio takes the one reference we have.
        SSL_set_bio(ssl, bio, bio)
    }

    deinit {
        if let bio = SSL_get_rbio(ssl) {
            BIO_set_data(bio, nil)
        }
        SSL_free(ssl)
    }

    static func server(generation: ServerContextGeneration) throws -> SSLConnection {
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(generation.defaultContext) else {
            throw TLSError.setupFailed(step: "SSL_new", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        guard let bio = ByteBufferBIO.makeBIO() else {
            SSL_free(ssl)
            throw TLSError.setupFailed(step: "BIO_new", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        let connection = SSLConnection(ssl: ssl, bio: bio, owner: generation)
        SSL_set_accept_state(ssl)
        return connection
    }

    static func client(context: TLSClientContext, serverName: String?) throws -> SSLConnection {
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.storage.ctx) else {
            throw TLSError.setupFailed(step: "SSL_new", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        guard let bio = ByteBufferBIO.makeBIO() else {
            SSL_free(ssl)
            throw TLSError.setupFailed(step: "BIO_new", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        // From here on `connection` owns `ssl`.
        let connection = SSLConnection(ssl: ssl, bio: bio, owner: context.storage)
        if let serverName = ServerName(serverName) {
            if !serverName.isIPAddress {
                // SNI carries host names only (RFC 6066 §3).
                guard lifeline_SSL_set_tlsext_host_name(ssl, serverName.host) == 1 else {
                    throw TLSError.invalidServerName(serverName.host, openSSLErrors: OpenSSLErrorQueue.drain())
                }
            }
            if context.verify {
                // OpenSSL 3 treats an IP literal here as an IP address to match against IP SANs.
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard SSL_set1_host(ssl, serverName.host) == 1 else {
                    throw TLSError.invalidServerName(serverName.host, openSSLErrors: OpenSSLErrorQueue.drain())
                }
            }
        }
        SSL_set_connect_state(ssl)
        return connection
    }

    func receive(_ ciphertext: ByteBuffer) {
        transport.receive(ciphertext)
    }

    func takeCiphertext() -> ByteBuffer? {
        transport.takeOutbound()
    }

    /// Drops ciphertext not yet read (after a failure: nothing will read it).
    func discardInbound() {
        transport.discardInbound()
    }

    func doHandshake() -> HandshakeResult {
        OpenSSLErrorQueue.clear()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .complete }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            let errors = OpenSSLErrorQueue.drain()
            let verifyResult = SSL_get_verify_result(ssl)
            if verifyResult != X509_V_OK {
                let reason = X509_verify_cert_error_string(verifyResult).map { String(cString: $0) } ?? "error \(verifyResult)"
                return .failed(.certificateVerificationFailed(reason: reason, openSSLErrors: errors))
            }
            return .failed(.handshakeFailed(openSSLErrors: errors))
        }
    }

    /// Decrypts at most one record's worth into the writable space of `buffer`.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        if buffer.writableBytes == 0 {
            buffer.reserveCapacity(minimumWritableBytes: 1024)
        }
        OpenSSLErrorQueue.clear()
        var rc: CInt = 0
        let ssl = self.ssl
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { pointer in
            var count = 0
            rc = SSL_read_ex(ssl, pointer.baseAddress, pointer.count, &count)
            return rc == 1 ? count : 0
        }
        if rc == 1 { return .read }
        return classifyReadFailure(rc)
    }

    /// Reads and throws away application data (while closing, nobody wants it).
    func discardRead() -> ReadResult {
        OpenSSLErrorQueue.clear()
        let rc = withUnsafeTemporaryAllocation(byteCount: 4096, alignment: 1) { pointer -> CInt in
            var count = 0
            return SSL_read_ex(ssl, pointer.baseAddress, pointer.count, &count)
        }
        if rc == 1 { return .read }
        return classifyReadFailure(rc)
    }

    private func classifyReadFailure(_ rc: CInt) -> ReadResult {
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        default:
            return .failed(.protocolError(openSSLErrors: OpenSSLErrorQueue.drain()))
        }
    }

    /// Encrypts all of `buffer` (OpenSSL writes whole buffers unless the BIO pushes back, and ours
    /// never does) and moves its reader index.
    func write(_ buffer: inout ByteBuffer) -> WriteResult {
        guard buffer.readableBytes > 0 else { return .complete }
        OpenSSLErrorQueue.clear()
        var written = 0
        let ssl = self.ssl
        let rc = buffer.withUnsafeReadableBytes { pointer in
            SSL_write_ex(ssl, pointer.baseAddress, pointer.count, &written)
        }
        if rc == 1 {
            buffer.moveReaderIndex(forwardBy: written)
            return buffer.readableBytes == 0 ? .complete : write(&buffer)
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            return .failed(.protocolError(openSSLErrors: OpenSSLErrorQueue.drain()))
        }
    }

    func shutdown() -> ShutdownResult {
        OpenSSLErrorQueue.clear()
        let rc = SSL_shutdown(ssl)
        switch rc {
        case 1:
            return .complete
        case 0:
            return .sent
        default:
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return .sent
            default:
                return .failed(.protocolError(openSSLErrors: OpenSSLErrorQueue.drain()))
            }
        }
    }

    /// Plaintext OpenSSL has decrypted but not yet returned, plus ciphertext not yet read: an
    /// upper bound for what the next reads can produce, used to size their buffer.
    var pendingBytesHint: Int {
        Int(SSL_pending(ssl)) + transport.inboundBytes
    }

    /// Whether OpenSSL frees its record buffers (about 34 KiB) whenever they are empty
    /// (`SSL_MODE_RELEASE_BUFFERS`), so that an idle connection holds none.
    var releasesRecordBuffers: Bool {
        lifeline_SSL_get_mode(ssl) & CLong(SSL_MODE_RELEASE_BUFFERS) != 0
    }

    /// What the peer's hello offered, as counts: cipher suites (server side only: OpenSSL keeps
    /// the client's list), signature algorithms and groups. Every one of these lists is kept for
    /// the life of the connection.
    var peerOffer: (cipherSuites: Int, signatureAlgorithms: Int, groups: Int) {
        let ciphers = SSL_get_client_ciphers(ssl).map { Int(OPENSSL_sk_num($0)) } ?? 0
        let signatureAlgorithms = Int(SSL_get_sigalgs(ssl, -1, nil, nil, nil, nil, nil))
        let groups = Int(lifeline_SSL_get1_groups(ssl, nil))
        return (ciphers, signatureAlgorithms, groups)
    }

    var negotiatedProtocol: String? {
        var pointer: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &pointer, &length)
        guard let pointer, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: pointer, count: Int(length)), as: UTF8.self)
    }
}

/// A host for SNI and verification: brackets stripped from IPv6 literals, a trailing dot removed.
struct ServerName {
    let host: String
    let isIPAddress: Bool

    init?(_ name: String?) {
        guard var host = name, !host.isEmpty else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") && host.count > 2 {
            host = String(host.dropFirst().dropLast())
        }
        if host.hasSuffix(".") { host.removeLast() }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.isIPAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
