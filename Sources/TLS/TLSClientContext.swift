import COpenSSL

/// Client side (the gateway connecting to https origins): verifies the origin's certificate
/// against the system CA store plus an optional extra CA PEM file, checks that it names the host
/// (`SSL_set1_host`, given per connection as the handler's `serverName`), and sends that host as SNI.
/// `verify: false` disables both checks (SNI is still sent: origins need it to pick a certificate).
public final class TLSClientContext: Sendable {
    /// What the client offers in its ClientHello besides ALPN: TLS 1.2 cipher suites, signature
    /// algorithms and groups. (TLS 1.3 suites are OpenSSL's defaults either way, and the minimum
    /// is TLS 1.2 either way.)
    public struct Offer: Sendable, Equatable {
        /// TLS 1.2 cipher list, in OpenSSL's syntax.
        public var tls12Ciphers: String
        /// Signature algorithms (`SSL_CTX_set1_sigalgs_list` syntax); nil: OpenSSL's defaults.
        public var signatureAlgorithms: String?
        /// Key exchange groups (`SSL_CTX_set1_groups_list` syntax); nil: OpenSSL's defaults.
        public var groups: String?

        public init(tls12Ciphers: String, signatureAlgorithms: String? = nil, groups: String? = nil) {
            self.tls12Ciphers = tls12Ciphers
            self.signatureAlgorithms = signatureAlgorithms
            self.groups = groups
        }

        /// For origins: a broad TLS 1.2 list, since origins can be old; OpenSSL's defaults for
        /// the rest.
        public static let origin = Offer(tls12Ciphers: SSLContextPolicy.clientCipherList)

        /// What current browsers offer (Chrome and Firefox, 2024, without GREASE and without the
        /// post-quantum hybrid group, which OpenSSL 3.0 lacks): 12 TLS 1.2 suites, 8 signature
        /// algorithms, 3 groups. For load tools that stand in for browsers: a server keeps the
        /// client's lists for the life of the connection (OpenSSL's `peer_ciphers`, peer signature
        /// algorithms and groups), and OpenSSL's own longer defaults would make each connection
        /// cost a server about 0.8 KiB more than a browser's does.
        public static let browserLike = Offer(
            tls12Ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                + "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA",
            signatureAlgorithms: "ECDSA+SHA256:rsa_pss_rsae_sha256:RSA+SHA256:ECDSA+SHA384:rsa_pss_rsae_sha384:"
                + "RSA+SHA384:rsa_pss_rsae_sha512:RSA+SHA512",
            groups: "X25519:P-256:P-384")
    }

    public let verify: Bool
    public let alpn: [String]
    public let offer: Offer
    let storage: ClientContextStorage

    public init(
        additionalCAPath: String? = nil, verify: Bool = true, alpn: [String] = ["http/1.1"], offer: Offer = .origin
    ) throws {
        self.verify = verify
        self.alpn = alpn
        self.offer = offer
        let ctx = try SSLContextPolicy.makeContext(server: false, cipherList: offer.tls12Ciphers)
        do {
            try Self.configure(ctx, additionalCAPath: additionalCAPath, verify: verify, alpn: ALPN.validate(alpn))
            try Self.configure(ctx, offer: offer)
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        self.storage = ClientContextStorage(ctx)
    }

    private static func configure(_ ctx: OpaquePointer, offer: Offer) throws {
        OpenSSLErrorQueue.clear()
        if let signatureAlgorithms = offer.signatureAlgorithms {
            guard lifeline_SSL_CTX_set1_sigalgs_list(ctx, signatureAlgorithms) == 1 else {
                throw TLSError.setupFailed(
                    step: "signature algorithms \"\(signatureAlgorithms)\"", openSSLErrors: OpenSSLErrorQueue.drain())
            }
        }
        if let groups = offer.groups {
            guard lifeline_SSL_CTX_set1_groups_list(ctx, groups) == 1 else {
                throw TLSError.setupFailed(step: "groups \"\(groups)\"", openSSLErrors: OpenSSLErrorQueue.drain())
            }
        }
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
