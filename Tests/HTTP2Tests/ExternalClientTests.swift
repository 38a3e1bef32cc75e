import Foundation
import HTTP2
import NIOCore
import NIOHTTP1
import NIOPosix
import XCTest

/// `HTTP2ServerHandler` over plaintext h2c (prior knowledge) on loopback, driven by independent
/// HTTP/2 clients from Debian: curl, nghttp (nghttp2-client) and h2load.
final class ExternalClientTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: TestH2Server!

    private static let curl = "/usr/bin/curl"
    private static let nghttp = "/usr/bin/nghttp"
    private static let h2load = "/usr/bin/h2load"

    override func setUpWithError() throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDownWithError() throws {
        self.server?.stop()
        self.server = nil
        try self.group.syncShutdownGracefully()
        self.group = nil
    }

    private func requireTool(_ path: String) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw XCTSkip("\(path) is not installed")
        }
    }

    private func url(_ path: String) -> String {
        "http://127.0.0.1:\(self.server.port)\(path)"
    }

    func testCurlGetsABody() throws {
        try self.requireTool(Self.curl)
        self.server = try TestH2Server.start(group: self.group)
        let result = try runTool(
            Self.curl,
            ["--http2-prior-knowledge", "-sS", "--max-time", "10", "-D", "-", self.url("/hello")]
        )
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("HTTP/2 200"), result.stdout)
        XCTAssertTrue(result.stdout.contains("content-type: text/plain"), result.stdout)
        XCTAssertFalse(result.stdout.lowercased().contains("connection: close"), "connection-specific field dropped")
        XCTAssertTrue(result.stdout.hasSuffix("\r\n\r\nhello, world\n"), result.stdout)
        let head = self.server.log.withLockedValue { $0.requests.first }
        XCTAssertEqual(head?.method, .GET)
        XCTAssertEqual(head?.uri, "/hello")
        XCTAssertEqual(head?.version, HTTPVersion(major: 2, minor: 0))
        XCTAssertEqual(head?.headers["host"].first, "127.0.0.1:\(self.server.port)")
        eventually("the stream closes as finished") { self.server.closes(path: "/hello") == [.finished] }
    }

    func testNghttpGetsABodyAndSeesTheSettings() throws {
        try self.requireTool(Self.nghttp)
        var configuration = HTTP2ServerConfiguration()
        configuration.maxConcurrentStreams = 37
        self.server = try TestH2Server.start(group: self.group, configuration: configuration)
        let result = try runTool(Self.nghttp, ["-v", "-t", "10", self.url("/hello")])
        XCTAssertEqual(result.status, 0, result.stderr + result.stdout)
        XCTAssertTrue(result.stdout.contains("hello, world"), result.stdout)
        XCTAssertTrue(result.stdout.contains("[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):37]"), result.stdout)
        XCTAssertTrue(result.stdout.contains("[SETTINGS_MAX_HEADER_LIST_SIZE(0x06):32768]"), result.stdout)
        XCTAssertTrue(result.stdout.contains(":status: 200"), result.stdout)
    }

    func testCurlPostBodyReachesTheDelegate() throws {
        try self.requireTool(Self.curl)
        self.server = try TestH2Server.start(group: self.group)
        // Bigger than the default 64 KiB windows, so window updates must follow consumption.
        let payload = String(repeating: "abcdefgh", count: 100_000)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("h2-post-\(UUID().uuidString)")
        try payload.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try runTool(
            Self.curl,
            ["--http2-prior-knowledge", "-sS", "--max-time", "10", "--data-binary", "@\(file.path)", self.url("/echo")]
        )
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "received 800000 bytes\n")
    }

    func testSSEEventsArriveIncrementally() throws {
        try self.requireTool(Self.curl)
        self.server = try TestH2Server.start(group: self.group)
        let started = Date()
        let tool = try StreamingTool(
            Self.curl,
            ["--http2-prior-knowledge", "-sS", "-N", "--max-time", "10", self.url("/sse?count=10&interval=50")]
        )
        XCTAssertEqual(tool.wait(timeout: 10), 0)
        let text = tool.text
        XCTAssertTrue(text.hasPrefix(": open\n\n"), text)
        for i in 1...10 {
            XCTAssertTrue(text.contains("id: \(i)\ndata: event \(i)\n\n"), "event \(i) missing: \(text)")
        }
        // Incremental: the pieces came over ~500 ms, not in one piece at the end.
        let output = tool.output
        XCTAssertGreaterThanOrEqual(output.count, 5, "output came in \(output.count) pieces")
        if let first = output.first, let last = output.last {
            XCTAssertLessThan(first.0.timeIntervalSince(started), 0.4, "the head and the opening comment come at once")
            XCTAssertGreaterThan(last.0.timeIntervalSince(first.0), 0.3, "events spread over time")
        }
        // The first event arrived well before the last one was written.
        if let firstEvent = output.first(where: { $0.1.contains("data: event 1\n") }),
            let lastEvent = output.first(where: { $0.1.contains("data: event 10\n") })
        {
            XCTAssertGreaterThan(lastEvent.0.timeIntervalSince(firstEvent.0), 0.3)
        }
        eventually("the stream closes as finished") { self.server.closes(path: "/sse") == [.finished] }
    }

    func testH2LoadManyConcurrentStreamsOnOneConnection() throws {
        try self.requireTool(Self.h2load)
        self.server = try TestH2Server.start(group: self.group)
        let result = try runTool(Self.h2load, ["-n", "200", "-c", "1", "-m", "50", self.url("/hello")], timeout: 30)
        XCTAssertEqual(result.status, 0, result.stderr + result.stdout)
        XCTAssertTrue(
            result.stdout.contains("requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored"),
            result.stdout
        )
        XCTAssertTrue(result.stdout.contains("status codes: 200 2xx"), result.stdout)
        XCTAssertEqual(self.server.requestCount, 200)
        XCTAssertEqual(self.server.log.withLockedValue { $0.connections.count }, 1)
    }

    func testH2LoadAThousandSSEStreamsOverTenConnections() throws {
        try self.requireTool(Self.h2load)
        self.server = try TestH2Server.start(group: self.group)
        // 1,000 event-streams at once (100 per connection), 10 events 50 ms apart each.
        let result = try runTool(
            Self.h2load,
            ["-n", "1000", "-c", "10", "-m", "100", self.url("/sse?count=10&interval=50")],
            timeout: 60
        )
        XCTAssertEqual(result.status, 0, result.stderr + result.stdout)
        XCTAssertTrue(result.stdout.contains("1000 succeeded, 0 failed, 0 errored"), result.stdout)
        XCTAssertEqual(self.server.eventsWritten(path: "/sse"), 10_000)
        eventually("every stream finished") { self.server.closes(path: "/sse").count == 1000 }
        XCTAssertTrue(self.server.closes(path: "/sse").allSatisfy { $0 == .finished })
    }

    func testH2LoadBigBodiesUnderFlowControl() throws {
        try self.requireTool(Self.h2load)
        self.server = try TestH2Server.start(group: self.group)
        // 20 × 1 MB over one connection with h2load's default 64 KiB windows (-w 16, -W 16):
        // the server must wait for WINDOW_UPDATEs and resume the deferred streams.
        let result = try runTool(
            Self.h2load,
            ["-n", "20", "-c", "1", "-m", "10", "-w", "16", "-W", "16", self.url("/big?bytes=1000000")],
            timeout: 30
        )
        XCTAssertEqual(result.status, 0, result.stderr + result.stdout)
        XCTAssertTrue(result.stdout.contains("20 succeeded, 0 failed, 0 errored"), result.stdout)
        XCTAssertTrue(result.stdout.contains("traffic: ") && !result.stdout.contains("traffic: 0B"), result.stdout)
    }

    func testCurlOversizedHeaderGets431() throws {
        try self.requireTool(Self.curl)
        var configuration = HTTP2ServerConfiguration()
        configuration.maxHeaderListSize = 4096
        self.server = try TestH2Server.start(group: self.group, configuration: configuration)
        let big = String(repeating: "a", count: 6000)
        let result = try runTool(
            Self.curl,
            ["--http2-prior-knowledge", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
             "-H", "X-Big: \(big)", self.url("/hello")]
        )
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "431")
        XCTAssertEqual(self.server.requestCount, 0, "the application never sees the request")
    }
}
