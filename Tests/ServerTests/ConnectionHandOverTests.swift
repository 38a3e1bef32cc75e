import NIOCore
import NIOEmbedded
import NIOPosix
import XCTest

@testable import Server

#if canImport(Glibc)
import Glibc
#endif

/// How `PlainAcceptor`'s thread hands accepted connections to a loop: the queue that survives a
/// partial send (`ConnectionOutbox`), the loop's reader (`ConnectionInboxReader`), and the two
/// ends together over a real socket pair.
final class ConnectionHandOverTests: XCTestCase {
    private func bytes(_ descriptors: [CInt]) -> [UInt8] {
        descriptors.flatMap { descriptor in withUnsafeBytes(of: descriptor) { Array($0) } }
    }

    func testAnOutboxSentInPiecesGivesEachDescriptorOnceAndInOrder() {
        var outbox = ConnectionOutbox()
        for descriptor: CInt in [7, 300, 70_000, 12] {
            outbox.append(descriptor)
        }
        var wire: [UInt8] = []
        // A stream socket may take any number of bytes, even part of one descriptor.
        for piece in [3, 1, 6, 2, 100] {
            let pending = outbox.pendingBytes(limit: 1024)
            let taken = min(piece, pending.count)
            wire += pending.prefix(taken)
            outbox.sent(taken)
        }
        XCTAssertTrue(outbox.isEmpty)
        XCTAssertEqual(wire, self.bytes([7, 300, 70_000, 12]))
    }

    func testAnOutboxSendsAtMostItsLimitAndGivesBackWhatIsLeftWholeOrPartlySent() {
        var outbox = ConnectionOutbox()
        for descriptor: CInt in 1...10 {
            outbox.append(descriptor)
        }
        XCTAssertEqual(outbox.pendingBytes(limit: 3), self.bytes([1, 2, 3]))
        outbox.sent(6)  // 1 whole, half of 2
        XCTAssertEqual(outbox.count, 9)
        XCTAssertEqual(outbox.pendingBytes(limit: 2), Array(self.bytes([2, 3]).dropFirst(2)))
        // Closing down: every descriptor not sent whole is the sender's to close, the half-sent
        // one too (the loop drops a descriptor's first bytes at the end of its input).
        XCTAssertEqual(outbox.takeAll(), Array(2...10))
        XCTAssertTrue(outbox.isEmpty)
        XCTAssertEqual(outbox.pendingBytes(limit: 10), [])
    }

    func testTheReaderStartsEachDescriptorEvenWhenAReadSplitsOne() throws {
        var started: [CInt] = []
        let channel = EmbeddedChannel(handler: ConnectionInboxReader { started.append($0) })
        let wire = self.bytes([5, 6, 1_000_000])
        try channel.writeInbound(ByteBuffer(bytes: wire[0..<6]))
        XCTAssertEqual(started, [5], "the second descriptor is not whole yet")
        try channel.writeInbound(ByteBuffer(bytes: wire[6..<7]))
        XCTAssertEqual(started, [5], "three of its four bytes")
        try channel.writeInbound(ByteBuffer(bytes: wire[7...]))
        XCTAssertEqual(started, [5, 6, 1_000_000])
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self), "nothing goes further down the pipeline")
        _ = try? channel.finish()
    }

    /// The two ends over a real socket pair on a real loop: everything sent arrives in order, a
    /// batch of several reads included, and closing the sending end right after loses nothing.
    func testAnInboxDeliversEveryDescriptorSentBeforeItsSenderFinished() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let received = NIOLockedValueBoxForTests<[CInt]>([])
        let inbox = try ConnectionInbox.open(on: loop) { descriptor in
            received.mutate { $0.append(descriptor) }
        }.wait()
        var outbox = ConnectionOutbox()
        let count = ConnectionInbox.readSize  // four reads' worth
        for descriptor in 0..<CInt(count) {
            outbox.append(descriptor)
        }
        XCTAssertTrue(inbox.send(&outbox))
        XCTAssertTrue(outbox.isEmpty, "a socket pair's buffer takes them at once")
        inbox.finish()
        let deadline = Date().addingTimeInterval(5)
        while received.value.count < count, Date() < deadline {
            usleep(1_000)
        }
        XCTAssertEqual(received.value, Array(0..<CInt(count)))
    }

    /// The point of the inbox: a flood of connections takes turns with the loop's other sockets.
    /// 2,000 descriptors wait in the inbox while another socket on the loop has bytes to read;
    /// that read comes after the first few passes' descriptors, not after all of them (handed
    /// over as tasks, every one would have been started first).
    func testAFloodOfConnectionsTakesTurnsWithTheLoopsOtherSockets() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let log = NIOLockedValueBoxForTests<[String]>([])
        let inbox = try ConnectionInbox.open(on: loop) { descriptor in
            log.mutate { $0.append("connection \(descriptor)") }
        }.wait()
        var ends: [CInt] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends), 0)
        let writer = ends[1]
        defer { close(writer) }
        let other = try NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ReadLogger(log: log))
                }
            }
            .takingOwnershipOfDescriptor(input: ends[0]).wait()
        defer { try? other.close().wait() }

        // Both ready before the loop looks: the descriptors, then the other socket's byte.
        let count = 2_000
        try loop.submit {
            var outbox = ConnectionOutbox()
            for descriptor in 0..<CInt(count) {
                outbox.append(descriptor)
            }
            XCTAssertTrue(inbox.send(&outbox))
            XCTAssertTrue(outbox.isEmpty)
            var byte: UInt8 = 1
            XCTAssertEqual(write(writer, &byte, 1), 1)
        }.wait()
        let deadline = Date().addingTimeInterval(5)
        while log.value.count < count + 1, Date() < deadline {
            usleep(1_000)
        }
        let entries = log.value
        XCTAssertEqual(entries.count, count + 1)
        let otherRead = try XCTUnwrap(entries.firstIndex(of: "other socket read"))
        XCTAssertLessThanOrEqual(otherRead, 256, "read within the first few passes (64 connections each): \(otherRead)")
        inbox.finish()
    }
}

private final class ReadLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let log: NIOLockedValueBoxForTests<[String]>
    init(log: NIOLockedValueBoxForTests<[String]>) { self.log = log }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.log.mutate { $0.append("other socket read") }
    }
}

/// A value shared with a loop's callbacks in a test.
final class NIOLockedValueBoxForTests<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { self.stored = value }
    var value: Value { self.lock.withLock { self.stored } }
    func mutate(_ body: (inout Value) -> Void) { self.lock.withLock { body(&self.stored) } }
}
