import CMalloc
import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import Server

/// What one streaming HTTP/1.1 client costs the gateway's heap beyond NIO's channel: the handler,
/// its pipeline context, the exchange, the writer and the stream membership. Measured with the
/// allocator's own count (glibc `mallinfo2`), as the difference between 2,000 streaming clients
/// and 2,000 bare channels. The idle-hold benchmark (`a-*`) measures the whole process; this pins
/// Lifeline's own share so that a field or an eager allocation added per client shows up here.
///
/// The bound is tight on purpose (566 B measured): glibc hands out chunks in steps of 16 bytes,
/// so one object growing past its size class, or a weak reference's side table coming back,
/// moves the figure by 16 bytes or more and fails the test. 789 B before the per-loop head timer,
/// the smaller handler and writer and the registry set; 614 B while the stream still held its
/// subscribers weakly (the exchange's side table, 48 B).
final class StreamingClientMemoryTests: XCTestCase {
    func testAStreamingClientCostsLessThan576BytesBeyondItsChannel() throws {
        try XCTSkipIf(HeapTrimmerTests.underSanitizer, "the sanitizer's allocator is not glibc's")
        #if os(Linux)
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let origins = OriginChannels(loop: loop)
        var configuration = GatewayConfiguration()
        configuration.routes = [try Route.parse("/=http://origin.test:3000/").get()]
        configuration.heartbeat = .seconds(15)
        configuration.upstream.connector = origins.connector
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let shared = GatewayShared(configuration: configuration, hub: StreamHub(), eventLoops: [loop], logger: logger)
        let context = LoopContext(eventLoop: loop, shared: shared)
        func connected() throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(loop: loop)
            try channel.connect(to: SocketAddress(ipAddress: "10.1.1.1", port: 5555)).wait()
            return channel
        }
        func subscriber() throws -> EmbeddedChannel {
            let channel = EmbeddedChannel(loop: loop)
            let decoder = ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes))
            try channel.pipeline.syncOperations.addHandler(decoder)
            try channel.pipeline.syncOperations.addHandler(HTTP1ServerHandler(loop: context, decoder: decoder))
            try channel.connect(to: SocketAddress(ipAddress: "10.1.1.1", port: 5555)).wait()
            try channel.writeInbound(ByteBuffer(string: "GET /events HTTP/1.1\r\nHost: gw\r\nAccept: text/event-stream\r\n\r\n"))
            loop.run()
            while try channel.readOutbound(as: ByteBuffer.self) != nil {}
            return channel
        }
        // The stream and the loop's structures exist before the count starts.
        var clients = [try subscriber()]
        try origins[0].writeInbound(ByteBuffer(
            string: "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
        loop.run()
        for _ in 0..<100 { clients.append(try subscriber()) }
        let count = 2000
        var bare: [EmbeddedChannel] = []
        bare.reserveCapacity(count)
        clients.reserveCapacity(clients.count + count)
        let start = lifeline_heap_in_use()
        for _ in 0..<count { bare.append(try connected()) }
        let afterBare = lifeline_heap_in_use()
        for _ in 0..<count { clients.append(try subscriber()) }
        let afterClients = lifeline_heap_in_use()
        XCTAssertEqual(shared.hub.streams.first?.subscriberCount, clients.count, "every client is streaming")
        let perChannel = Double(afterBare - start) / Double(count)
        let perClient = Double(afterClients - afterBare) / Double(count) - perChannel
        print("per streaming client beyond its channel: \(Int(perClient)) B (a bare channel: \(Int(perChannel)) B)")
        XCTAssertLessThan(perClient, 576, "a streaming client's own objects grew")
        for stream in shared.hub.streams { stream.shutdown() }
        loop.run()
        #endif
    }
}
