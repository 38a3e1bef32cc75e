import NIOHTTP1
import XCTest

@testable import Upstream

final class HopByHopHeadersTests: XCTestCase {
    func testRemovesTheStandardHopByHopHeaders() {
        let headers: HTTPHeaders = [
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Trailer": "Expires",
            "Transfer-Encoding": "chunked",
            "Upgrade": "h2c",
            "Proxy-Authenticate": "Basic",
            "Proxy-Authorization": "Basic abc",
            "Accept": "text/event-stream",
            "Authorization": "Bearer t",
        ]
        let result = HopByHopHeaders.removing(from: headers)
        XCTAssertEqual(result.map(\.name), ["Accept", "Authorization"])
        XCTAssertEqual(result["authorization"], ["Bearer t"], "end-to-end credentials are kept")
    }

    func testRemovesHeadersNamedByConnection() {
        let headers: HTTPHeaders = [
            "Connection": "close, X-Hop ,x-other",
            "connection": "X-Third",
            "X-Hop": "1",
            "X-OTHER": "2",
            "x-third": "3",
            "X-End-To-End": "4",
        ]
        let result = HopByHopHeaders.removing(from: headers)
        XCTAssertEqual(result.map(\.name), ["X-End-To-End"])
    }

    func testKeepsOrderAndRepeatedHeaders() {
        let headers = HTTPHeaders([("Cookie", "a=1"), ("Accept", "*/*"), ("Cookie", "b=2")])
        let result = HopByHopHeaders.removing(from: headers)
        XCTAssertEqual(result.map { "\($0.name)=\($0.value)" }, ["Cookie=a=1", "Accept=*/*", "Cookie=b=2"])
    }
}

final class UpstreamRequestTests: XCTestCase {
    private let target = OriginTarget(scheme: .http, host: "10.0.0.5", port: 3000, basePath: "/events")

    private func head(
        _ headers: HTTPHeaders,
        method: HTTPMethod = .GET,
        path: String = "/events/room1",
        query: String? = "topic=a",
        clientAddress: String? = "203.0.113.7",
        scheme: String = "https",
        forStream: Bool = true
    ) -> HTTPRequestHead {
        UpstreamRequest.head(
            from: HTTPRequestHead(version: .http1_1, method: method, uri: "/ignored", headers: headers),
            target: self.target,
            path: path,
            query: query,
            clientAddress: clientAddress,
            clientScheme: scheme,
            forStream: forStream
        )
    }

    func testStreamRequest() {
        let head = self.head([
            "Host": "gateway.example.com",
            "Accept": "text/event-stream",
            "Accept-Encoding": "gzip, br",
            "Last-Event-ID": "41",
            "Authorization": "Bearer t",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Content-Length": "0",
        ])
        XCTAssertEqual(head.uri, "/events/room1?topic=a")
        XCTAssertEqual(head.method, .GET)
        XCTAssertEqual(head.version, .http1_1)
        XCTAssertEqual(head.headers["host"], ["10.0.0.5:3000"], "Host is the origin's")
        XCTAssertEqual(head.headers["x-forwarded-host"], ["gateway.example.com"])
        XCTAssertEqual(head.headers["x-forwarded-for"], ["203.0.113.7"])
        XCTAssertEqual(head.headers["x-forwarded-proto"], ["https"])
        XCTAssertEqual(head.headers["accept-encoding"], ["identity"], "no compression of an event stream")
        XCTAssertEqual(head.headers["last-event-id"], [], "left to the session")
        XCTAssertEqual(head.headers["authorization"], ["Bearer t"])
        XCTAssertEqual(head.headers["accept"], ["text/event-stream"])
        for name in ["connection", "x-hop", "keep-alive", "content-length"] {
            XCTAssertEqual(head.headers[name], [], name)
        }
    }

    func testForwardedForIsAppended() {
        let head = self.head(["Host": "gw", "X-Forwarded-For": "198.51.100.1, 10.1.1.1"])
        XCTAssertEqual(head.headers["x-forwarded-for"], ["198.51.100.1, 10.1.1.1, 203.0.113.7"])
        let unknown = self.head(["Host": "gw", "X-Forwarded-For": "198.51.100.1"], clientAddress: nil)
        XCTAssertEqual(unknown.headers["x-forwarded-for"], ["198.51.100.1"], "passed on when the client's address is unknown")
    }

    /// BUG (minor): a client (or a proxy before the gateway) may send X-Forwarded-For as several
    /// header lines; they form one list (RFC 9110 §5.3). Only the first line is kept and the
    /// others' addresses are lost.
    func testForwardedForAcrossSeveralHeaderLinesIsKept() {
        let head = self.head(HTTPHeaders([("Host", "gw"), ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "198.51.100.2")]))
        XCTAssertEqual(head.headers["x-forwarded-for"], ["198.51.100.1, 198.51.100.2, 203.0.113.7"])
    }

    func testForwardedProtoIsTheGatewaysAndReplacesTheClients() {
        let head = self.head(["Host": "gw", "X-Forwarded-Proto": "https"], scheme: "http")
        XCTAssertEqual(head.headers["x-forwarded-proto"], ["http"])
    }

    func testNoHostNoForwardedHost() {
        let head = self.head([:])
        XCTAssertEqual(head.headers["x-forwarded-host"], [])
        XCTAssertEqual(head.headers["host"], ["10.0.0.5:3000"])
    }

    func testEmptyPathIsTheRootAndEmptyQueryIsLeftOut() {
        XCTAssertEqual(self.head([:], path: "", query: nil).uri, "/")
        XCTAssertEqual(self.head([:], path: "/x", query: "").uri, "/x")
        XCTAssertEqual(self.head([:], path: "", query: "a=1").uri, "/?a=1")
    }

    func testPlainRequestKeepsItsBodyFramingAndEncoding() {
        let withLength = self.head(
            ["Host": "gw", "Content-Length": "5", "Accept-Encoding": "gzip", "Last-Event-ID": "7"],
            method: .POST,
            forStream: false
        )
        XCTAssertEqual(withLength.method, .POST)
        XCTAssertEqual(withLength.headers["content-length"], ["5"])
        XCTAssertEqual(withLength.headers["accept-encoding"], ["gzip"])
        XCTAssertEqual(withLength.headers["last-event-id"], ["7"])
        XCTAssertEqual(withLength.headers["transfer-encoding"], [])
        let chunked = self.head(["Host": "gw", "Transfer-Encoding": "chunked"], method: .POST, forStream: false)
        XCTAssertEqual(chunked.headers["transfer-encoding"], ["chunked"], "re-framed as chunked")
        let bodyless = self.head(["Host": "gw"], forStream: false)
        XCTAssertEqual(bodyless.headers["transfer-encoding"], [])
    }
}

final class SharedResponseHeadersTests: XCTestCase {
    func testKeepsEndToEndHeadersAndDropsOwnedOnes() {
        let headers = HTTPHeaders([
            ("Content-Type", "text/event-stream"),
            ("Content-Length", "10"),
            ("Cache-Control", "no-store"),
            ("X-Accel-Buffering", "yes"),
            ("Set-Cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"),
            ("Lifeline-Replay", "hit"),
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Access-Control-Allow-Origin", "*"),
            ("Vary", "Origin"),
            ("X-Request-Id", "r1"),
        ])
        let kept = SharedResponseHeaders.filter(headers).map { "\($0.0): \($0.1)" }
        XCTAssertEqual(kept, ["Access-Control-Allow-Origin: *", "Vary: Origin", "X-Request-Id: r1"])
    }
}
