import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

@testable import DemoOrigin

/// The demo page's cuttable network path: a relay that passes bytes and closes both ways, and,
/// once cut, goes silent without closing the browser's side.
final class DemoNetworkPathTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!

    override func setUp() async throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() async throws {
        try await self.group.shutdownGracefully()
        self.group = nil
    }

    /// One end of a TCP connection: what it received, whether it is closed.
    private final class Peer: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox("")
        let closed = NIOLockedValueBox(false)
        let channel = NIOLockedValueBox<Channel?>(nil)

        func channelActive(context: ChannelHandlerContext) {
            self.channel.withLockedValue { $0 = context.channel }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: self.unwrapInboundIn(data))
            self.received.withLockedValue { $0 += text }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.closed.withLockedValue { $0 = true }
        }

        func send(_ text: String) {
            guard let channel = self.channel.withLockedValue({ $0 }) else { return XCTFail("not connected") }
            channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
        }

        func close() {
            self.channel.withLockedValue { $0 }?.close(promise: nil)
        }
    }

    /// A server that keeps a `Peer` for each connection it accepts.
    private func startServer() async throws -> (Channel, NIOLockedValueBox<[Peer]>) {
        let peers = NIOLockedValueBox<[Peer]>([])
        let channel = try await ServerBootstrap(group: self.group)
            .childChannelInitializer { channel in
                let peer = Peer()
                peers.withLockedValue { $0.append(peer) }
                return channel.pipeline.addHandler(peer)
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, peers)
    }

    /// The server has `count` connections, all active.
    private static func connected(_ peers: NIOLockedValueBox<[Peer]>, _ count: Int) -> Bool {
        let all = peers.withLockedValue { $0 }
        return all.count == count && all.allSatisfy { $0.channel.withLockedValue { $0 } != nil }
    }

    private func connect(to port: Int) async throws -> Peer {
        let peer = Peer()
        _ = try await ClientBootstrap(group: self.group)
            .channelInitializer { $0.pipeline.addHandler(peer) }
            .connect(host: "127.0.0.1", port: port).get()
        return peer
    }

    private func eventually(_ what: String, timeout: TimeAmount = .seconds(5), _ condition: () -> Bool) async throws {
        let deadline = NIODeadline.now() + timeout
        while !condition() {
            guard NIODeadline.now() < deadline else { throw TestFailure(what) }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
    }

    private struct TestFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = "timed out waiting for " + description }
    }

    func testRelaysBothWaysAndClosesTheOtherSide() async throws {
        let (server, peers) = try await self.startServer()
        let path = try await DemoNetworkPath.start(host: "127.0.0.1", port: 0, target: server.localAddress!, group: self.group)
        let browser = try await self.connect(to: path.port)
        try await self.eventually("the relay's connection to the server") { Self.connected(peers, 1) }
        let far = peers.withLockedValue { $0[0] }
        browser.send("GET / HTTP/1.1\r\n\r\n")
        try await self.eventually("the request at the server") { far.received.withLockedValue { $0 } == "GET / HTTP/1.1\r\n\r\n" }
        far.send("data: 1\n\n")
        try await self.eventually("the answer at the browser") { browser.received.withLockedValue { $0 } == "data: 1\n\n" }
        XCTAssertEqual(path.openConnectionCount, 1)

        far.close()
        try await self.eventually("the browser's side closed") { browser.closed.withLockedValue { $0 } }
        try await self.eventually("the connection forgotten") { path.openConnectionCount == 0 }
        await path.stop()
        try await server.close()
    }

    func testCutSilencesOpenConnectionsWithoutClosingTheBrowsersSide() async throws {
        let (server, peers) = try await self.startServer()
        let path = try await DemoNetworkPath.start(host: "127.0.0.1", port: 0, target: server.localAddress!, group: self.group)
        let browser = try await self.connect(to: path.port)
        try await self.eventually("the relay's connection to the server") { Self.connected(peers, 1) }
        let far = peers.withLockedValue { $0[0] }
        far.send("a")
        try await self.eventually("a byte before the cut") { browser.received.withLockedValue { $0 } == "a" }

        let cut = try await path.cut(on: self.group.next()).get()
        XCTAssertEqual(cut, 1)
        // Nothing passes either way, and the server's close does not reach the browser.
        far.send("b")
        browser.send("c")
        try await Task.sleep(nanoseconds: 200_000_000)
        far.close()
        try await self.eventually("the server's side closed") { far.closed.withLockedValue { $0 } }
        try await Task.sleep(nanoseconds: 200_000_000)
        XCTAssertEqual(browser.received.withLockedValue { $0 }, "a")
        XCTAssertEqual(far.received.withLockedValue { $0 }, "")
        XCTAssertFalse(browser.closed.withLockedValue { $0 }, "a cut connection stays open for the browser")

        // A new connection passes, as on a new network.
        let fresh = try await self.connect(to: path.port)
        try await self.eventually("the second connection at the server") { Self.connected(peers, 2) }
        let secondFar = peers.withLockedValue { $0[1] }
        secondFar.send("d")
        try await self.eventually("a byte over the new connection") { fresh.received.withLockedValue { $0 } == "d" }

        // The browser gives up on the silent connection: the relay forgets it.
        browser.close()
        try await self.eventually("only the new connection left") { path.openConnectionCount == 1 }
        await path.stop()
        try await self.eventually("stop closes the rest") { fresh.closed.withLockedValue { $0 } }
        try await server.close()
    }

    func testBrowsersCloseDuringACutClosesTheServersSide() async throws {
        let (server, peers) = try await self.startServer()
        let path = try await DemoNetworkPath.start(host: "127.0.0.1", port: 0, target: server.localAddress!, group: self.group)
        let browser = try await self.connect(to: path.port)
        try await self.eventually("the relay's connection to the server") { Self.connected(peers, 1) }
        let far = peers.withLockedValue { $0[0] }
        _ = try await path.cut(on: self.group.next()).get()
        browser.close()
        try await self.eventually("the server's side closed") { far.closed.withLockedValue { $0 } }
        await path.stop()
        try await server.close()
    }
}
