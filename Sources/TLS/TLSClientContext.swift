import COpenSSL

/// Client side (the gateway connecting to https origins): verifies the origin's certificate
/// against the system CA store plus an optional extra CA PEM file, checks that it names the host
/// (`SSL_set1_host`, given per connection as the handler's `serverName`), and sends that host as SNI.
/// `verify: false` disables both checks (SNI is still sent: origins need it to pick a certificate).
public final class TLSClientContext: Sendable {
    public let verify: Bool
    public let alpn: [String]
    let storage: ClientContextStorage

    public init(additionalCAPath: String? = nil, verify: Bool = true, alpn: [String] = ["http/1.1"]) throws {
        self.verify = verify
        self.alpn = alpn
        let ctx = try SSLContextPolicy.makeContext(server: false, cipherList: SSLContextPolicy.clientCipherList)
        do {
            try Self.configure(ctx, additionalCAPath: additionalCAPath, verify: verify, alpn: ALPN.validate(alpn))
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        self.storage = ClientContextStorage(ctx)
    }

    private static func configure(_ ctx: OpaquePointer, additionalCAPath: String?, verify: Bool, alpn: [[UInt8]]) throws {
        OpenSSLErrorQueue.clear()
        if verify {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw TLSError.setupFailed(step: "loading the system CA store", openSSLErrors: OpenSSLErrorQueue.drain())
            }
        }
        if let additionalCAPath {
            // Loaded even with verify off, so that a bad path is reported either way.
            try SSLContextPolicy.checkReadable(additionalCAPath)
            OpenSSLErrorQueue.clear()
            guard SSL_CTX_load_verify_locations(ctx, additionalCAPath, nil) == 1 else {
                throw TLSError.invalidCAFile(path: additionalCAPath, openSSLErrors: OpenSSLErrorQueue.drain())
            }
        }
        SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        if !alpn.isEmpty {
            let wire = ALPN.wireFormat(alpn)
            // Note: 0 means success for this one.
            guard SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw TLSError.setupFailed(step: "setting ALPN protocols", openSSLErrors: OpenSSLErrorQueue.drain())
            }
        }
    }
}

/// Owns the client SSL_CTX. `@unchecked Sendable`: configured once, then only used by SSL_new,
/// which OpenSSL allows from several threads.
final class ClientContextStorage: @unchecked Sendable {
    let ctx: OpaquePointer

    init(_ ctx: OpaquePointer) {
        self.ctx = ctx
    }

    deinit {
        SSL_CTX_free(ctx)
    }
}
