import Foundation
import NIOCore
import NIOPosix
import NIOTLS
import XCTest

@testable import TLS

/// The handler on real sockets against independent peers: curl and `openssl s_client` against a
/// tiny NIO server, and our client against `openssl s_server`. Every external process is bounded
/// in time.
final class RealSocketTests: XCTestCase {
    let pki = TestPKI.shared
    var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        group = nil
    }

    private func startServer(alpn: [String], metrics: TLSMetrics) throws -> (Channel, Int) {
        let serverContext = try pki.serverContext(alpn: alpn)
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        OpenSSLHandler.server(context: serverContext, metrics: metrics), EchoOrHTTPHandler(),
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        return (channel, try XCTUnwrap(channel.localAddress?.port))
    }

    private func which(_ program: String) -> Bool {
        (try? runProcess("/usr/bin/env", ["which", program], timeout: 5).status) == 0
    }

    func testCurlOverHTTP1() throws {
        guard which("curl") else { throw XCTSkip("curl is not installed") }
        let metrics = TLSMetrics()
        let (server, port) = try startServer(alpn: ["h2", "http/1.1"], metrics: metrics)
        defer { try? server.close().wait() }

        let result = try runProcess(
            "/usr/bin/env",
            [
                "curl", "-sS", "--max-time", "10", "--http1.1", "--cacert", pki.caPath,
                "--resolve", "localhost:\(port):127.0.0.1", "https://localhost:\(port)/hello",
                "-w", "\nhttp=%{http_version}\n",
            ], timeout: 20)
        XCTAssertFalse(result.timedOut)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("hello over TLS, alpn=http/1.1"), result.output)
        XCTAssertTrue(result.output.contains("http=1.1"), result.output)
        XCTAssertEqual(metrics.snapshot.handshakesCompleted, 1)
    }

    func testCurlRejectsWithoutTheCA() throws {
        guard which("curl") else { throw XCTSkip("curl is not installed") }
        let metrics = TLSMetrics()
        let (server, port) = try startServer(alpn: ["http/1.1"], metrics: metrics)
        defer { try? server.close().wait() }
        let result = try runProcess(
            "/usr/bin/env",
            ["curl", "-sS", "--max-time", "10", "--resolve", "localhost:\(port):127.0.0.1", "https://localhost:\(port)/"],
            timeout: 20)
        XCTAssertNotEqual(result.status, 0, result.output)
        // The server counts curl's refusal as a failed handshake, and keeps serving.
        try waitUntil { metrics.snapshot.handshakesFailed == 1 }
        XCTAssertEqual(metrics.snapshot.handshakesCompleted, 0)
    }

    func testOpenSSLClientEchoWithH2AndCleanClose() throws {
        let metrics = TLSMetrics()
        let (server, port) = try startServer(alpn: ["h2", "http/1.1"], metrics: metrics)
        defer { try? server.close().wait() }

        let result = try runProcess(
            "/usr/bin/env",
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost",
                "-CAfile", pki.caPath, "-verify_return_error", "-verify_hostname", "localhost",
                "-alpn", "http/1.1,h2", "-ign_eof",
            ], input: "ping\n", timeout: 20)
        XCTAssertFalse(result.timedOut, result.output)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("ALPN protocol: h2"), result.output)
        XCTAssertTrue(result.output.contains("Verify return code: 0 (ok)"), result.output)
        XCTAssertTrue(result.output.contains("echo: ping"), result.output)
        try waitUntil { metrics.snapshot.cleanCloses == 1 }
        XCTAssertEqual(metrics.snapshot.handshakesCompleted, 1)
        XCTAssertEqual(metrics.snapshot.uncleanEOFs, 0)
    }

    func testOpenSSLClientWithTLS12() throws {
        let metrics = TLSMetrics()
        let (server, port) = try startServer(alpn: ["http/1.1"], metrics: metrics)
        defer { try? server.close().wait() }
        let result = try runProcess(
            "/usr/bin/env",
            [
                "openssl", "s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost", "-tls1_2",
                "-CAfile", pki.caPath, "-verify_return_error", "-ign_eof",
            ], input: "ping\n", timeout: 20)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("Protocol  : TLSv1.2"), result.output)
        // Forward-secret AEAD only.
        XCTAssertTrue(result.output.contains("Cipher is ECDHE-"), result.output)
        XCTAssertTrue(result.output.contains("echo: ping"), result.output)
    }

    func testOurClientAgainstOpenSSLServer() throws {
        // A free port: bind, note it, release it for s_server.
        let probe = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = try XCTUnwrap(probe.localAddress?.port)
        try probe.close().wait()

        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = [
            "openssl", "s_server", "-accept", "127.0.0.1:\(port)", "-cert", pki.localhost.certificate,
            "-key", pki.localhost.key, "-alpn", "http/1.1", "-www", "-naccept", "1", "-quiet",
        ]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            if server.isRunning { server.terminate() }
            server.waitUntilExit()
        }

        let clientContext = try pki.clientContext(alpn: ["h2", "http/1.1"])
        let metrics = TLSMetrics()
        var channel: Channel? = nil
        var done: EventLoopPromise<CollectingHandler.Result>? = nil
        let deadline = Date().addingTimeInterval(10)
        while channel == nil, Date() < deadline {
            let promise = group.next().makePromise(of: CollectingHandler.Result.self)
            channel = try? ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            OpenSSLHandler.client(context: clientContext, serverName: "localhost", metrics: metrics),
                            CollectingHandler(done: promise, request: "GET / HTTP/1.0\r\n\r\n"),
                        ])
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait()
            if channel == nil {
                promise.fail(TestError("not connected"))
                Thread.sleep(forTimeInterval: 0.05)
            } else {
                done = promise
            }
        }
        let connected = try XCTUnwrap(channel, "s_server did not start listening")
        let result = try XCTUnwrap(done)
        let timeout = connected.eventLoop.scheduleTask(in: .seconds(15)) { connected.close(promise: nil) }
        defer { timeout.cancel() }
        let (text, negotiated, errors) = try result.futureResult.wait()

        XCTAssertEqual(errors, [])
        XCTAssertEqual(negotiated, "http/1.1")
        XCTAssertTrue(text.hasPrefix("HTTP/1.0 200 ok"), text)
        XCTAssertEqual(metrics.snapshot.handshakesCompleted, 1)
    }

    private func waitUntil(_ condition: () -> Bool, timeout: TimeInterval = 5) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            guard Date() < deadline else { throw TestError("condition not met in \(timeout)s") }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }
}

/// Answers an HTTP GET with a small response naming the ALPN protocol, or echoes a line of text;
/// then closes (with close_notify, through the TLS handler).
private final class EchoOrHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var received = ""
    private var negotiated: String?
    private var answered = false

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiatedProtocol)? = event as? TLSUserEvent {
            negotiated = negotiatedProtocol
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += String(buffer: unwrapInboundIn(data))
        guard !answered else { return }
        let reply: String
        if received.hasPrefix("GET ") {
            guard received.contains("\r\n\r\n") else { return }
            let body = "hello over TLS, alpn=\(negotiated ?? "none")\n"
            reply = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        } else {
            guard let newline = received.firstIndex(of: "\n") else { return }
            reply = "echo: " + received[..<newline] + "\n"
        }
        answered = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply)), promise: nil)
        context.close(promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Failed handshakes are expected in some tests; the metrics count them.
    }
}

/// Sends `request` after the handshake and collects the response until the connection closes.
private final class CollectingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    typealias Result = (text: String, negotiated: String?, errors: [String])

    private let done: EventLoopPromise<Result>
    private let request: String
    private var text = ""
    private var negotiated: String?
    private var errors: [String] = []

    init(done: EventLoopPromise<Result>, request: String) {
        self.done = done
        self.request = request
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let negotiatedProtocol)? = event as? TLSUserEvent {
            negotiated = negotiatedProtocol
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        text += String(buffer: unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        errors.append("\(error)")
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.succeed((text, negotiated, errors))
    }
}
