import NIOCore
import NIOHTTP1
import XCTest

@testable import Server

/// The HTTP/1.1 connection logic without sockets: keep-alive, pipelining, framing, HEAD, HTTP/1.0,
/// and when reads are held.
final class HTTP1ConnectionStateMachineTests: XCTestCase {
    typealias Machine = HTTP1ConnectionStateMachine

    private func head(
        _ method: HTTPMethod = .GET,
        _ uri: String = "/",
        version: HTTPVersion = .http1_1,
        headers: [(String, String)] = []
    ) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: version, method: method, uri: uri, headers: HTTPHeaders(headers)))
    }

    func testKeepAliveServesRequestsOneAfterAnother() {
        var machine = Machine()
        guard case .startExchange = machine.receive(self.head()) else { return XCTFail() }
        XCTAssertEqual(machine.receive(.end(nil)), .deliverEnd)
        XCTAssertEqual(machine.responseHead(status: .ok, hasContentLength: true, isEventStream: false)?.framing, Machine.Framing())
        XCTAssertEqual(machine.responseEnded(closeRequested: false, streamingOnly: false), .awaitNext(replay: [], passHeldRead: false))
        guard case .startExchange = machine.receive(self.head()) else { return XCTFail("a second request on the connection") }
    }

    func testPipelinedRequestIsParkedWithReadsHeldThenReplayed() {
        var machine = Machine()
        _ = machine.receive(self.head(.GET, "/events", headers: [("Accept", "text/event-stream")]))
        _ = machine.receive(.end(nil))
        XCTAssertTrue(machine.readRequested(), "nothing parked: reads flow")
        let second = self.head(.POST, "/upload", headers: [("Content-Length", "3")])
        XCTAssertEqual(machine.receive(second), .park)
        XCTAssertEqual(machine.receive(.body(ByteBuffer(string: "abc"))), .park)
        XCTAssertEqual(machine.receive(.end(nil)), .park)
        XCTAssertFalse(machine.readRequested(), "held while a request is parked")
        XCTAssertFalse(machine.readRequested())
        _ = machine.responseHead(status: .ok, hasContentLength: true, isEventStream: false)
        guard case .awaitNext(let replay, let passHeldRead) = machine.responseEnded(closeRequested: false, streamingOnly: false)
        else { return XCTFail() }
        XCTAssertEqual(replay.count, 3)
        XCTAssertTrue(passHeldRead, "the held read goes on once nothing is parked")
        guard case .startExchange(let replayed) = machine.receive(replay[0]) else { return XCTFail() }
        XCTAssertEqual(replayed.uri, "/upload")
        XCTAssertEqual(machine.receive(replay[1]), .deliverBody(ByteBuffer(string: "abc")))
        XCTAssertEqual(machine.receive(replay[2]), .deliverEnd)
    }

    func testPausedBodyHoldsReadsUntilResumed() {
        var machine = Machine()
        _ = machine.receive(self.head(.POST, "/upload", headers: [("Transfer-Encoding", "chunked")]))
        machine.pauseBody()
        XCTAssertFalse(machine.readRequested())
        XCTAssertTrue(machine.resumeBody(), "a held read is passed on when the body resumes")
        XCTAssertFalse(machine.resumeBody(), "once")
        XCTAssertTrue(machine.readRequested())
    }

    func testFraming() {
        func framing(
            _ method: HTTPMethod = .GET,
            version: HTTPVersion = .http1_1,
            headers: [(String, String)] = [],
            status: HTTPResponseStatus = .ok,
            contentLength: Bool = false,
            eventStream: Bool = false
        ) -> (Machine.Framing, [String]) {
            var machine = Machine()
            _ = machine.receive(self.head(method, version: version, headers: headers))
            let (framing, added) = machine.responseHead(status: status, hasContentLength: contentLength, isEventStream: eventStream)!
            return (framing, added.map { "\($0.0): \($0.1)" })
        }
        XCTAssertEqual(framing(eventStream: true).0, Machine.Framing(chunked: true, isEventStream: true))
        XCTAssertEqual(framing(eventStream: true).1, ["Transfer-Encoding: chunked"])
        XCTAssertEqual(framing(version: .http1_0, eventStream: true).0, Machine.Framing(closeAfter: true, isEventStream: true))
        XCTAssertEqual(framing(version: .http1_0, eventStream: true).1, ["Connection: close"])
        XCTAssertEqual(framing(contentLength: true).0, Machine.Framing())
        XCTAssertEqual(framing().0, Machine.Framing(chunked: true), "no length: chunked")
        XCTAssertEqual(framing(.HEAD, contentLength: true).0, Machine.Framing(bodyless: true))
        XCTAssertEqual(framing(status: .noContent).0, Machine.Framing(bodyless: true))
        XCTAssertEqual(framing(status: .notModified).0, Machine.Framing(bodyless: true))
        XCTAssertEqual(framing(version: .http1_0).0, Machine.Framing(closeAfter: true), "HTTP/1.0 without length: until close")
        XCTAssertEqual(framing(headers: [("Connection", "close")], contentLength: true).0, Machine.Framing(closeAfter: true))
        var machine = Machine()
        _ = machine.receive(self.head())
        _ = machine.responseHead(status: .ok, hasContentLength: true, isEventStream: false)
        XCTAssertNil(machine.responseHead(status: .ok, hasContentLength: true, isEventStream: false), "one head per response")
    }

    func testAnswerBeforeTheBodyClosesUnlessNoBodyWasAnnounced() {
        var withBody = Machine()
        _ = withBody.receive(self.head(.POST, "/x", headers: [("Content-Length", "1000000")]))
        XCTAssertEqual(withBody.responseEnded(closeRequested: false, streamingOnly: false), .close)
        XCTAssertEqual(withBody.receive(.body(ByteBuffer(string: "x"))), .drop)

        var bodiless = Machine()
        _ = bodiless.receive(self.head(.GET, "/missing"))
        // A 404 sent at the head: only the request's end is outstanding; it is dropped.
        XCTAssertEqual(bodiless.responseEnded(closeRequested: false, streamingOnly: false), .awaitNext(replay: [], passHeldRead: false))
        XCTAssertEqual(bodiless.receive(.end(nil)), .drop)
        guard case .startExchange = bodiless.receive(self.head()) else { return XCTFail() }
    }

    func testEventStreamConnectionCarriesOnlyTheStream() {
        var machine = Machine()
        _ = machine.receive(self.head(.GET, "/events"))
        _ = machine.responseHead(status: .ok, hasContentLength: false, isEventStream: true)
        XCTAssertFalse(machine.carriesOnlyTheEventStream, "the request's end is not read yet")
        _ = machine.receive(.end(nil))
        XCTAssertTrue(machine.carriesOnlyTheEventStream)
        XCTAssertEqual(machine.responseEnded(closeRequested: false, streamingOnly: true), .close)
    }

    func testShutdownClosesIdleConnectionsAndBusyOnesAfterTheirResponse() {
        var idle = Machine()
        XCTAssertTrue(idle.shutdown())
        var busy = Machine()
        _ = busy.receive(self.head())
        _ = busy.receive(.end(nil))
        XCTAssertFalse(busy.shutdown())
        XCTAssertTrue(busy.closesAfterResponse)
        XCTAssertEqual(busy.responseHead(status: .ok, hasContentLength: true, isEventStream: false)?.addHeaders.map(\.0), ["Connection"])
        XCTAssertEqual(busy.responseEnded(closeRequested: false, streamingOnly: false), .close)
    }

    func testExpectContinueOnlyBeforeTheHeadAndTheBody() {
        var machine = Machine()
        _ = machine.receive(self.head(.POST, "/x", headers: [("Content-Length", "5"), ("Expect", "100-continue")]))
        XCTAssertTrue(machine.mayContinue)
        _ = machine.receive(.end(nil))
        XCTAssertFalse(machine.mayContinue)
        var old = Machine()
        _ = old.receive(self.head(.POST, "/x", version: .http1_0, headers: [("Content-Length", "5")]))
        XCTAssertFalse(old.mayContinue, "HTTP/1.0 has no 100")
    }
}
