import NIOCore
import NIOEmbedded
import XCTest

@testable import TLS

final class DataTests: XCTestCase {
    let pki = TestPKI.shared

    private func establishedPair() throws -> InMemoryTLS {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        try pair.handshake()
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted)
        XCTAssertTrue(pair.serverRecorder.handshakeCompleted)
        return pair
    }

    func testDataBothWays() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        try pair.client.writeAndFlush(makeBuffer("GET /events HTTP/1.1\r\n\r\n")).wait()
        try pair.interact()
        XCTAssertEqual(pair.serverRecorder.receivedString, "GET /events HTTP/1.1\r\n\r\n")
        XCTAssertGreaterThan(pair.serverRecorder.readCompletes, 0)

        try pair.server.writeAndFlush(makeBuffer("HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n")).wait()
        try pair.interact()
        XCTAssertEqual(pair.clientRecorder.receivedString, "HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n")
        // Ciphertext on the wire, not plaintext.
        let wire = pair.serverToClient.map { String(buffer: $0) }.joined()
        XCTAssertFalse(wire.contains("data: 1"))
    }

    func testLargeWritesBothWays() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let payload = patternBuffer(count: 1 << 20)
        let clientWrite = pair.client.writeAndFlush(payload)
        let serverWrite = pair.server.writeAndFlush(payload)
        try pair.interact()
        try clientWrite.wait()
        try serverWrite.wait()
        XCTAssertEqual(pair.serverRecorder.received, payload)
        XCTAssertEqual(pair.clientRecorder.received, payload)
        // Plaintext is passed on in bounded buffers, not one per byte and not one giant one.
        XCTAssertGreaterThan(pair.serverRecorder.reads, 1)
        XCTAssertLessThan(pair.serverRecorder.reads, 1000)
    }

    func testLargeWriteDeliveredInSmallPieces() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let payload = patternBuffer(count: 300_000)
        try pair.client.writeAndFlush(payload).wait()
        // The network delivers the ciphertext in odd-sized pieces.
        var ciphertext = try InMemoryTLS.drainOutbound(pair.client)
        while ciphertext.readableBytes > 0, let piece = ciphertext.readSlice(length: min(977, ciphertext.readableBytes)) {
            try pair.server.writeInbound(piece)
        }
        XCTAssertEqual(pair.serverRecorder.received, payload)
    }

    func testWritesDuringHandshakeAreSentAfterIt() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.activate()
        let write = pair.client.writeAndFlush(makeBuffer("early"))
        let unflushed = pair.client.write(makeBuffer(" unflushed"))
        try pair.interact()
        try write.wait()
        XCTAssertEqual(pair.serverRecorder.receivedString, "early")
        pair.client.flush()
        try pair.interact()
        try unflushed.wait()
        XCTAssertEqual(pair.serverRecorder.receivedString, "early unflushed")
    }

    func testSmallWritesAreCoalescedIntoOneFlush() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        var futures: [EventLoopFuture<Void>] = []
        var expected = ""
        for index in 0..<100 {
            let event = "data: \(index)\n\n"
            expected += event
            futures.append(pair.server.write(makeBuffer(event)))
        }
        XCTAssertNil(try pair.server.readOutbound(as: ByteBuffer.self), "nothing goes out before the flush")
        pair.server.flush()
        let first = try XCTUnwrap(try pair.server.readOutbound(as: ByteBuffer.self))
        XCTAssertNil(try pair.server.readOutbound(as: ByteBuffer.self), "one ciphertext write per flush")
        // One record: the plaintext plus one record's overhead, not 100 records' worth.
        XCTAssertLessThan(first.readableBytes, expected.utf8.count + 100)
        for future in futures { try future.wait() }
        try pair.client.writeInbound(first)
        XCTAssertEqual(pair.clientRecorder.receivedString, expected)
    }

    func testEmptyWriteCompletes() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let future = pair.server.writeAndFlush(ByteBuffer())
        try pair.interact()
        XCTAssertNoThrow(try future.wait())
    }

    func testWriteAfterCloseFails() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        pair.client.close(promise: nil)
        let write = pair.client.writeAndFlush(makeBuffer("too late"))
        XCTAssertThrowsError(try write.wait())
    }

    func testDataInSameFlightAsFinishedIsDelivered() throws {
        // The client's Finished and its first request usually travel in one TCP segment.
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.activate()
        try pair.server.writeInbound(InMemoryTLS.drainOutbound(pair.client))  // ClientHello
        try pair.client.writeInbound(InMemoryTLS.drainOutbound(pair.server))  // ServerHello...Finished
        XCTAssertTrue(pair.clientRecorder.handshakeCompleted)
        try pair.client.writeAndFlush(makeBuffer("GET / HTTP/1.1\r\n\r\n")).wait()
        let flight = try InMemoryTLS.drainOutbound(pair.client)  // Finished + request, one buffer
        try pair.server.writeInbound(flight)
        XCTAssertTrue(pair.serverRecorder.handshakeCompleted)
        XCTAssertEqual(pair.serverRecorder.receivedString, "GET / HTTP/1.1\r\n\r\n")
    }

    func testCorruptRecordIsAProtocolError() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        try pair.client.writeAndFlush(makeBuffer("hello")).wait()
        var record = try InMemoryTLS.drainOutbound(pair.client)
        let last = record.writerIndex - 1
        record.setInteger(record.getInteger(at: last, as: UInt8.self)! ^ 0xFF, at: last)
        try pair.server.writeInbound(record)
        XCTAssertEqual(pair.serverRecorder.receivedString, "")
        XCTAssertEqual(pair.serverRecorder.tlsErrors.count, 1)
        if case .protocolError? = pair.serverRecorder.tlsErrors.first {} else {
            XCTFail("expected a protocol error, got \(pair.serverRecorder.errors)")
        }
        XCTAssertFalse(pair.server.isActive)
        XCTAssertEqual(pair.serverMetrics.snapshot.protocolErrors, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.uncleanEOFs, 0)
    }
}
