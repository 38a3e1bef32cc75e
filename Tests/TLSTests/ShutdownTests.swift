import NIOCore
import NIOEmbedded
import XCTest

@testable import TLS

final class ShutdownTests: XCTestCase {
    let pki = TestPKI.shared

    private func establishedPair(shutdownTimeout: TimeAmount = .seconds(3)) throws -> InMemoryTLS {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext(), shutdownTimeout: shutdownTimeout)
        try pair.handshake()
        XCTAssertTrue(pair.serverRecorder.handshakeCompleted)
        return pair
    }

    func testCloseNotifyExchange() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let closed = pair.client.close()
        XCTAssertTrue(pair.client.isActive, "waits for the peer's close_notify")
        try pair.interact()
        XCTAssertNoThrow(try closed.wait())
        XCTAssertFalse(pair.client.isActive)
        XCTAssertFalse(pair.server.isActive)
        XCTAssertTrue(pair.serverRecorder.shutdownCompleted)
        XCTAssertTrue(pair.clientRecorder.shutdownCompleted)
        XCTAssertEqual(pair.clientMetrics.snapshot.cleanCloses, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.cleanCloses, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.uncleanEOFs, 0)
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty)
        XCTAssertTrue(pair.clientRecorder.errors.isEmpty)
    }

    func testDataFlushedBeforeCloseArrives() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        pair.server.writeAndFlush(makeBuffer("last event"), promise: nil)
        pair.server.close(promise: nil)
        try pair.interact()
        XCTAssertEqual(pair.clientRecorder.receivedString, "last event")
        XCTAssertFalse(pair.server.isActive)
        XCTAssertEqual(pair.clientMetrics.snapshot.cleanCloses, 1)
    }

    func testPeerDataWhileClosingIsDiscarded() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        pair.client.close(promise: nil)
        let closeNotify = try InMemoryTLS.drainOutbound(pair.client)
        // The server writes something before it sees the close_notify.
        try pair.server.writeAndFlush(makeBuffer("crossing")).wait()
        try pair.client.writeInbound(InMemoryTLS.drainOutbound(pair.server))
        XCTAssertTrue(pair.client.isActive)
        XCTAssertEqual(pair.clientRecorder.receivedString, "")
        try pair.server.writeInbound(closeNotify)
        try pair.interact()
        XCTAssertFalse(pair.client.isActive)
        XCTAssertEqual(pair.clientMetrics.snapshot.cleanCloses, 1)
    }

    func testShutdownTimeout() throws {
        let pair = try establishedPair(shutdownTimeout: .seconds(1))
        defer { pair.finish() }
        let closed = pair.client.close()
        _ = try InMemoryTLS.drainOutbound(pair.client)  // the server never answers
        pair.loop.advanceTime(by: .milliseconds(999))
        XCTAssertTrue(pair.client.isActive)
        pair.loop.advanceTime(by: .milliseconds(1))
        XCTAssertNoThrow(try closed.wait())
        XCTAssertFalse(pair.client.isActive)
        XCTAssertFalse(pair.clientRecorder.shutdownCompleted)
        XCTAssertEqual(pair.clientMetrics.snapshot.cleanCloses, 1)
        XCTAssertTrue(pair.clientRecorder.errors.isEmpty)
    }

    func testSecondCloseJoinsTheFirst() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let first = pair.client.close()
        let second = pair.client.close()
        try pair.interact()
        XCTAssertNoThrow(try first.wait())
        XCTAssertNoThrow(try second.wait())
        XCTAssertEqual(pair.clientMetrics.snapshot.cleanCloses, 1)
    }

    func testPeerDropWithoutCloseNotifyIsUncleanEOFNotAnError() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        InMemoryTLS.dropTransport(pair.server)
        XCTAssertEqual(pair.serverMetrics.snapshot.uncleanEOFs, 1)
        XCTAssertEqual(pair.serverMetrics.snapshot.cleanCloses, 0)
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty, "\(pair.serverRecorder.errors)")
        XCTAssertTrue(pair.serverRecorder.becameInactive)
    }

    func testTruncatedRecordThenEOFIsUnclean() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        try pair.client.writeAndFlush(makeBuffer("a complete event that never arrives whole")).wait()
        var record = try InMemoryTLS.drainOutbound(pair.client)
        let half = try XCTUnwrap(record.readSlice(length: record.readableBytes / 2))
        try pair.server.writeInbound(half)
        InMemoryTLS.dropTransport(pair.server)
        XCTAssertEqual(pair.serverRecorder.receivedString, "", "no plaintext from a partial record")
        XCTAssertEqual(pair.serverMetrics.snapshot.uncleanEOFs, 1)
        XCTAssertTrue(pair.serverRecorder.errors.isEmpty)
    }

    func testPendingWritesFailOnEOF() throws {
        let pair = try establishedPair()
        defer { pair.finish() }
        let write = pair.server.write(makeBuffer("never flushed"))
        InMemoryTLS.dropTransport(pair.server)
        XCTAssertThrowsError(try write.wait())
    }

    func testCloseDuringHandshakeClosesAtOnce() throws {
        let pair = try InMemoryTLS(server: pki.serverContext(), client: pki.clientContext())
        defer { pair.finish() }
        try pair.activate()
        let closed = pair.client.close()
        XCTAssertNoThrow(try closed.wait())
        XCTAssertFalse(pair.client.isActive)
        XCTAssertEqual(pair.clientMetrics.snapshot, TLSMetrics.Snapshot())
    }
}
