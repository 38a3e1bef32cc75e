import NIOCore
import NIOPosix
import Redis
import XCTest

/// A server that answers whatever it is sent with a script, to see RedisConnection fail cleanly.
private final class ScriptedServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Script: Sendable {
        /// Answers the first read with these bytes (and then stays silent).
        case reply(String)
        /// Answers the n-th read with the n-th of these (and then stays silent).
        case replies([String])
        /// Answers with `+` and then 16 KiB chunks of `a`, never a CR: a line without end.
        case endlessLine
        /// Never answers.
        case silent
    }

    private let script: Script
    /// Reads answered so far.
    private var reads = 0

    init(script: Script) {
        self.script = script
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        defer { self.reads += 1 }
        switch self.script {
        case .replies(let texts):
            guard self.reads < texts.count else { return }
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: texts[self.reads])), promise: nil)
            return
        default:
            guard self.reads == 0 else { return }
        }
        switch self.script {
        case .reply(let text):
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: text)), promise: nil)
        case .replies:
            break
        case .endlessLine:
            context.write(self.wrapOutboundOut(ByteBuffer(string: "+")), promise: nil)
            // 4 MiB, far beyond the 64 KiB line limit; the client must give up long before.
            let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: 16 << 10)
            for _ in 0..<256 where context.channel.isActive {
                context.writeAndFlush(self.wrapOutboundOut(chunk), promise: nil)
            }
        case .silent:
            break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)  // the client resetting the connection is expected
    }
}

final class HostileServerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        try? self.group.syncShutdownGracefully()
        self.group = nil
    }

    /// Serves `script` on a loopback port; returns the server channel and a future that
    /// completes when the first connection to it has closed.
    private func serve(_ script: ScriptedServerHandler.Script) async throws -> (Channel, EventLoopFuture<Void>) {
        let closed = self.group.next().makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: self.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.closeFuture.whenComplete { _ in closed.succeed() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ScriptedServerHandler(script: script))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (server, closed.futureResult)
    }

    private func connectError(
        _ script: ScriptedServerHandler.Script, configuration: RedisConnection.Configuration = .init()
    ) async throws -> (any Error)? {
        let (server, closed) = try await serve(script)
        defer { server.close(promise: nil) }
        let address = RedisAddress(host: "127.0.0.1", port: server.localAddress!.port!)
        do {
            let connection = try await RedisConnection.connect(to: address, configuration: configuration, on: self.group.next()).get()
            XCTFail("connected to a hostile server: \(connection)")
            return nil
        } catch {
            // The client closed its end: the server sees the connection go.
            try await closed.get()
            return error
        }
    }

    func testGarbageReply() async throws {
        let error = try await connectError(.reply("hello world\r\n"))
        XCTAssertEqual(error as? RedisConnectionError, .protocolError(.invalidType(UInt8(ascii: "h"))))
    }

    func testOversizedBulkHeader() async throws {
        let error = try await connectError(.reply("$999999999999\r\n"))
        XCTAssertEqual(error as? RedisConnectionError, .protocolError(.bulkTooLong))
    }

    func testNeverEndingLine() async throws {
        let error = try await connectError(.endlessLine)
        XCTAssertEqual(error as? RedisConnectionError, .protocolError(.lineTooLong))
    }

    func testTooDeepReply() async throws {
        let error = try await connectError(.reply(String(repeating: "*1\r\n", count: 1000)))
        XCTAssertEqual(error as? RedisConnectionError, .protocolError(.tooDeep))
    }

    func testServerWithoutHELLO() async throws {
        let error = try await connectError(.reply("-ERR unknown command 'HELLO'\r\n"))
        guard case .handshakeRejected(let rejection) = error as? RedisConnectionError else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertEqual(rejection.code, "ERR")
    }

    func testRESP2ReplyToHELLO() async throws {
        let error = try await connectError(.reply("*2\r\n$6\r\nserver\r\n$5\r\nredis\r\n"))
        guard case .unexpectedHandshakeReply = error as? RedisConnectionError else {
            return XCTFail("\(String(describing: error))")
        }
    }

    func testUnsolicitedReplyClosesTheConnection() async throws {
        // A HELLO reply; then, to a PING, its reply and one to nothing.
        let (server, closed) = try await serve(.replies(["%0\r\n", "+PONG\r\n+surprise\r\n"]))
        defer { server.close(promise: nil) }
        let address = RedisAddress(host: "127.0.0.1", port: server.localAddress!.port!)
        let connection = try await RedisConnection.connect(to: address, configuration: .init(), on: self.group.next()).get()
        let pong = try await connection.send(RESPCommand("PING")).get()
        XCTAssertEqual(pong.string, "PONG")
        try await connection.closeFuture.get()
        try await closed.get()
        do {
            _ = try await connection.send(RESPCommand("PING")).get()
            XCTFail("a closed connection took a command")
        } catch {
            XCTAssertEqual(error as? RedisConnectionError, .closed)
        }
    }

    func testSilentServerTimesOut() async throws {
        let start = ContinuousClock.now
        let error = try await connectError(.silent, configuration: .init(connectTimeout: .milliseconds(300)))
        guard case .connectTimeout = error as? ChannelError else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
    }
}
