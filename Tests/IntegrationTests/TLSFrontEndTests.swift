import Foundation
import LifelineTestSupport
import NIOCore
import Logging
import Server
import XCTest

/// TLS and HTTP/2 front ends, checked with curl as an independent client.
final class TLSFrontEndTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeline-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        try Self.makeCertificate(name: "a", in: self.directory)
        try Self.makeCertificate(name: "b", in: self.directory)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: self.directory)
    }

    private func path(_ file: String) -> String { self.directory.appendingPathComponent(file).path }

    /// A self-signed certificate for localhost and 127.0.0.1: `NAME.pem` and `NAME.key`.
    static func makeCertificate(name: String, in directory: URL, names: String = "DNS:localhost,IP:127.0.0.1") throws {
        let result = try ProcessRunner.run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=\(names)",
            "-keyout", directory.appendingPathComponent("\(name).key").path,
            "-out", directory.appendingPathComponent("\(name).pem").path,
        ])
        XCTAssertEqual(result.status, 0, result.err)
    }


    /// curl for `seconds`, printing the body then `VERSION=<http version>`.
    private func curl(_ arguments: [String], seconds: Double = 1.5) async throws -> (body: String, version: String) {
        let all = ["-s", "-N", "--max-time", String(seconds), "-w", "\nVERSION=%{http_version}\n"] + arguments
        let result = try await ProcessRunner.runDetached("/usr/bin/curl", all)
        let parts = result.out.components(separatedBy: "\nVERSION=")
        return (parts.first ?? "", parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespacesAndNewlines) : "")
    }

    private func tlsHarness(heartbeat: TimeAmount = .milliseconds(200)) async throws -> GatewayHarness {
        let certificate = self.path("a.pem"), key = self.path("a.key")
        return try await GatewayHarness.start(configure: { configuration in
            configuration.tlsListen = [.init(host: "127.0.0.1", port: 0)]
            configuration.tlsCertificates = [(certificate: certificate, key: key)]
            configuration.heartbeat = heartbeat
        })
    }

    func testEventStreamOverTLSWithHTTP2AndHTTP1() async throws {
        let harness = try await self.tlsHarness()
        let port = try XCTUnwrap(harness.gateway.tlsPort)
        let url = "https://localhost:\(port)/events"
        let ticker = Task {
            for id in 1...100 {
                harness.origin.broadcast("id: \(id)\ndata: tick \(id)\n\n")
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        let h2 = try await self.curl(["--cacert", self.path("a.pem"), "--http2", "-H", "Accept: text/event-stream", url])
        XCTAssertEqual(h2.version, "2", "ALPN chose h2")
        XCTAssertTrue(h2.body.hasPrefix(":ok\n\n"), h2.body)
        XCTAssertTrue(h2.body.contains("data: tick"), h2.body)
        XCTAssertTrue(h2.body.contains(":heartbeat") || h2.body.components(separatedBy: "data: tick").count > 3, h2.body)
        let h1 = try await self.curl(["--cacert", self.path("a.pem"), "--http1.1", "-H", "Accept: text/event-stream", url])
        XCTAssertEqual(h1.version, "1.1", "without h2 in ALPN, HTTP/1.1")
        XCTAssertTrue(h1.body.contains("data: tick"), h1.body)
        ticker.cancel()
        XCTAssertEqual(harness.origin.requests.count, 1, "both protocols share one stream")
        XCTAssertEqual(harness.gateway.tlsMetrics.snapshot.handshakesFailed, 0)
        await harness.shutdown()
    }

    func testHeartbeatsReachAnIdleHTTP2Stream() async throws {
        let harness = try await self.tlsHarness(heartbeat: .milliseconds(100))
        let port = try XCTUnwrap(harness.gateway.tlsPort)
        let h2 = try await self.curl(["--cacert", self.path("a.pem"), "--http2", "-H", "Accept: text/event-stream", "https://localhost:\(port)/events"])
        XCTAssertEqual(h2.version, "2")
        XCTAssertGreaterThanOrEqual(h2.body.components(separatedBy: ":heartbeat\n\n").count - 1, 5, h2.body)
        await harness.shutdown()
    }

    func testReplayByLastEventIDOverHTTP2() async throws {
        let harness = try await self.tlsHarness()
        let port = try XCTUnwrap(harness.gateway.tlsPort)
        let keeper = try await harness.client()
        try await harness.origin.waitForStreams(count: 1)
        for id in 1...5 {
            harness.origin.broadcast("id: \(id)\ndata: e\(id)\n\n")
        }
        try await keeper.waitForEvents(count: 5)
        let h2 = try await self.curl([
            "--cacert", self.path("a.pem"), "--http2", "-i", "-H", "Accept: text/event-stream", "-H", "Last-Event-ID: 3",
            "https://localhost:\(port)/events",
        ], seconds: 1)
        XCTAssertEqual(h2.version, "2")
        XCTAssertTrue(h2.body.lowercased().contains("lifeline-replay: hit"), h2.body)
        XCTAssertTrue(h2.body.contains("id: 4\ndata: e4\n\nid: 5\ndata: e5\n\n"), h2.body)
        XCTAssertFalse(h2.body.contains("data: e3"), h2.body)
        await keeper.close()
        await harness.shutdown()
    }

    func testHTTP2WithPriorKnowledgeOnThePlaintextListener() async throws {
        let harness = try await GatewayHarness.start()
        let ticker = Task {
            for id in 1...50 {
                harness.origin.broadcast("id: \(id)\ndata: tick \(id)\n\n")
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        let h2c = try await self.curl(["--http2-prior-knowledge", "-H", "Accept: text/event-stream", "http://127.0.0.1:\(harness.port)/events"])
        XCTAssertEqual(h2c.version, "2")
        XCTAssertTrue(h2c.body.contains("data: tick"), h2c.body)
        let plain = try await self.curl(["-H", "Accept: text/plain", "http://127.0.0.1:\(harness.port)/nothing-here"], seconds: 1)
        XCTAssertEqual(plain.version, "1.1", "HTTP/1.1 on the same listener")
        ticker.cancel()
        await harness.shutdown()
    }

    func testDrainLetsAnHTTP2StreamGoWithARetryAndGOAWAY() async throws {
        let harness = try await GatewayHarness.start()
        let ticker = Task {
            for id in 1...200 {
                harness.origin.broadcast("id: \(id)\ndata: tick \(id)\n\n")
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        let port = harness.port
        let stream = Task {
            try await ProcessRunner.runDetached("/usr/bin/curl", [
                "-s", "-N", "--max-time", "4", "-w", "\nVERSION=%{http_version}\n",
                "--http2-prior-knowledge", "-H", "Accept: text/event-stream", "http://127.0.0.1:\(port)/events",
            ]).out
        }
        try await harness.origin.waitForStreams(count: 1)
        try await harness.gateway.waitForConnectionCount(1)
        try await Task.sleep(nanoseconds: 300_000_000)
        let started = NIODeadline.now()
        await harness.gateway.drain(window: .seconds(1))
        XCTAssertLessThan(NIODeadline.now() - started, .milliseconds(1500), "done once the client is gone")
        let output = try await stream.value
        let parts = output.components(separatedBy: "\nVERSION=")
        let body = parts[0]
        XCTAssertEqual(parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespacesAndNewlines) : "", "2")
        XCTAssertTrue(body.contains("data: tick"), body)
        XCTAssertNotNil(body.range(of: #"retry: \d+\n\n$"#, options: .regularExpression), "ends with its retry: \(body.suffix(80))")
        XCTAssertEqual(harness.gateway.connectionCount, 0, "the HTTP/2 connection closed after GOAWAY")
        ticker.cancel()
        await harness.shutdown()
    }

    func testUntrustedClientsFailTheHandshakeAndAreCounted() async throws {
        let harness = try await self.tlsHarness()
        let port = try XCTUnwrap(harness.gateway.tlsPort)
        // curl without the CA refuses the self-signed certificate: the gateway sees a failed handshake.
        _ = try await self.curl(["https://localhost:\(port)/events"], seconds: 1)
        try await Self.waitFor { harness.gateway.tlsMetrics.snapshot.handshakesFailed >= 1 }
        await harness.shutdown()
    }

    func testCertificateReloadServesTheNewCertificateToNewConnections() async throws {
        let live = self.path("live.pem"), liveKey = self.path("live.key")
        try FileManager.default.copyItem(atPath: self.path("a.pem"), toPath: live)
        try FileManager.default.copyItem(atPath: self.path("a.key"), toPath: liveKey)
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.tlsListen = [.init(host: "127.0.0.1", port: 0)]
            configuration.tlsCertificates = [(certificate: live, key: liveKey)]
        })
        let port = try XCTUnwrap(harness.gateway.tlsPort)
        let url = "https://localhost:\(port)/events"
        let before = try await self.curl(["--cacert", self.path("a.pem"), "--http2", url], seconds: 1)
        XCTAssertEqual(before.version, "2")
        // A bad file: the old certificate stays.
        try "not a certificate".write(toFile: live, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try harness.gateway.reloadCertificates())
        let stillA = try await self.curl(["--cacert", self.path("a.pem"), "--http2", url], seconds: 1)
        XCTAssertEqual(stillA.version, "2")
        // The operator puts certificate b in place and sends SIGHUP.
        try FileManager.default.removeItem(atPath: live)
        try FileManager.default.removeItem(atPath: liveKey)
        try FileManager.default.copyItem(atPath: self.path("b.pem"), toPath: live)
        try FileManager.default.copyItem(atPath: self.path("b.key"), toPath: liveKey)
        try harness.gateway.reloadCertificates()
        let withB = try await self.curl(["--cacert", self.path("b.pem"), "--http2", url], seconds: 1)
        XCTAssertEqual(withB.version, "2")
        let withA = try await self.curl(["--cacert", self.path("a.pem"), "--http2", url], seconds: 1)
        XCTAssertEqual(withA.version, "0", "the old certificate is no longer served")
        await harness.shutdown()
    }

    /// A gateway in front of an https origin (another gateway with TLS, in front of the scripted origin).
    func testHTTPSOriginIsVerifiedAgainstTheExtraCA() async throws {
        let front = try await self.tlsHarness()
        let originPort = try XCTUnwrap(front.gateway.tlsPort)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = GatewayConfiguration(listen: [.init(host: "127.0.0.1", port: 0)])
        configuration.routes = [try Route.parse("/=https://localhost:\(originPort)").get()]
        configuration.upstreamCA = self.path("a.pem")
        configuration.heartbeat = nil
        let edge = try await GatewayServer.start(configuration: configuration, group: front.group, logger: logger)
        let client = try await SSETestClient.connect(port: edge.port, path: "/events", group: front.group)
        try await front.origin.waitForStreams(count: 1)
        front.origin.broadcast("id: 1\ndata: through two gateways\n\n")
        let events = try await client.waitForEvents(count: 1)
        XCTAssertEqual(events.map(\.data), ["through two gateways"])
        await client.close()
        await edge.shutdown()

        // Without the CA the origin's certificate is refused: a plain request gets 502.
        configuration.upstreamCA = nil
        let strict = try await GatewayServer.start(configuration: configuration, group: front.group, logger: logger)
        let refused = try await SSETestClient.connect(port: strict.port, path: "/page", headers: [("Accept", "text/html")], group: front.group)
        let head = try await refused.waitForHead()
        XCTAssertEqual(head.status, .badGateway)
        await refused.close()
        await strict.shutdown()
        await front.shutdown()
    }

    /// An origin reached by IP address must present a certificate for that address.
    func testHTTPSOriginByIPAddressIsCheckedAgainstTheAddress() async throws {
        try Self.makeCertificate(name: "other", in: self.directory, names: "DNS:b.test")
        let certificate = self.path("other.pem"), key = self.path("other.key")
        let front = try await GatewayHarness.start(configure: { configuration in
            configuration.tlsListen = [.init(host: "127.0.0.1", port: 0)]
            configuration.tlsCertificates = [(certificate: certificate, key: key)]
        })
        let originPort = try XCTUnwrap(front.gateway.tlsPort)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var configuration = GatewayConfiguration(listen: [.init(host: "127.0.0.1", port: 0)])
        configuration.routes = [try Route.parse("/=https://127.0.0.1:\(originPort)").get()]
        configuration.upstreamCA = certificate  // trusted, but issued for b.test, not 127.0.0.1
        let edge = try await GatewayServer.start(configuration: configuration, group: front.group, logger: logger)
        let client = try await SSETestClient.connect(port: edge.port, path: "/page", headers: [("Accept", "text/html")], group: front.group)
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .badGateway)
        await client.close()
        await edge.shutdown()
        await front.shutdown()
    }

    /// An HTTP/2 client that opens a connection and never a stream is closed like an idle
    /// HTTP/1.1 connection.
    func testIdleHTTP2ConnectionIsClosed() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.requestHeadTimeout = .milliseconds(200)
        })
        let started = Date()
        let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        let emptySettings = String(decoding: [0, 0, 0, 4, 0, 0, 0, 0, 0] as [UInt8], as: UTF8.self)
        _ = try await RawHTTP.exchange(port: harness.port, send: preface + emptySettings, group: harness.group, timeout: .seconds(5))
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "closed by the gateway, not by the test's timeout")
        await harness.shutdown()
    }

    static func waitFor(timeout: TimeInterval = 5, _ condition: @escaping () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { throw TestWaitError("condition not met in \(timeout) s") }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
    }
}
