import Foundation
import HTTP2TestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// A TCP client that writes raw bytes and collects the server's frames: an HTTP/2 peer the test
/// controls completely (it can misbehave).
final class RawH2Client: Sendable {
    private struct Received {
        var bytes: [UInt8] = []
        var frames: [H2.Frame] = []
        var closed = false
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let box: NIOLockedValueBox<Received>

        init(box: NIOLockedValueBox<Received>) {
            self.box = box
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = Self.unwrapInboundIn(data)
            self.box.withLockedValue { received in
                received.bytes += buffer.readableBytesView
                let (frames, consumed) = H2.parse(received.bytes)
                received.frames += frames
                received.bytes.removeFirst(consumed)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.box.withLockedValue { $0.closed = true }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }
    }

    private let received: NIOLockedValueBox<Received>
    let channel: Channel

    private init(channel: Channel, received: NIOLockedValueBox<Received>) {
        self.channel = channel
        self.received = received
    }

    static func connect(port: Int, group: EventLoopGroup) throws -> RawH2Client {
        let box = NIOLockedValueBox(Received())
        let channel = try ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(box: box))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .wait()
        return RawH2Client(channel: channel, received: box)
    }

    /// Sends the connection preface and an empty SETTINGS frame (plus `settings`).
    func handshake(_ settings: [(H2.Setting, UInt32)] = []) throws {
        try self.send(H2.preface + H2.settings(settings))
    }

    func send(_ bytes: [UInt8]) throws {
        var buffer = self.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        try self.channel.writeAndFlush(buffer).wait()
    }

    var frames: [H2.Frame] {
        self.received.withLockedValue { $0.frames }
    }

    var isClosed: Bool {
        self.received.withLockedValue { $0.closed }
    }

    func close() {
        try? self.channel.close().wait()
    }

    /// Waits until `condition` holds for the frames received so far (or the connection closes
    /// and it still does not hold), at most `timeout` seconds.
    @discardableResult
    func wait(
        timeout: TimeInterval = 5,
        _ what: String,
        file: StaticString = #filePath,
        line: UInt = #line,
        until condition: ([H2.Frame], Bool) -> Bool
    ) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let (frames, closed) = self.received.withLockedValue { ($0.frames, $0.closed) }
            if condition(frames, closed) { return true }
            if closed { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let (frames, closed) = self.received.withLockedValue { ($0.frames, $0.closed) }
        if condition(frames, closed) { return true }
        XCTFail("timed out waiting for \(what); closed: \(closed); frames: \(frames.suffix(20))", file: file, line: line)
        return false
    }

    /// The DATA payload received on `stream`, as text.
    func body(of stream: UInt32) -> String {
        String(decoding: self.frames.filter { $0.kind == .data && $0.streamID == stream }.flatMap(\.data), as: UTF8.self)
    }
}

/// Waits for a condition that is checked by polling (for state kept by the test server).
@discardableResult
func eventually(
    timeout: TimeInterval = 5,
    _ what: String,
    file: StaticString = #filePath,
    line: UInt = #line,
    _ condition: () -> Bool
) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        Thread.sleep(forTimeInterval: 0.01)
    }
    if condition() { return true }
    XCTFail("timed out waiting for \(what)", file: file, line: line)
    return false
}
