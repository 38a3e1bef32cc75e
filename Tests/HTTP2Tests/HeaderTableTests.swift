import CNghttp2
import HTTP2TestSupport
import NIOCore
import NIOEmbedded
import XCTest

@testable import HTTP2

/// The server advertises SETTINGS_HEADER_TABLE_SIZE 0, so that the requests' HPACK dynamic
/// table does not keep a connection's first request headers for its whole life. Before the client
/// acknowledges our SETTINGS it may still index (the protocol's 4,096 applies); on the ACK the
/// table is emptied, and its next header block starts with a table size update (RFC 7541 §4.2).
final class HeaderTableTests: XCTestCase {
    private func string(_ text: String) -> [UInt8] {
        precondition(text.utf8.count < 127)
        return [UInt8(text.utf8.count)] + Array(text.utf8)
    }

    /// GET http /events, `:authority` and `x-client` as literals with incremental indexing (they
    /// go into the dynamic table).
    private var indexingBlock: [UInt8] {
        [0x82, 0x86, 0x04] + self.string("/events") + [0x41] + self.string("gw.test")
            + [0x40] + self.string("x-client") + self.string(String(repeating: "v", count: 100))
    }

    /// GET http /events with `:authority` and `x-client` from the dynamic table (62, 63).
    private let indexedBlock: [UInt8] = [0x82, 0x86, 0x84, 0xBF, 0xBE]

    private func headers(_ stream: UInt32, _ block: [UInt8]) -> [UInt8] {
        H2.frame(.headers, flags: H2.Flag.endHeaders | H2.Flag.endStream, stream: stream, payload: block)
    }

    func testTheDynamicTableIsEmptiedOnTheAckAndClientsSendTheSizeUpdate() throws {
        var requests: [HTTP2ServerStream] = []
        let handler = HTTP2ServerHandler(configuration: HTTP2ServerConfiguration()) { requests.append($0) }
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(handler)
        func send(_ bytes: [UInt8]) throws {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            channel.embeddedEventLoop.run()
        }
        var output: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        let settings = H2.parse(output).frames.first { $0.kind == .settings }?.settings ?? []
        XCTAssertTrue(settings.contains { $0.0 == H2.Setting.headerTableSize.rawValue && $0.1 == 0 }, "\(settings)")
        let session = try XCTUnwrap(handler.session)

        // Before the ACK: the client indexes, and refers to what it indexed.
        try send(H2.preface + H2.settings() + self.headers(1, self.indexingBlock) + self.headers(3, self.indexedBlock))
        XCTAssertEqual(requests.map { $0.head.headers["host"] }, [["gw.test"], ["gw.test"]])
        XCTAssertEqual(requests.last?.head.headers["x-client"].first?.count, 100)
        XCTAssertGreaterThan(nghttp2_session_get_hd_inflate_dynamic_table_size(session), 0)

        // The ACK empties the table; the next block starts with the size update (0x20).
        try send(H2.settingsAck)
        XCTAssertEqual(nghttp2_session_get_hd_inflate_dynamic_table_size(session), 0)
        try send(self.headers(5, [0x20, 0x82, 0x86, 0x84, 0x01] + self.string("gw.test")))
        XCTAssertEqual(requests.count, 3)
        XCTAssertEqual(requests.last?.head.headers["host"], ["gw.test"])
        XCTAssertEqual(nghttp2_session_get_hd_inflate_dynamic_table_size(session), 0)

        // Without the update, a block after the ACK is a COMPRESSION_ERROR, as RFC 7541 says.
        try send(self.headers(7, self.indexedBlock))
        output = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        let goAway = H2.parse(output).frames.first { $0.kind == .goAway }
        XCTAssertEqual(goAway.flatMap { H2.uint32($0.payload, at: 4) }, 0x9)
        XCTAssertEqual(requests.count, 3)
    }
}
