import LifelineTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

@testable import LifelineMain
@testable import Server

/// The access log: one line per client connection with what a log pipeline needs.
final class AccessLogTests: XCTestCase {
    /// Keeps every record logged through it.
    struct CapturingHandler: LogHandler {
        let records: NIOLockedValueBox<[(message: String, metadata: Logger.Metadata)]>
        var logLevel: Logger.Level = .info
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = self.metadata
            merged.merge(event.metadata ?? [:]) { $1 }
            self.records.withLockedValue { $0.append(("\(event.message)", merged)) }
        }
    }

    func testEachConnectionLogsPathClientProtocolDurationEventsBytesAndEnd() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let origin = try await ScriptedOrigin.start(group: group, handler: ScriptedOrigin.sseHandler())
        var configuration = GatewayConfiguration(listen: [.init(host: "127.0.0.1", port: 0)])
        configuration.routes = [try Route.parse("/=http://127.0.0.1:\(origin.port)/").get()]
        configuration.heartbeat = nil
        let records = NIOLockedValueBox<[(message: String, metadata: Logger.Metadata)]>([])
        let logger = Logger(label: "test") { _ in CapturingHandler(records: records) }
        let gateway = try await GatewayServer.start(configuration: configuration, group: group, logger: logger)

        let client = try await SSETestClient.connect(port: gateway.port, path: "/feed?token=s3cret", group: group)
        try await origin.waitForStreams(count: 1)
        _ = origin.broadcast("id: 1\ndata: a\n\nid: 2\ndata: b\n\n")
        _ = try await client.waitForEvents(count: 2)
        await client.close()
        try await gateway.waitForConnectionCount(0)

        let access = records.withLockedValue { $0 }.filter { $0.metadata["log"] == "access" }
        XCTAssertEqual(access.count, 1, "\(access)")
        let line = try XCTUnwrap(access.first).metadata
        XCTAssertEqual(line["path"], "/feed?token=…", "query values masked")
        XCTAssertEqual(line["client"], "127.0.0.1")
        XCTAssertEqual(line["protocol"], "http/1.1")
        XCTAssertEqual(line["events"]?.description, "2")
        XCTAssertEqual(line["requests"]?.description, "1")
        XCTAssertGreaterThan(Int(line["bytes"]?.description ?? "") ?? 0, 40)
        XCTAssertNotNil(Int(line["duration_ms"]?.description ?? ""))
        XCTAssertEqual(line["end"], "client closed")

        // In JSON the numbers stay numbers.
        let json = LifelineLogHandler.line(format: .json, time: "T", level: .info, message: "connection closed", metadata: line)
        XCTAssertTrue(json.contains(#""events":2"#), json)
        XCTAssertTrue(json.contains(#""path":"/feed?token=…""#), json)
        XCTAssertTrue(json.contains(#""end":"client closed""#), json)
        XCTAssertFalse(json.contains("s3cret"), json)

        await gateway.shutdown()
        try await origin.stop()
        try await group.shutdownGracefully()
    }

    func testEachHTTP2StreamGetsALineOfItsOwn() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let origin = try await ScriptedOrigin.start(group: group, handler: ScriptedOrigin.sseHandler(prelude: { _ in
            "id: 1\ndata: a\n\nid: 2\ndata: b\n\n"
        }))
        var configuration = GatewayConfiguration(listen: [.init(host: "127.0.0.1", port: 0)])
        configuration.routes = [try Route.parse("/=http://127.0.0.1:\(origin.port)/").get()]
        configuration.heartbeat = nil
        let records = NIOLockedValueBox<[(message: String, metadata: Logger.Metadata)]>([])
        let logger = Logger(label: "test") { _ in CapturingHandler(records: records) }
        let gateway = try await GatewayServer.start(configuration: configuration, group: group, logger: logger)

        // Two requests on one HTTP/2 connection: the script, then a stream cut after a second.
        // (nghttp from nghttp2-client: h2c with prior knowledge, one connection for all URLs.)
        _ = try await ProcessRunner.runDetached("/usr/bin/nghttp", [
            "-n", "-t", "1", "-H", "accept: text/event-stream",
            "http://127.0.0.1:\(gateway.port)/_lifeline/client.js",
            "http://127.0.0.1:\(gateway.port)/feed?token=s3cret",
        ])
        try await gateway.waitForConnectionCount(0)
        let access = records.withLockedValue { $0 }.filter { $0.metadata["log"] == "access" }
        let streams = access.filter { $0.message == "stream closed" }.map(\.metadata)
        XCTAssertEqual(streams.count, 2, "\(access)")
        let script = try XCTUnwrap(streams.first { $0["target"] == "client script" })
        XCTAssertEqual(script["end"], "response complete")
        XCTAssertGreaterThan(Int(script["bytes"]?.description ?? "") ?? 0, 1000)
        let feed = try XCTUnwrap(streams.first { $0["path"] == "/feed?token=…" }, "\(streams)")
        XCTAssertEqual(feed["protocol"], "h2")
        XCTAssertEqual(feed["events"]?.description, "2")
        XCTAssertEqual(feed["client"], "127.0.0.1")
        XCTAssertNotEqual(script["stream_id"]?.description, feed["stream_id"]?.description)
        XCTAssertEqual(access.filter { $0.message == "connection closed" }.count, 1, "and one line for the connection")

        await gateway.shutdown()
        try await origin.stop()
        try await group.shutdownGracefully()
    }
}
