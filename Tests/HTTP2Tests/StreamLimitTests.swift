import HTTP2
import HTTP2TestSupport
import XCTest

/// What a client that goes over SETTINGS_MAX_CONCURRENT_STREAMS gets, as documented on
/// `HTTP2ServerConfiguration.maxConcurrentStreams` (nghttp2's rules). Before it has acknowledged
/// the SETTINGS the extra streams are refused (RawClientTests); after, it has broken the protocol.
final class StreamLimitTests: XCTestCase {
    func testAClientThatAcknowledgedTheLimitAndGoesOverItLosesTheConnection() throws {
        var configuration = HTTP2ServerConfiguration()
        configuration.maxConcurrentStreams = 2
        let h2 = try EmbeddedH2(configuration)  // sends the client's SETTINGS and the ACK of the server's
        defer { _ = try? h2.channel.finish(acceptAlreadyClosed: true) }
        try h2.send(H2.request(1, path: "/a", endStream: false) + H2.request(3, path: "/b", endStream: false))
        XCTAssertEqual(h2.streams.map(\.streamID), [1, 3])
        try h2.send(H2.request(5, path: "/c", endStream: false))
        let goAway = try XCTUnwrap(try h2.read().first { $0.kind == .goAway })
        XCTAssertEqual(goAway.errorCode, 0x1, "PROTOCOL_ERROR")
        XCTAssertEqual(goAway.lastStreamID, 3)
        h2.channel.embeddedEventLoop.run()
        XCTAssertEqual(h2.streams.map(\.streamID), [1, 3], "stream 5 never reaches the application")
        XCTAssertEqual(h2.delegate(1)?.closeReasons, [.connectionClosed])
        XCTAssertEqual(h2.delegate(3)?.closeReasons, [.connectionClosed])
    }
}
