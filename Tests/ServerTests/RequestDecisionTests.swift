import LifelineCore
import NIOCore
import NIOEmbedded
import NIOHTTP1
import XCTest

@testable import Server

/// What the gateway does with a request, decided without channels: from the parsed request and
/// what the hub answered.
final class RequestDecisionTests: XCTestCase {
    private var loop: EmbeddedEventLoop!

    override func setUp() { self.loop = EmbeddedEventLoop() }
    override func tearDown() {
        try? self.loop.syncShutdownGracefully()
        self.loop = nil
    }

    private func configuration(unshared: [String] = []) -> GatewayConfiguration {
        var configuration = GatewayConfiguration()
        configuration.routes = [try! Route.parse("/=http://origin:3000/").get()]
        configuration.unsharedRoutes = Set(unshared)
        return configuration
    }

    private func head(_ uri: String, method: HTTPMethod = .GET, headers: [(String, String)] = []) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders([("Host", "gw")] + headers))
    }

    private func parse(_ head: HTTPRequestHead, _ configuration: GatewayConfiguration) -> Result<ClientRequest, RequestRefusal> {
        ClientRequest.parse(head, client: ClientFacts(address: "10.0.0.1", scheme: "http"),
                            router: Router(routes: configuration.routes), configuration: configuration)
    }

    private func dispatch(_ head: HTTPRequestHead, script: String? = "/_lifeline/client.js", hasStream: Bool = false) -> String {
        let configuration = self.configuration()
        let decision = RequestDecision.dispatch(head, parsed: self.parse(head, configuration), clientScriptPath: script,
                                                hasStream: { _ in hasStream })
        switch decision {
        case .clientScript(let script): return script.etag == ClientScript.embedded.etag ? "script" : "module"
        case .refuse(let refusal): return "refuse \(refusal.status.code)"
        case .stream: return "stream"
        case .proxy: return "proxy"
        case .resume(let token): return "resume \(token.map { String($0.value.prefix(4)) } ?? "none")"
        }
    }

    func testDispatch() {
        let events = [("Accept", "text/event-stream")]
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/client.js")), "script")
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/client.mjs?v=2")), "module")
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/client.js"), script: nil), "proxy", "off: an ordinary path")
        XCTAssertEqual(self.dispatch(self.head("/events", headers: events)), "stream")
        XCTAssertEqual(self.dispatch(self.head("/events")), "proxy", "no Accept and no stream: a plain request")
        XCTAssertEqual(self.dispatch(self.head("/events"), hasStream: true), "stream", "curl -N joins an existing stream")
        XCTAssertEqual(self.dispatch(self.head("/events", method: .POST, headers: events)), "proxy",
                       "a POST is never joined to a shared stream")
        XCTAssertEqual(self.dispatch(self.head("/../x", headers: events)), "refuse 400")
        XCTAssertEqual(self.dispatch(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/x")), "refuse 400", "no Host")
        let token = String(repeating: "ab12", count: 8)
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/resume/\(token)")), "resume ab12", "before any route")
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/resume/\(token)?x=1", headers: events)), "resume ab12")
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/resume/ABC")), "resume none", "not a token: answered 404")
        XCTAssertEqual(self.dispatch(self.head("/_lifeline/resume/\(token)", method: .POST)), "proxy", "only a GET resumes")
    }

    private func request(_ uri: String = "/events", headers: [(String, String)] = [], unshared: [String] = []) -> ClientRequest {
        let configuration = self.configuration(unshared: unshared)
        var configurationWithRoutes = configuration
        if !unshared.isEmpty {
            configurationWithRoutes.routes = [try! Route.parse("\(unshared[0])=http://origin:3000\(unshared[0])").get(),
                                              try! Route.parse("/=http://origin:3000/").get()]
        }
        return try! self.parse(self.head(uri, headers: [("Accept", "text/event-stream")] + headers), configurationWithRoutes).get()
    }

    private func describe(_ step: RequestDecision.StreamStep?) -> String {
        switch step {
        case nil: return "look up again"
        case .attach(_, let waited): return waited ? "attach as opener" : "attach"
        case .waitForOpening: return "wait"
        case .open(let ticket, let sharing, let resumeID): return "open \(ticket == nil ? "own" : "shared") \(sharing.name) from \(resumeID ?? "-")"
        }
    }

    private func stream(vary: [String] = [], openedWith values: [String: String] = [:]) -> EventStream {
        EventStream(key: makeTestKey(), eventLoop: self.loop, configuration: StreamConfiguration(),
                    opening: .init(variant: StreamVariant(vary: vary, value: { values[$0] })))
    }

    func testAGetOnAnUnsharedRouteIsProxiedAsTheClientsOwn() {
        // Like a POST: sent once, and a private generation if answered with an event stream.
        var configuration = self.configuration(unshared: ["/state"])
        configuration.routes = [try! Route.parse("/state=http://origin:3000/state").get(), try! Route.parse("/=http://origin:3000/").get()]
        for (uri, expected) in [("/state", "proxy"), ("/state/x?y=1", "proxy"), ("/events", "stream")] {
            let head = self.head(uri, headers: [("Accept", "text/event-stream"), ("Last-Event-ID", "41")])
            let decision = RequestDecision.dispatch(head, parsed: self.parse(head, configuration), clientScriptPath: nil,
                                                    hasStream: { _ in true })
            switch decision {
            case .proxy(let request):
                XCTAssertEqual(expected, "proxy", uri)
                XCTAssertEqual(request.ownStreamHead().headers.first(name: "last-event-id"), "41", "the client's id goes to the origin")
                XCTAssertEqual(request.ownStreamHead().headers.first(name: "accept-encoding"), "identity", "its events are read")
            case .stream: XCTAssertEqual(expected, "stream", uri)
            default: XCTFail("\(uri): \(decision)")
            }
        }
    }

    func testAfterTheHubsAnswer() {
        let hub = StreamHub()
        let request = self.request(headers: [("Last-Event-ID", "7")])
        let first = hub.lookup(request.key, on: self.loop, onOpened: { _ in })
        XCTAssertEqual(describe(RequestDecision.afterLookup(request, first, replayMiss: .upstream)), "open shared shared from 7")
        XCTAssertEqual(describe(RequestDecision.afterLookup(request, first, replayMiss: .live)), "open shared shared from -",
                       "misses join live: the origin is opened live")
        let second = hub.lookup(request.key, on: self.loop, onOpened: { _ in })
        XCTAssertEqual(describe(RequestDecision.afterLookup(request, second, replayMiss: .upstream)), "wait")
        XCTAssertEqual(describe(RequestDecision.afterLookup(request, .stream(self.stream()), replayMiss: .upstream)), "attach")
    }

    func testAVaryMismatchGetsAStreamOfItsOwn() {
        let stream = self.stream(vary: ["Origin"], openedWith: ["origin": "https://a.example"])
        let same = self.request(headers: [("Origin", "https://a.example")])
        let other = self.request(headers: [("Origin", "https://b.example"), ("Last-Event-ID", "3")])
        XCTAssertEqual(describe(RequestDecision.onStream(same, stream, waitedForOpening: true)), "attach as opener")
        XCTAssertEqual(describe(RequestDecision.onStream(other, stream, waitedForOpening: false)), "open own vary mismatch from 3")
    }

    func testAfterARefusal() {
        let request = self.request(headers: [("Last-Event-ID", "2")])
        XCTAssertEqual(describe(RequestDecision.afterRefusal(request, .ended)), "look up again")
        XCTAssertEqual(describe(RequestDecision.afterRefusal(request, .needsCatchUp(lastEventID: "2"))), "open own catching up from 2")
    }

    func testOutcomesSayWhoseDoingTheEndWas() {
        XCTAssertEqual(ExchangeOutcome.completed.party, .none)
        XCTAssertEqual(ExchangeOutcome.clientClosed.party, .client)
        XCTAssertEqual(ExchangeOutcome.slowClient.party, .client)
        XCTAssertEqual(ExchangeOutcome.refused(.noRoute(path: "/x")).party, .client)
        XCTAssertEqual(ExchangeOutcome.refused(.tooManyClients).party, .lifeline)
        XCTAssertEqual(ExchangeOutcome.refused(.originTimeout).party, .origin)
        XCTAssertEqual(ExchangeOutcome.streamEnded(.originNoContent).party, .origin)
        XCTAssertEqual(ExchangeOutcome.streamEnded(.shutdown).party, .lifeline)
        XCTAssertEqual(ExchangeOutcome.drained.party, .lifeline)
        XCTAssertEqual(ExchangeOutcome.originFailedMidResponse.description, "origin failed mid-response")
        XCTAssertEqual(ExchangeOutcome.refused(.headTooLarge).description, "request head too large (431)")
    }
}

private func makeTestKey() -> StreamKey {
    StreamKey(method: "GET", origin: "http://origin:3000", path: "/events", query: "", headerValues: [])
}
