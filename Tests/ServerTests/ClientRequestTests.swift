import LifelineCore
import NIOHTTP1
import XCTest

@testable import Server

/// The request as validated at the edge: a pure value, tested without sockets.
final class ClientRequestTests: XCTestCase {
    private let router = Router(routes: [
        try! Route.parse("/events/=http://origin:3000/base/").get(),
        try! Route.parse("/=http://origin:3000/").get(),
    ])

    private func parse(
        _ uri: String,
        version: HTTPVersion = .http1_1,
        headers: [(String, String)] = [("Host", "gw")]
    ) -> Result<ClientRequest, RequestRefusal> {
        let head = HTTPRequestHead(version: version, method: .GET, uri: uri, headers: HTTPHeaders(headers))
        return ClientRequest.parse(
            head,
            client: ClientFacts(address: "10.0.0.1", scheme: "http"),
            router: self.router,
            configuration: GatewayConfiguration()
        )
    }

    func testDotSegmentsAreResolvedOrRefused() {
        XCTAssertEqual(RequestPath.normalize("/events/a/../b"), "/events/b")
        XCTAssertEqual(RequestPath.normalize("/events/./b/."), "/events/b/")
        XCTAssertEqual(RequestPath.normalize("/events/%2e%2E/admin"), "/admin")
        XCTAssertEqual(RequestPath.normalize("/events/.%2e/"), "/")
        XCTAssertEqual(RequestPath.normalize("/a/b/%2E"), "/a/b/")
        XCTAssertNil(RequestPath.normalize("/.."), "above the root")
        XCTAssertNil(RequestPath.normalize("/a/../../b"), "above the root")
        XCTAssertNil(RequestPath.normalize("/events/..%2fadmin"), "an encoded slash hides a dot segment")
        XCTAssertNil(RequestPath.normalize("/events/..%5Cadmin"), "so does an encoded backslash")
        XCTAssertNil(RequestPath.normalize("/events/%00"), "control characters")
        XCTAssertNil(RequestPath.normalize("/events/%zz/.."), "a malformed escape")
        // What needs no work is left alone, escapes included.
        XCTAssertEqual(RequestPath.normalize("/events/a%20b"), "/events/a%20b")
        XCTAssertEqual(RequestPath.normalize("/events/v1.2/x"), "/events/v1.2/x")
        XCTAssertEqual(RequestPath.normalize("/a%2Fb"), "/a%2Fb", "an encoded slash without dots is the origin's business")
    }

    func testRouteIsChosenOnTheResolvedPath() throws {
        let request = try self.parse("/events/../secret").get()
        XCTAssertEqual(request.match.route.prefix, "/")
        XCTAssertEqual(request.match.upstreamPath, "/secret")
        let inside = try self.parse("/events/x/../y?q=1").get()
        XCTAssertEqual(inside.match.upstreamPath, "/base/y")
        XCTAssertEqual(inside.upstreamQuery, "q=1")
    }

    func testAcceptNamesTheEventStreamInAnyCaseAndPlace() throws {
        let accepts: [(String, Bool)] = [
            ("text/event-stream", true),
            ("Text/Event-Stream", true),
            ("application/json, TEXT/EVENT-STREAM;q=0.9", true),
            ("*/*", false),
            ("text/event-strea", false),
            ("text/event_stream", false),
            ("", false),
            ("tëxt/event-stream, text/event-stream", true),
        ]
        for (accept, wanted) in accepts {
            XCTAssertEqual(try self.parse("/x", headers: [("Host", "gw"), ("Accept", accept)]).get().wantsEvents, wanted, accept)
        }
        XCTAssertFalse(try self.parse("/x").get().wantsEvents, "no Accept")
        XCTAssertTrue(
            try self.parse("/x", headers: [("Host", "gw"), ("Accept", "text/html"), ("Accept", "text/event-stream")]).get().wantsEvents,
            "on a second Accept line"
        )
    }

    func testHostRules() {
        XCTAssertEqual(self.parse("/x", headers: []).failure, .badHost, "HTTP/1.1 needs Host")
        XCTAssertEqual(self.parse("/x", headers: [("Host", "a"), ("Host", "b")]).failure, .badHost)
        XCTAssertNotNil(try? self.parse("/x", version: .http1_0, headers: []).get(), "HTTP/1.0 may omit it")
        XCTAssertNotNil(try? self.parse("/x", version: HTTPVersion(major: 2, minor: 0), headers: []).get())
    }

    func testHeaderFieldsAnOriginCouldNotBeSentAreRefused() {
        // Found by the http1-server fuzz target: "\u{1C}Accept" passed the server's parser and
        // made the origin request fail (502); it is refused at the edge instead.
        XCTAssertEqual(self.parse("/x", headers: [("Host", "gw"), ("\u{1C}Accept", "a")]).failure, .badHeader)
        XCTAssertEqual(self.parse("/x", headers: [("Host", "gw"), ("X Y", "a")]).failure, .badHeader, "a space in a name")
        XCTAssertEqual(self.parse("/x", headers: [("Host", "gw"), ("X", "a\u{01}b")]).failure, .badHeader)
        XCTAssertEqual(self.parse("/x", headers: [("Host", "gw"), ("X", "a\u{7F}")]).failure, .badHeader)
        XCTAssertEqual(RequestRefusal.badHeader.status, .badRequest)
        // Tabs, visible characters and obs-text are fine.
        XCTAssertNotNil(try? self.parse("/x", headers: [("Host", "gw"), ("X-Ok_1!", "a\tb ~ é")]).get())
    }

    func testAbsoluteFormTakesItsAuthorityAsHost() throws {
        let request = try self.parse("http://front.example:8080/events/a?x=1", headers: [("Host", "ignored")]).get()
        XCTAssertEqual(request.head.uri, "/events/a?x=1")
        XCTAssertEqual(request.head.headers["host"], ["front.example:8080"])
        XCTAssertEqual(request.match.upstreamPath, "/base/a")
        XCTAssertEqual(try self.parse("HTTPS://h").get().head.uri, "/")
        XCTAssertEqual(self.parse("*").failure, .badTarget)
        XCTAssertEqual(self.parse("example.com:443").failure, .badTarget)
        XCTAssertEqual(self.parse("http://user@h/x").failure, .badTarget)
    }

    func testLastEventIDMustBeSane() throws {
        let plain = try self.parse("/events/s?lastEventId=42").get()
        XCTAssertEqual(plain.lastEventID, "42")
        XCTAssertFalse(plain.rejectedLastEventID)
        for poison in ["%0A", "%0D", "%00", "%01", "a%7Fb", String(repeating: "x", count: 1025)] {
            let request = try self.parse("/events/s?lastEventId=\(poison)").get()
            XCTAssertNil(request.lastEventID, poison)
            XCTAssertTrue(request.rejectedLastEventID, poison)
            XCTAssertNil(request.upstreamQuery, "the parameter is removed either way")
        }
        let header = try self.parse("/events/s", headers: [("Host", "gw"), ("Last-Event-ID", "a\u{01}b")]).get()
        XCTAssertNil(header.lastEventID)
        XCTAssertEqual(try self.parse("/events/s?lastEventId=").get().rejectedLastEventID, false, "empty means none")
        XCTAssertEqual(try self.parse("/events/s?lastEventId=\(String(repeating: "x", count: 1024))").get().lastEventID?.count, 1024)
    }

    func testStreamVariantFollowsVary() {
        let values = ["origin": "http://a.example", "accept-language": "en"]
        let variant = StreamVariant(vary: ["Origin, Accept-Encoding", "accept-language"]) { values[$0] }
        XCTAssertEqual(variant.names, ["origin", "accept-language"])
        XCTAssertTrue(variant.fits { values[$0] })
        XCTAssertFalse(variant.fits { $0 == "origin" ? "http://b.example" : values[$0] })
        XCTAssertFalse(variant.fits { $0 == "origin" ? nil : values[$0] })
        XCTAssertTrue(StreamVariant(vary: []) { _ in nil }.fits { _ in "anything" })
        XCTAssertFalse(StreamVariant(vary: ["*"]) { _ in nil }.fits { _ in nil }, "Vary: * fits no other request")
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
