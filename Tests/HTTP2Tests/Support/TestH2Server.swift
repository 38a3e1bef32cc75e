import Foundation
import HTTP2
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A loopback h2c server (prior knowledge) built on `HTTP2ServerHandler`, with a few routes:
/// - `/hello`: a small text body.
/// - `/sse?count=N&interval=MS`: an event-stream that writes `data: i` every MS ms, N events then
///   the end (N = 0: until the stream closes).
/// - `/big?bytes=N`: N bytes of `x`, written at once, then the end.
/// - `/echo`: reads the request body, then answers with its length.
/// - anything else: 404.
final class TestH2Server: Sendable {
    struct Log {
        var requests: [HTTPRequestHead] = []
        /// (path, reason) for every `http2StreamDidClose`.
        var closes: [(String, HTTP2StreamCloseReason)] = []
        /// Events written, by stream path.
        var eventsWritten: [String: Int] = [:]
        var connections: [Channel] = []
        var connectionsClosed = 0
        var writabilityChanges: [(String, Bool)] = []
        var terminationReasons: [String] = []
    }

    let channel: Channel
    let log: NIOLockedValueBox<Log>

    var port: Int { self.channel.localAddress!.port! }

    private init(channel: Channel, log: NIOLockedValueBox<Log>) {
        self.channel = channel
        self.log = log
    }

    static func start(group: EventLoopGroup, configuration: HTTP2ServerConfiguration = HTTP2ServerConfiguration()) throws -> TestH2Server {
        let log = NIOLockedValueBox(Log())
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = TestConnection(eventLoop: channel.eventLoop, log: log)
                    let handler = HTTP2ServerHandler(configuration: configuration) { stream in
                        connection.request(stream)
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                    try channel.pipeline.syncOperations.addHandler(ConnectionEndWatcher(log: log, handler: handler))
                    log.withLockedValue { $0.connections.append(channel) }
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .wait()
        return TestH2Server(channel: channel, log: log)
    }

    /// Sends `HTTP2ServerHandler.GracefulShutdown` to every connection.
    func gracefulShutdown() {
        for connection in self.log.withLockedValue({ $0.connections }) {
            connection.pipeline.fireUserInboundEventTriggered(HTTP2ServerHandler.GracefulShutdown())
        }
    }

    func stop() {
        try? self.channel.close().wait()
        for connection in self.log.withLockedValue({ $0.connections }) {
            try? connection.close().wait()
        }
    }

    func closes(path: String) -> [HTTP2StreamCloseReason] {
        self.log.withLockedValue { $0.closes.filter { $0.0 == path }.map(\.1) }
    }

    func eventsWritten(path: String) -> Int {
        self.log.withLockedValue { $0.eventsWritten[path] ?? 0 }
    }

    var requestCount: Int { self.log.withLockedValue { $0.requests.count } }
}

/// Records why each connection ended.
private final class ConnectionEndWatcher: ChannelInboundHandler {
    typealias InboundIn = Never
    let log: NIOLockedValueBox<TestH2Server.Log>
    let handler: HTTP2ServerHandler

    init(log: NIOLockedValueBox<TestH2Server.Log>, handler: HTTP2ServerHandler) {
        self.log = log
        self.handler = handler
    }

    func channelInactive(context: ChannelHandlerContext) {
        let reason = self.handler.terminationReason ?? "-"
        self.log.withLockedValue {
            $0.connectionsClosed += 1
            $0.terminationReasons.append(reason)
        }
        context.fireChannelInactive()
    }
}

/// One connection's exchanges (they must be kept alive: streams hold their delegates weakly).
private final class TestConnection {
    let eventLoop: EventLoop
    let log: NIOLockedValueBox<TestH2Server.Log>
    var exchanges: [Int32: TestExchange] = [:]

    init(eventLoop: EventLoop, log: NIOLockedValueBox<TestH2Server.Log>) {
        self.eventLoop = eventLoop
        self.log = log
    }

    func request(_ stream: HTTP2ServerStream) {
        self.log.withLockedValue { $0.requests.append(stream.head) }
        let exchange = TestExchange(stream: stream, connection: self)
        self.exchanges[stream.streamID] = exchange
        stream.delegate = exchange
        exchange.start()
    }
}

private final class TestExchange: HTTP2ServerStreamDelegate {
    let stream: HTTP2ServerStream
    unowned let connection: TestConnection
    let path: String
    let query: [String: String]
    var bodyBytes = 0
    var sent = 0
    var timer: Scheduled<Void>?

    init(stream: HTTP2ServerStream, connection: TestConnection) {
        self.stream = stream
        self.connection = connection
        let parts = stream.head.uri.split(separator: "?", maxSplits: 1).map(String.init)
        self.path = parts.first ?? "/"
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
        }
        self.query = query
    }

    func start() {
        switch self.path {
        case "/hello":
            self.stream.sendHead(status: .ok, headers: [("content-type", "text/plain"), ("Connection", "close")])
            self.stream.write(ByteBuffer(string: "hello, world\n"))
            self.stream.end()
        case "/sse":
            self.stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream"), ("cache-control", "no-cache")])
            self.stream.write(ByteBuffer(string: ": open\n\n"))
            self.stream.flush()
            self.scheduleTick()
        case "/big":
            let count = Int(self.query["bytes"] ?? "") ?? 100_000
            self.stream.sendHead(status: .ok, headers: [("content-type", "application/octet-stream"), ("content-length", String(count))])
            var left = count
            while left > 0 {
                let n = min(left, 16_384)
                self.stream.write(ByteBuffer(repeating: UInt8(ascii: "x"), count: n))
                left -= n
            }
            self.stream.end()
        case "/echo":
            break  // answers at the end of the request
        default:
            self.stream.sendHead(status: .notFound, headers: [("content-length", "0")], endStream: true)
        }
    }

    private func scheduleTick() {
        let interval = Int64(self.query["interval"] ?? "") ?? 50
        self.timer = self.connection.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(interval)) {
            self.tick()
        }
    }

    private func tick() {
        guard !self.stream.isClosed else { return }
        let count = Int(self.query["count"] ?? "") ?? 10
        self.sent += 1
        self.stream.write(ByteBuffer(string: "id: \(self.sent)\ndata: event \(self.sent)\n\n"))
        self.stream.flush()
        let path = self.path
        self.connection.log.withLockedValue { $0.eventsWritten[path, default: 0] += 1 }
        if count > 0 && self.sent >= count {
            self.stream.end()
        } else {
            self.scheduleTick()
        }
    }

    func http2Stream(_ stream: HTTP2ServerStream, didReceiveBody body: ByteBuffer) {
        self.bodyBytes += body.readableBytes
    }

    func http2StreamDidReceiveEnd(_ stream: HTTP2ServerStream) {
        guard self.path == "/echo" else { return }
        let text = "received \(self.bodyBytes) bytes\n"
        stream.sendHead(status: .ok, headers: [("content-type", "text/plain"), ("content-length", String(text.utf8.count))])
        stream.write(ByteBuffer(string: text))
        stream.end()
    }

    func http2StreamDidClose(_ stream: HTTP2ServerStream, reason: HTTP2StreamCloseReason) {
        self.timer?.cancel()
        let path = self.path
        self.connection.log.withLockedValue { $0.closes.append((path, reason)) }
        self.connection.exchanges[stream.streamID] = nil
    }

    func http2StreamWritabilityChanged(_ stream: HTTP2ServerStream) {
        let path = self.path
        let writable = stream.isWritable
        self.connection.log.withLockedValue { $0.writabilityChanges.append((path, writable)) }
    }
}

/// Runs a command line tool with a time limit.
struct ToolResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

func runTool(_ path: String, _ arguments: [String], timeout: TimeInterval = 20) throws -> ToolResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let outData = NIOLockedValueBox(Data())
    let errData = NIOLockedValueBox(Data())
    out.fileHandleForReading.readabilityHandler = { handle in
        let chunk = handle.availableData
        outData.withLockedValue { $0.append(chunk) }
    }
    err.fileHandleForReading.readabilityHandler = { handle in
        let chunk = handle.availableData
        errData.withLockedValue { $0.append(chunk) }
    }
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
        if Date() > deadline {
            timedOut = true
            process.terminate()
            break
        }
        Thread.sleep(forTimeInterval: 0.02)
    }
    process.waitUntilExit()
    out.fileHandleForReading.readabilityHandler = nil
    err.fileHandleForReading.readabilityHandler = nil
    let restOut = out.fileHandleForReading.readDataToEndOfFile()
    let restErr = err.fileHandleForReading.readDataToEndOfFile()
    outData.withLockedValue { $0.append(restOut) }
    errData.withLockedValue { $0.append(restErr) }
    return ToolResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData.withLockedValue { $0 }, as: UTF8.self),
        stderr: String(decoding: errData.withLockedValue { $0 }, as: UTF8.self),
        timedOut: timedOut
    )
}

/// Runs a tool and records when each piece of its standard output arrived.
final class StreamingTool {
    private let process: Process
    private let chunks = NIOLockedValueBox<[(Date, String)]>([])

    init(_ path: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let chunks = self.chunks
        out.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            chunks.withLockedValue { $0.append((Date(), String(decoding: data, as: UTF8.self))) }
        }
        self.process = process
        try process.run()
    }

    var output: [(Date, String)] { self.chunks.withLockedValue { $0 } }
    var text: String { self.output.map(\.1).joined() }

    /// Waits for the tool to exit (killing it after `timeout`). Returns its status.
    @discardableResult
    func wait(timeout: TimeInterval) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while self.process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        if self.process.isRunning {
            self.process.terminate()
        }
        self.process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.05)  // let the last readability callback land
        return self.process.terminationStatus
    }

    func terminate() {
        if self.process.isRunning {
            self.process.terminate()
        }
        self.process.waitUntilExit()
    }
}
