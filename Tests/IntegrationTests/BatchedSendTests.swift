import Foundation
import LifelineTestSupport
import NIOCore
import NIOPosix
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `--io-uring`: plaintext HTTP/1.1 clients' events go out in one io_uring submission per loop.
/// What clients see must not change: every event, in order, a slow client's rest through its
/// channel, a client that leaves affecting nobody; and the gateway's own accept path behaves as
/// SwiftNIO's did.
final class BatchedSendTests: XCTestCase {
    private func harness(clientBuffer: Int? = nil) async throws -> GatewayHarness {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.ioUring = true
            if let clientBuffer { configuration.clientBuffer = clientBuffer }
        })
        if await harness.gateway.batchedSends() == nil {
            await harness.shutdown()
            throw XCTSkip("no io_uring for this process (kernel or seccomp)")
        }
        return harness
    }

    func testEveryClientGetsEveryEventInOrderThroughTheBatch() async throws {
        let harness = try await self.harness()
        var clients: [SSETestClient] = []
        for _ in 0..<120 {
            clients.append(try await harness.client("/events"))
        }
        for client in clients { try await client.waitForHead() }
        try await harness.origin.waitForStreams(count: 1)
        let count = 40
        for id in 1...count {
            harness.origin.broadcast("id: \(id)\ndata: event \(id) \(String(repeating: "x", count: id * 50))\n\n")
        }
        for client in clients {
            try await client.waitUntil(timeout: .seconds(10)) { $0.events.count == count }
            XCTAssertEqual(client.events.map(\.id), (1...count).map { String($0) })
            XCTAssertEqual(client.events.last?.data, "event \(count) \(String(repeating: "x", count: count * 50))")
        }
        let batched = await harness.gateway.batchedSends()
        let counts = try XCTUnwrap(batched)
        // Events that arrive together go to a client in one send.
        XCTAssertGreaterThanOrEqual(counts.sent, clients.count, "the events went out in batches")
        XCTAssertEqual(counts.fellShort, 0, "clients that read take every send whole")
        for client in clients { await client.close() }
        await harness.shutdown()
    }

    func testWhatASocketDoesNotTakeGoesThroughTheChannelInOrder() async throws {
        let harness = try await self.harness(clientBuffer: 16 << 20)
        let (slow, fast) = try await harness.slowAndFastClients()
        // 4 MiB in 16 KiB events: more than the paused client's socket buffers hold.
        let payload = String(repeating: "y", count: 16 << 10)
        for id in 1...256 {
            harness.origin.broadcast("id: \(id)\ndata: \(payload)\n\n")
            if id % 8 == 0 {
                try await fast.waitUntil(timeout: .seconds(10)) { $0.events.count == id }
            }
        }
        let batched = await harness.gateway.batchedSends()
        let counts = try XCTUnwrap(batched)
        XCTAssertGreaterThan(counts.fellShort, 0, "the paused client's socket filled up")
        slow.resumeReading()
        try await slow.waitUntil(timeout: .seconds(20)) { $0.events.count == 256 }
        XCTAssertEqual(slow.events.map(\.id), (1...256).map { String($0) })
        XCTAssertTrue(slow.events.allSatisfy { $0.data == payload }, "no event is cut or mixed with another")
        XCTAssertEqual(fast.events.map(\.id), (1...256).map { String($0) })
        await slow.close()
        await fast.close()
        await harness.shutdown()
    }

    /// A POST stream whose origin sends its last events and then, in the same write, either the
    /// end of its response or nothing more (it breaks off): the events are in the loop's batch
    /// when the end of the client's response is written through the channel (the last chunk, or
    /// a close), so the batch hands them back to go first.
    private func lastEventsComeBeforeTheEnd(originBreaksOff: Bool) async throws {
        func chunk(_ ids: ClosedRange<Int>) -> String {
            let events = ids.map { "id: \($0)\ndata: token \($0)\n\n" }.joined()
            return String(events.utf8.count, radix: 16) + "\r\n" + events + "\r\n"
        }
        // The head and the first event open the client's response; the rest comes in one write
        // once that has gone out, so the events go into the batch.
        let opening = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(1...1)
        let rest = chunk(2...30) + (originBreaksOff ? "" : "0\r\n\r\n")
        let origin = try await OriginListener.start {
            TwoWriteOrigin(opening: opening, rest: rest, thenClose: originBreaksOff)
        }
        let harness = try await GatewayHarness.start(inFrontOf: origin, configure: { configuration in
            configuration.ioUring = true
        })
        if await harness.gateway.batchedSends() == nil {
            await harness.shutdown()
            try await origin.stop()
            throw XCTSkip("no io_uring for this process (kernel or seccomp)")
        }
        for round in 1...5 {
            let raw = try await RawSocket.connect(port: harness.port, group: harness.group)
            try await raw.send(
                "POST /chat HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            if originBreaksOff {
                try await raw.waitUntilClosed(timeout: .seconds(10))
            } else {
                try await raw.waitForText("\r\n0\r\n\r\n", timeout: .seconds(10))
            }
            let body = raw.text
            var position = body.startIndex
            for id in 1...30 {
                let range = try XCTUnwrap(body.range(of: "data: token \(id)\n", range: position..<body.endIndex),
                    "round \(round): event \(id) missing or out of order in \(body.debugDescription)")
                position = range.upperBound
            }
            if originBreaksOff {
                XCTAssertFalse(body.hasSuffix("\r\n0\r\n\r\n"), "round \(round): a broken-off response has no clean end")
            } else {
                XCTAssertTrue(body.hasSuffix("\r\n0\r\n\r\n"), "round \(round): the last chunk comes last")
            }
            await raw.close(reset: false)
        }
        let batched = await harness.gateway.batchedSends()
        let counts = try XCTUnwrap(batched)
        XCTAssertGreaterThan(counts.withdrawn, 0, "the end of a response took its events back from the batch")
        await harness.shutdown()
        try await origin.stop()
    }

    func testTheEndOfAResponseFollowsItsBatchedEvents() async throws {
        try await self.lastEventsComeBeforeTheEnd(originBreaksOff: false)
    }

    func testAResponseBrokenOffByItsOriginStillCarriesItsBatchedEvents() async throws {
        // Before: the events taken back from the batch were written but not flushed, and the
        // close that aborts the response dropped them (the e2e suite's broken-off chat stream).
        try await self.lastEventsComeBeforeTheEnd(originBreaksOff: true)
    }

    func testAClientThatResetsLeavesTheOthersStreaming() async throws {
        let harness = try await self.harness()
        let leaving = try await harness.client()
        let staying = try await harness.client()
        try await leaving.waitForHead()
        try await staying.waitForHead()
        try await harness.origin.waitForStreams(count: 1)
        harness.origin.broadcast("id: 1\ndata: one\n\n")
        try await leaving.waitForEvents(count: 1)
        await leaving.close()
        // New clients take the descriptors the gateway frees: each must get only its own stream.
        var newcomers: [SSETestClient] = []
        for id in 2...20 {
            harness.origin.broadcast("id: \(id)\ndata: event \(id)\n\n")
            let newcomer = try await harness.client()
            try await newcomer.waitForHead()
            newcomers.append(newcomer)
        }
        try await staying.waitUntil(timeout: .seconds(10)) { $0.events.count == 20 }
        XCTAssertEqual(staying.events.map(\.id), (1...20).map { String($0) })
        harness.origin.broadcast("id: 21\ndata: last\n\n")
        for newcomer in newcomers {
            try await newcomer.waitUntil(timeout: .seconds(10)) { $0.events.last?.id == "21" }
            let ids = newcomer.events.compactMap { $0.id.flatMap(Int.init) }
            XCTAssertEqual(ids, ids.sorted(), "in order")
            XCTAssertEqual(Set(ids).count, ids.count, "no event twice")
            XCTAssertTrue(newcomer.body.hasPrefix(":") || newcomer.body.hasPrefix("id:") || newcomer.body.hasPrefix("retry:"),
                          "a newcomer's body starts with its own stream: \(newcomer.body.prefix(40))")
        }
        for client in newcomers { await client.close() }
        await staying.close()
        await harness.shutdown()
    }

    func testAfterStopAcceptingNoConnectionIsAccepted() async throws {
        let harness = try await self.harness()
        let client = try await harness.client()
        try await client.waitForHead()
        let port = harness.port
        await harness.gateway.stopAccepting()
        let refused: Bool = await {
            do {
                let channel = try await ClientBootstrap(group: harness.group)
                    .connectTimeout(.seconds(2))
                    .connect(host: "127.0.0.1", port: port).get()
                try? await channel.close()
                return false
            } catch {
                return true
            }
        }()
        XCTAssertTrue(refused, "the listening socket is closed")
        XCTAssertFalse(client.isClosed, "connections already accepted go on")
        await client.close()
        await harness.shutdown()
    }
}

/// An origin that answers a connection's first request with two prepared writes, 100 ms apart
/// (closing the connection after the second with `thenClose`), and reads nothing after it.
private final class TwoWriteOrigin: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let opening: String
    private let rest: String
    private let thenClose: Bool

    init(opening: String, rest: String, thenClose: Bool) {
        self.opening = opening
        self.rest = rest
        self.thenClose = thenClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        let rest = ByteBuffer(string: self.rest)
        let thenClose = self.thenClose
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: self.opening)), promise: nil)
        context.eventLoop.scheduleTask(in: .milliseconds(100)) {
            let written = channel.writeAndFlush(rest)
            if thenClose { written.whenComplete { _ in channel.close(promise: nil) } }
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
