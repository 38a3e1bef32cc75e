import Foundation
import LifelineTestSupport
import NIOCore
import XCTest

@testable import Server

/// The browser client served by the gateway (`--client-script-path`).
final class ClientScriptTests: XCTestCase {
    func testEmbeddedScriptIsTheRepositorysFile() throws {
        let file = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/Server/ClientScript/lifeline-client.js")
        let text = try String(contentsOf: file, encoding: .utf8)
        XCTAssertEqual(clientScriptSource, text, "stale: run scripts/embed-client-script")
    }

    func testServedOnEveryListenerBeforeAnyRouteWithValidators() async throws {
        // A route for / would otherwise send the path to the origin.
        let harness = try await GatewayHarness.start()
        let script = ClientScript.embedded
        let answer = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /_lifeline/client.js?v=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), answer)
        XCTAssertTrue(answer.contains("Content-Type: text/javascript; charset=utf-8\r\n"), answer)
        XCTAssertTrue(answer.contains("ETag: \(script.etag)\r\n"), answer)
        XCTAssertTrue(answer.contains("Cache-Control: public, max-age=300, must-revalidate\r\n"), answer)
        XCTAssertTrue(answer.hasSuffix("\r\n\r\n" + clientScriptSource), "the body is the script")
        XCTAssertTrue(harness.origin.requests.isEmpty, "never proxied")

        let revalidated = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /_lifeline/client.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\(script.etag)\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(revalidated.hasPrefix("HTTP/1.1 304 "), revalidated)
        XCTAssertTrue(revalidated.hasSuffix("\r\n\r\n"), "no body")

        let head = try await RawHTTP.exchange(
            port: harness.port,
            send: "HEAD /_lifeline/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(head.contains("Content-Length: \(clientScriptSource.utf8.count)\r\n"), head)
        XCTAssertTrue(head.hasSuffix("\r\n\r\n"), head)
        let post = try await RawHTTP.exchange(
            port: harness.port,
            send: "POST /_lifeline/client.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(post.hasPrefix("HTTP/1.1 405 "), post)
        await harness.shutdown()
    }

    func testModuleFormIsServedNextToTheClassicScript() async throws {
        XCTAssertEqual(ClientScript.modulePath(forScriptPath: "/_lifeline/client.js"), "/_lifeline/client.mjs")
        XCTAssertEqual(ClientScript.modulePath(forScriptPath: "/sse-helper"), "/sse-helper.mjs")
        let harness = try await GatewayHarness.start()
        let answer = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /_lifeline/client.mjs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), answer)
        XCTAssertTrue(answer.contains("Content-Type: text/javascript; charset=utf-8\r\n"), answer)
        XCTAssertTrue(answer.contains("ETag: \(ClientScript.embeddedModule.etag)\r\n"), answer)
        XCTAssertNotEqual(ClientScript.embeddedModule.etag, ClientScript.embedded.etag)
        XCTAssertTrue(answer.hasSuffix("\r\n\r\n" + clientScriptSource + ClientScript.moduleExports), "the script, then its exports")
        XCTAssertTrue(answer.contains("export default LifelineEventSource;"), answer)
        XCTAssertTrue(harness.origin.requests.isEmpty, "never proxied")
        await harness.shutdown()

        // With another script path, the module follows it and the default path is the origin's.
        let moved = try await GatewayHarness.start(origin: { _, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "6")])
            responder.send("origin")
            responder.end()
        }, configure: { $0.clientScriptPath = "/assets/sse.js" })
        let module = try await RawHTTP.exchange(
            port: moved.port,
            send: "GET /assets/sse.mjs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: moved.group
        )
        XCTAssertTrue(module.contains("export default LifelineEventSource;"), module)
        let old = try await RawHTTP.exchange(
            port: moved.port,
            send: "GET /_lifeline/client.mjs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: moved.group
        )
        XCTAssertTrue(old.hasSuffix("origin"), old)
        await moved.shutdown()
    }

    func testEmptyPathTurnsItOffAndTheRouteGetsThePath() async throws {
        let harness = try await GatewayHarness.start(origin: { _, responder in
            responder.sendHead(status: 200, headers: [("Content-Type", "text/plain"), ("Content-Length", "6")])
            responder.send("origin")
            responder.end()
        }, configure: { $0.clientScriptPath = nil })
        let answer = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /_lifeline/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(answer.hasSuffix("origin"), answer)
        await harness.shutdown()
    }

    func testEventStreamAnnouncesTheHeartbeatAndExposesTheGatewayHeaders() async throws {
        let harness = try await GatewayHarness.start(configure: { $0.heartbeat = .seconds(15) })
        let client = try await harness.client("/events")
        let head = try await client.waitForHead()
        XCTAssertEqual(head.headers.first(name: "lifeline-heartbeat"), "15000")
        XCTAssertEqual(head.headers.first(name: "access-control-expose-headers"), "Lifeline-Replay, Lifeline-Heartbeat")
        await client.close()
        await harness.shutdown()
    }
}
