import Foundation
import LifelineCore
import LifelineTestSupport
import Logging
import NIOCore
import NIOPosix
import Server
import Upstream
import XCTest

/// A gateway in this process on 127.0.0.1 (port 0) with two event loops, in front of one
/// `ScriptedOrigin`, plus helpers to make clients. Call `shutdown()` at the end of each test.
final class GatewayHarness: @unchecked Sendable {
    let group: MultiThreadedEventLoopGroup
    let origin: ScriptedOrigin
    let gateway: GatewayServer

    var port: Int { self.gateway.port }

    /// - Parameters:
    ///   - routes: `PREFIX=PATH` pairs; PATH is appended to the origin's address. Default `/=/`.
    ///   - configure: adjusts the gateway configuration (routes are already set).
    static func start(
        routes: [(String, String)] = [("/", "/")],
        origin handler: @escaping @Sendable (ScriptedOrigin.Request, OriginResponder) -> Void = ScriptedOrigin.sseHandler(),
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) async throws -> GatewayHarness {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let origin = try await ScriptedOrigin.start(group: group, handler: handler)
        var configuration = GatewayConfiguration(listen: [.init(host: "127.0.0.1", port: 0)])
        configuration.routes = try routes.map { prefix, path in
            try Route.parse("\(prefix)=http://127.0.0.1:\(origin.port)\(path)").get()
        }
        // Fast reconnects keep tests short; tests that care set their own.
        configuration.upstream.reconnectMin = .milliseconds(10)
        configuration.upstream.reconnectMax = .milliseconds(100)
        configuration.heartbeat = nil
        // Batched sends (--io-uring) are on by default; scripts/test runs the suite once more
        // without them, as where the kernel has no io_uring.
        configuration.ioUring = ProcessInfo.processInfo.environment["LIFELINE_TEST_IO_URING"] != "0"
        configure(&configuration)
        var logger = Logger(label: "lifeline.test")
        logger.logLevel = .critical
        let gateway = try await GatewayServer.start(configuration: configuration, group: group, logger: logger)
        return GatewayHarness(group: group, origin: origin, gateway: gateway)
    }

    /// A gateway in front of an origin of the test's own making (`OriginListener`: one that
    /// misbehaves in ways `ScriptedOrigin` cannot): every path goes to it.
    static func start(
        inFrontOf origin: OriginListener,
        configure: (inout GatewayConfiguration) -> Void = { _ in }
    ) async throws -> GatewayHarness {
        try await Self.start(routes: [], configure: { configuration in
            configuration.routes = [try! Route.parse("/=http://127.0.0.1:\(origin.port)/").get()]
            configure(&configuration)
        })
    }

    private init(group: MultiThreadedEventLoopGroup, origin: ScriptedOrigin, gateway: GatewayServer) {
        self.group = group
        self.origin = origin
        self.gateway = gateway
    }

    /// An EventSource-like client (sends `Accept: text/event-stream`).
    func client(
        _ path: String = "/events",
        headers: [(String, String)] = [],
        receiveBufferSize: Int? = nil
    ) async throws -> SSETestClient {
        try await SSETestClient.connect(
            port: self.port,
            path: path,
            headers: headers,
            group: self.group,
            receiveBufferSize: receiveBufferSize
        )
    }

    /// A client that has stopped reading (`slow`, a small socket buffer) and one that reads
    /// (`fast`), both on the origin's one stream.
    func slowAndFastClients() async throws -> (slow: SSETestClient, fast: SSETestClient) {
        let slow = try await self.client(receiveBufferSize: 4096)
        try await slow.waitForHead()
        slow.pauseReading()
        let fast = try await self.client()
        try await fast.waitForHead()
        try await self.origin.waitForStreams(count: 1)
        return (slow, fast)
    }

    func shutdown() async {
        await self.gateway.shutdown()
        try? await self.origin.stop()
        try? await self.group.shutdownGracefully()
    }
}

/// Sends raw bytes to a server and collects everything it answers until it closes the
/// connection (or `timeout` passes).
enum RawHTTP {
    static func exchange(
        port: Int,
        send bytes: String,
        group: EventLoopGroup,
        timeout: TimeAmount = .seconds(5)
    ) async throws -> String {
        let collector = RawCollector()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        if !bytes.isEmpty {
            try await channel.writeAndFlush(ByteBuffer(string: bytes))
        }
        let closed = channel.closeFuture
        let deadline = channel.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        try? await closed.get()
        deadline.cancel()
        return collector.text
    }
}

final class RawCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NSLockLike()
    private var bytes: [UInt8] = []

    var text: String { self.lock.withLock { String(decoding: self.bytes, as: UTF8.self) } }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.lock.withLock { self.bytes += buffer.readableBytesView }
    }
}

/// A tiny lock so this file needs no Foundation.
final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&self.mutex, nil) }
    deinit { pthread_mutex_destroy(&self.mutex) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&self.mutex)
        defer { pthread_mutex_unlock(&self.mutex) }
        return try body()
    }
}

extension GatewayServer {
    /// Waits until the gateway counts `count` open client connections.
    func waitForConnectionCount(_ count: Int, timeout: TimeAmount = .seconds(5)) async throws {
        let deadline = NIODeadline.now() + timeout
        while self.connectionCount != count {
            if NIODeadline.now() > deadline {
                throw TestWaitError("gateway has \(self.connectionCount) connections, expected \(count)")
            }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
    }
}

/// A bare origin on a loop of its own: each connection it accepts gets the handler `makeHandler`
/// returns (none: bytes are left unread, with `autoRead` off for an origin that never reads).
struct OriginListener {
    let group: MultiThreadedEventLoopGroup
    let channel: Channel
    let port: Int

    static func start(
        autoRead: Bool = true,
        _ makeHandler: (@Sendable () -> ChannelHandler)? = nil
    ) async throws -> OriginListener {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: autoRead)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let makeHandler {
                        try channel.pipeline.syncOperations.addHandler(makeHandler())
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        return OriginListener(group: group, channel: channel, port: port)
    }

    func stop() async throws {
        try await self.channel.close()
        try await self.group.shutdownGracefully()
    }
}
