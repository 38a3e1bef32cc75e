import HTTP2
import HTTP2TestSupport
import NIOCore
import XCTest

/// Body bytes held by a paused stream (`pauseBody()`) count against both of the client's
/// flow-control windows, the stream's and the connection's. When the stream goes away its own
/// window goes with it, but the connection's must still get those bytes back: otherwise every
/// paused upload that is reset shrinks the connection's window for good, until no stream on that
/// connection can send a request body at all.
final class PausedBodyWindowTests: XCTestCase {
    /// 65,535 bytes (the connection's whole window) in frames of the default maximum size.
    private func fillTheWindow(_ h2: EmbeddedH2, stream: UInt32) throws {
        for size in [16_384, 16_384, 16_384, 16_383] {
            try h2.send(H2.data(stream, Array(repeating: 0x41, count: size)))
        }
    }

    private func connectionWindowUpdates(_ frames: [H2.Frame]) -> UInt32 {
        frames.filter { $0.kind == .windowUpdate && $0.streamID == 0 }.compactMap(\.windowIncrement).reduce(0, +)
    }

    private func make() throws -> EmbeddedH2 {
        var configuration = HTTP2ServerConfiguration()
        configuration.initialWindowSize = 65_535
        configuration.connectionWindowSize = 65_535
        let h2 = try EmbeddedH2(configuration)
        self.addTeardownBlock { _ = try? h2.channel.finish(acceptAlreadyClosed: true) }
        return h2
    }

    func testTheClientResettingAPausedUploadGivesItsBytesBackToTheConnection() throws {
        let h2 = try self.make()
        h2.onRequest = { stream in
            if stream.head.uri == "/stuck" { stream.pauseBody() }  // its destination is not reading
        }
        try h2.send(H2.request(1, method: "POST", path: "/stuck", endStream: false))
        try self.fillTheWindow(h2, stream: 1)
        XCTAssertEqual(self.connectionWindowUpdates(try h2.read()), 0, "held while paused")

        try h2.send(H2.rstStream(1, errorCode: 0x8))
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.reset(errorCode: 0x8)])
        XCTAssertEqual(self.connectionWindowUpdates(try h2.read()), 65_535)

        // The connection can carry a request body again.
        try h2.send(H2.request(3, method: "POST", path: "/upload", endStream: false))
        try h2.send(H2.data(3, Array(repeating: 0x42, count: 1_000), endStream: true))
        XCTAssertEqual(h2.delegate(3)?.bodies.map(\.count), [1_000])
        XCTAssertEqual(h2.delegate(3)?.ended, true)
        XCTAssertFalse(try h2.read().contains { $0.kind == .goAway })
    }

    func testTheServerResettingAPausedUploadGivesItsBytesBackToTheConnection() throws {
        let h2 = try self.make()
        h2.onRequest = { $0.pauseBody() }
        try h2.send(H2.request(1, method: "POST", path: "/stuck", endStream: false))
        try self.fillTheWindow(h2, stream: 1)
        try h2.read()
        let stream = try XCTUnwrap(h2.streams.first)
        stream.reset(errorCode: 0x8)
        var frames = try h2.read()
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.resetLocally(errorCode: 0x8)])
        stream.resumeBody()  // after the close: nothing to resume, and no harm done
        frames += try h2.read()
        XCTAssertEqual(self.connectionWindowUpdates(frames), 65_535)
    }
}
