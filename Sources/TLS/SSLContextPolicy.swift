import COpenSSL

/// What every SSL_CTX of ours has in common, server or client.
enum SSLContextPolicy {
    /// TLS 1.2 ciphers for servers: forward-secret AEAD suites only (what Mozilla calls
    /// "intermediate"). HTTP/2 forbids the others anyway (RFC 7540 §9.2.2), and every client of the
    /// last decade has one of these. TLS 1.3 suites are OpenSSL's defaults.
    static let serverCipherList = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"

    /// TLS 1.2 ciphers for connecting to origins: broader, since origins can be old.
    static let clientCipherList = "HIGH:!aNULL:!eNULL:!MD5:!RC4:!3DES"

    /// Creates a context with the shared policy: TLS 1.2 minimum, no compression, no
    /// renegotiation, released buffers on idle connections, never a passphrase prompt.
    static func makeContext(server: Bool, cipherList: String) throws -> OpaquePointer {
        OpenSSLErrorQueue.clear()
        guard let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.setupFailed(step: "SSL_CTX_new", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        do {
            try configure(ctx, server: server, cipherList: cipherList)
            return ctx
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
    }

    private static func configure(_ ctx: OpaquePointer, server: Bool, cipherList: String) throws {
        var options = lifeline_SSL_OP_ALL | lifeline_SSL_OP_NO_COMPRESSION | lifeline_SSL_OP_NO_RENEGOTIATION
            | lifeline_SSL_OP_NO_SSLv3 | lifeline_SSL_OP_NO_TLSv1 | lifeline_SSL_OP_NO_TLSv1_1
        if server {
            options |= lifeline_SSL_OP_CIPHER_SERVER_PREFERENCE
        }
        SSL_CTX_set_options(ctx, options)

        // RELEASE_BUFFERS: OpenSSL frees its ~34 KiB of record buffers whenever they are empty,
        // which is almost always on an idle SSE connection. ACCEPT_MOVING_WRITE_BUFFER: a retried
        // SSL_write may come from a different ByteBuffer address.
        _ = lifeline_SSL_CTX_set_mode(ctx, CLong(SSL_MODE_RELEASE_BUFFERS) | CLong(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))

        guard lifeline_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            throw TLSError.setupFailed(step: "TLS 1.2 minimum", openSSLErrors: OpenSSLErrorQueue.drain())
        }
        guard SSL_CTX_set_cipher_list(ctx, cipherList) == 1 else {
            throw TLSError.invalidCipherList(cipherList, openSSLErrors: OpenSSLErrorQueue.drain())
        }
        // An encrypted key must fail to load, not block the process on a terminal prompt.
        SSL_CTX_set_default_passwd_cb(ctx, noPassphrase)

        if server {
            // Resumption by stateless tickets only: a server-side session cache would keep up to
            // 20,000 sessions in memory per context for little gain.
            _ = lifeline_SSL_CTX_set_session_cache_mode(ctx, CLong(SSL_SESS_CACHE_OFF))
            _ = lifeline_SSL_CTX_set_dh_auto(ctx, 1)
        }
    }

    /// Checks that a file can be opened, so that a missing file is reported as such rather than
    /// as a PEM error.
    static func checkReadable(_ path: String) throws {
        OpenSSLErrorQueue.clear()
        guard let bio = BIO_new_file(path, "r") else {
            throw TLSError.fileNotReadable(path: path, openSSLErrors: OpenSSLErrorQueue.drain())
        }
        BIO_free(bio)
    }
}

/// The passphrase callback: there is never a passphrase.
func noPassphrase(
    _ buffer: UnsafeMutablePointer<CChar>?, _ size: CInt, _ rwflag: CInt, _ userdata: UnsafeMutableRawPointer?
) -> CInt {
    0
}
