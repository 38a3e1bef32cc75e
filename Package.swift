// swift-tools-version:6.0
import PackageDescription

// Module graph (data flows left to right):
//   SSE ─► LifelineCore ─► Upstream ─► Server ─► LifelineMain ─► lifeline
//   COpenSSL ─► TLS (used by Upstream and Server);  CNghttp2 ─► HTTP2 (used by Server)
//   HTTP2 ─► HTTP2Client (used only by LifelineBench)
// Flags and DemoOrigin stand alone; LifelineMain wires everything together.
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let nioConcurrency = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioTLS = Target.Dependency.product(name: "NIOTLS", package: "swift-nio")

let package = Package(
    name: "Lifeline",
    products: [
        .executable(name: "lifeline", targets: ["lifeline"]),
        .executable(name: "lifeline-bench", targets: ["LifelineBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
    ],
    targets: [
        // The SSE wire format: WHATWG parser and serializer. No I/O.
        .target(name: "SSE", dependencies: [nioCore]),
        // Flag files and command lines: parsing, typed values, FILE:LINE errors, help text.
        .target(name: "Flags"),
        // The system's OpenSSL 3 and libnghttp2, with shims for what Swift cannot import.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),
        // glibc's malloc_trim, for giving freed memory back after streams end (HeapTrimmer).
        .systemLibrary(name: "CMalloc"),
        // posix_spawn's close-from file action, for starting the upgraded process clean.
        .systemLibrary(name: "CSpawn"),
        // liburing (Debian liburing-dev), linked statically, and a ring of socket sends over it:
        // one event's writes to many clients in one system call (`--io-uring`).
        .target(name: "CLiburing", linkerSettings: [.linkedLibrary(":liburing.a")]),
        .target(name: "SendRing", dependencies: ["CLiburing"]),
        // OpenSSL as a SwiftNIO handler (server and client), with ALPN and SNI.
        .target(name: "TLS", dependencies: ["COpenSSL", nioCore, nioTLS, nioConcurrency, .product(name: "Atomics", package: "swift-atomics")]),
        // An nghttp2 server session as a SwiftNIO handler.
        .target(name: "HTTP2", dependencies: ["CNghttp2", nioCore, nioHTTP1, nioConcurrency]),
        // An nghttp2 client session for the load tool; kept out of the gateway's HTTP2 module.
        .target(name: "HTTP2Client", dependencies: ["HTTP2", "CNghttp2", nioCore]),
        // Streams, the hub, replay buffer, fan-out, heartbeats. Knows subscribers only as byte sinks.
        .target(name: "LifelineCore", dependencies: ["SSE", nioCore, nioConcurrency, logging]),
        // The origin client: HTTP/1.1 requests, SSE sessions that reconnect with backoff.
        .target(name: "Upstream", dependencies: ["SSE", "LifelineCore", "TLS", nioCore, nioPosix, nioHTTP1, logging]),
        // Listeners and the HTTP/1.1 front end, routing, plain proxying.
        // The browser client it serves is lifeline-client.js, embedded by scripts/embed-client-script.
        .target(name: "Server", dependencies: ["LifelineCore", "Upstream", "TLS", "HTTP2", "CMalloc", "CLiburing", "SendRing", nioCore, nioPosix, nioHTTP1, nioTLS, nioConcurrency, logging,
                                               .product(name: "Atomics", package: "swift-atomics")],
                exclude: ["ClientScript/lifeline-client.js"]),
        // The built-in demo origin (`lifeline --demo`, `lifeline demo-origin`).
        .target(name: "DemoOrigin", dependencies: [nioCore, nioPosix, nioHTTP1, nioEmbedded]),
        // The admin listener: /metrics (Prometheus), health, /status.json and the live status page.
        .target(name: "Admin", dependencies: ["LifelineCore", "Server", nioCore, nioPosix, nioHTTP1, nioConcurrency,
                                              .product(name: "Prometheus", package: "swift-prometheus")],
                exclude: ["StatusPage/status-page.html"]),
        // The shared store's client: a RESP3 codec and a pipelined connection over SwiftNIO (no Swift Redis client is among the machine's packages).
        .target(name: "Redis", dependencies: ["TLS", nioCore, nioPosix, nioConcurrency, logging]),
        // The shared history in Redis (`--redis`): leases, fenced appends, followers, replay
        // lookups; the client policy over `Redis` (reconnects, scripts, timeouts).
        .target(name: "RedisStore", dependencies: ["Redis", "LifelineCore", "TLS", nioCore, nioConcurrency, logging]),
        // Lifeline's flags, wiring, signals and lifecycle; `lifeline` is a thin main around it.
        .target(name: "LifelineMain", dependencies: ["Flags", "SSE", "LifelineCore", "Upstream", "Server", "Admin", "DemoOrigin", "CSpawn", "TLS", "RedisStore", "Redis", nioCore, nioPosix, nioConcurrency, logging,
                                                     .product(name: "Atomics", package: "swift-atomics")]),
        .executableTarget(name: "lifeline", dependencies: ["LifelineMain"]),
        // The SSE load client and benchmark origin (`lifeline-bench`).
        .executableTarget(
            name: "LifelineBench",
            dependencies: ["SSE", "TLS", "HTTP2Client", "Flags", nioCore, nioPosix, nioHTTP1, nioConcurrency,
                           .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Sources/LifelineBench"
        ),

        // Test-only helpers: an SSE client on real sockets and a scriptable origin.
        .target(name: "LifelineTestSupport", dependencies: [nioCore, nioPosix, nioHTTP1], path: "Tests/LifelineTestSupport"),
        .testTarget(name: "TLSTests", dependencies: ["TLS", nioCore, nioPosix, nioEmbedded, nioTLS]),
        .testTarget(
            name: "LifelineBenchTests",
            dependencies: ["LifelineBench", "SSE", nioCore, nioEmbedded, .product(name: "Histogram", package: "hdrhistogram-swift")]
        ),
        // HTTP/2 test helpers: frames by hand, an HPACK decoder, a recording stream delegate.
        .target(name: "HTTP2TestSupport", dependencies: ["HTTP2", "CNghttp2", nioCore], path: "Tests/HTTP2TestSupport"),
        .testTarget(name: "HTTP2Tests", dependencies: ["HTTP2", "HTTP2TestSupport", "CNghttp2", nioCore, nioPosix, nioHTTP1, nioEmbedded]),
        .testTarget(name: "HTTP2ClientTests", dependencies: ["HTTP2Client", "HTTP2", "HTTP2TestSupport", nioCore, nioEmbedded]),
        .testTarget(name: "SSETests", dependencies: ["SSE", nioCore]),
        // Real redis-server processes for the Redis tests (started on loopback, killed after).
        .target(name: "RedisTestSupport", dependencies: ["Redis"], path: "Tests/RedisTestSupport"),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "RedisTestSupport", nioCore, nioPosix, nioEmbedded]),
        .testTarget(name: "RedisStoreTests", dependencies: ["RedisStore", "Redis", "RedisTestSupport", "LifelineCore", "TLS", nioCore, nioPosix, nioEmbedded, logging]),
        .testTarget(name: "FlagsTests", dependencies: ["Flags"]),
        .testTarget(name: "LifelineCoreTests", dependencies: ["LifelineCore", "SSE", nioCore, nioPosix, nioEmbedded]),
        .testTarget(name: "UpstreamTests", dependencies: ["Upstream", "LifelineCore", "SSE", "LifelineTestSupport", nioCore, nioPosix, nioHTTP1, nioEmbedded]),
        .testTarget(name: "DemoOriginTests", dependencies: ["DemoOrigin", "LifelineTestSupport", nioCore, nioPosix, nioHTTP1, nioEmbedded]),
        // The request path and the connection layer without sockets: pure state machines and
        // every order of events on an EmbeddedEventLoop with in-memory origins.
        .testTarget(name: "ServerTests", dependencies: ["Server", "LifelineCore", "Upstream", "CMalloc", "SendRing", "HTTP2", "HTTP2TestSupport", nioCore, nioHTTP1, nioEmbedded, logging, nioConcurrency]),
        .testTarget(name: "IntegrationTests", dependencies: ["LifelineMain", "Server", "Admin", "CMalloc", "LifelineCore", "DemoOrigin", "LifelineTestSupport", "SSE", nioCore, nioPosix, nioHTTP1, nioEmbedded,
                                                       .product(name: "Atomics", package: "swift-atomics")]),

        // Fuzz targets (Tests/Fuzz; docs/reliability.md). `scripts/fuzz` builds them with libFuzzer
        // (-sanitize=fuzzer,address -DLIFELINE_FUZZ); an ordinary build makes input replayers.
        .target(name: "FuzzSupport", path: "Tests/Fuzz/Support", swiftSettings: [.enableExperimentalFeature("Extern")]),
        .executableTarget(name: "fuzz-sse-parser", dependencies: ["FuzzSupport", "SSE", nioCore],
                          path: "Tests/Fuzz/sse-parser", exclude: ["corpus", "regressions"]),
        .executableTarget(name: "fuzz-flag-file", dependencies: ["FuzzSupport", "Flags"],
                          path: "Tests/Fuzz/flag-file", exclude: ["corpus", "regressions"]),
        .executableTarget(name: "fuzz-http1-server", dependencies: ["FuzzSupport", "Server", "Upstream", "LifelineCore", nioCore, nioHTTP1, nioEmbedded, logging],
                          path: "Tests/Fuzz/http1-server", exclude: ["corpus", "regressions"]),
        .executableTarget(name: "fuzz-h2-server", dependencies: ["FuzzSupport", "HTTP2", "CNghttp2", nioCore, nioHTTP1, nioEmbedded],
                          path: "Tests/Fuzz/h2-server", exclude: ["corpus", "regressions"]),
        .executableTarget(name: "fuzz-resp3", dependencies: ["FuzzSupport", "Redis", nioCore],
                          path: "Tests/Fuzz/resp3", exclude: ["corpus", "regressions"]),
    ]
)
