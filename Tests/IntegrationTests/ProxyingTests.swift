import LifelineTestSupport
import NIOCore
import NIOHTTP1
import Foundation
import XCTest

final class ProxyingTests: XCTestCase {
    func testRouteAppendsSuffixAndQueryAndLongestPrefixWins() async throws {
        let harness = try await GatewayHarness.start(routes: [("/", "/root"), ("/events", "/stream"), ("/events/v2", "/two/")])
        do {
            let a = try await harness.client("/events/abc?x=1&y=2")
            try await a.waitForHead()
            let b = try await harness.client("/other/path")
            try await b.waitForHead()
            let c = try await harness.client("/events/v2/deep?q")
            try await c.waitForHead()
            try await harness.origin.waitForRequests(count: 3)
            let uris = Set(harness.origin.requests.map(\.uri))
            XCTAssertEqual(uris, ["/stream/abc?x=1&y=2", "/root/other/path", "/two/deep?q"])
            for request in harness.origin.requests {
                XCTAssertEqual(request.header("x-forwarded-for"), "127.0.0.1")
                XCTAssertEqual(request.header("x-forwarded-proto"), "http")
                XCTAssertEqual(request.header("accept-encoding"), "identity")
                XCTAssertEqual(request.header("host"), "127.0.0.1:\(harness.origin.port)")
            }
            await a.close(); await b.close(); await c.close()
        }
        await harness.shutdown()
    }

    func testPlainResponseIsStreamedThroughNotBuffered() async throws {
        let harness = try await GatewayHarness.start { request, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("X-Custom", "kept")])
            responder.send("first part;")
        }
        do {
            let client = try await harness.client("/file", headers: [("Accept", "*/*")])
            let head = try await client.waitForHead()
            XCTAssertEqual(head.status, .ok)
            XCTAssertEqual(head.headers.first(name: "x-custom"), "kept")
            // The first part arrives while the origin's response is still open: streamed.
            try await client.waitUntil { $0.body == "first part;" }
            harness.origin.responders.first?.send("second part")
            harness.origin.responders.first?.end()
            try await client.waitForClose()
            XCTAssertTrue(client.endedCleanly)
            XCTAssertEqual(client.body, "first part;second part")
        }
        await harness.shutdown()
    }

    func testFirstClientGetsNonStreamAnswersAsTheyAre() async throws {
        let statuses = [401, 404, 500, 204]
        for status in statuses {
            let harness = try await GatewayHarness.start { _, responder in
                if status == 204 {
                    responder.sendHead(status: 204, headers: [])
                    responder.end()
                } else {
                    responder.sendHead(status: status, headers: [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
                    responder.send("origin says \(status)")
                    responder.end()
                }
            }
            let client = try await harness.client("/events")
            let head = try await client.waitForHead()
            XCTAssertEqual(Int(head.status.code), status)
            try await client.waitForClose()
            if status != 204 {
                XCTAssertEqual(client.body, "origin says \(status)")
                XCTAssertEqual(head.headers.first(name: "www-authenticate"), "Bearer")
            }
            XCTAssertTrue(client.endedCleanly, "status \(status): \(client.report())")
            // No stream was made: the next client's request goes to the origin again.
            let again = try await harness.client("/events")
            try await again.waitForHead()
            XCTAssertEqual(harness.origin.requests.count, 2, "status \(status)")
            await again.close()
            await harness.shutdown()
        }
    }

    func testUnreachableOriginForPlainRequestIs502() async throws {
        let harness = try await GatewayHarness.start()
        try await harness.origin.stop()
        let client = try await harness.client("/page", headers: [("Accept", "text/html")])
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .badGateway)
        await client.close()
        await harness.shutdown()
    }

    func testSilentOriginForPlainRequestIs504() async throws {
        let harness = try await GatewayHarness.start(origin: { _, _ in }, configure: { configuration in
            configuration.upstream.headTimeout = .milliseconds(200)
        })
        let client = try await harness.client("/page", headers: [("Accept", "text/html")])
        let head = try await client.waitForHead()
        XCTAssertEqual(head.status, .gatewayTimeout)
        await client.close()
        await harness.shutdown()
    }

    func testKeepAliveConnectionServesSeveralRequests() async throws {
        let harness = try await GatewayHarness.start(routes: [("/api", "/")], origin: { _, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "2")])
            responder.send("hi")
        })
        let response = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /api/a HTTP/1.1\r\nHost: x\r\n\r\nGET /api/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        let statusLines = response.components(separatedBy: "HTTP/1.1 ").dropFirst().map {
            "HTTP/1.1 " + ($0.components(separatedBy: "\r\n").first ?? "")
        }
        XCTAssertEqual(statusLines, ["HTTP/1.1 404 Not Found", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"], response)
        XCTAssertEqual(harness.origin.requests.map(\.uri), ["/a", "/b"])
        await harness.shutdown()
    }
}
