import LifelineTestSupport
import NIOCore
import XCTest

final class LimitsTests: XCTestCase {
    /// A gateway with `clientBuffer`, a client that has stopped reading (`slow`, small socket
    /// buffer) and one that reads (`fast`), both on the origin's one stream.
    private func slowAndFastClients(clientBuffer: Int) async throws -> (GatewayHarness, SSETestClient, SSETestClient) {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.clientBuffer = clientBuffer
        })
        let (slow, fast) = try await harness.slowAndFastClients()
        return (harness, slow, fast)
    }

    /// Sends `batches` × 8 events of 16 KiB with ids 1, 2, …, each batch once the fast client has
    /// the one before (the origin paces itself by the fast client, which therefore never has more
    /// than 128 KiB outstanding). Returns how many were sent.
    private func broadcast(batches: Int, through harness: GatewayHarness, pacedBy fast: SSETestClient) async throws -> Int {
        let payload = String(repeating: "x", count: 16 << 10)
        var sent = 0
        for _ in 0..<batches {
            for _ in 0..<8 {
                sent += 1
                harness.origin.broadcast("id: \(sent)\ndata: \(payload)\n\n")
            }
            let target = sent
            try await fast.waitUntil(timeout: .seconds(10)) { $0.events.count == target }
        }
        XCTAssertEqual(fast.events.map(\.id), (1...sent).map { String($0) })
        XCTAssertFalse(fast.isClosed)
        return sent
    }

    func testSlowClientIsDisconnectedWithoutSlowingOthers() async throws {
        let (harness, slow, fast) = try await self.slowAndFastClients(clientBuffer: 256 << 10)
        // 16 MiB in all, far more than the kernel's socket buffers (a few MiB on loopback) and
        // --client-buffer can hold for the paused client.
        let sent = try await self.broadcast(batches: 128, through: harness, pacedBy: fast)
        slow.resumeReading()
        try await slow.waitForClose(timeout: .seconds(10))
        XCTAssertFalse(slow.endedCleanly, "a slow client's connection is closed, not ended")
        XCTAssertLessThan(slow.events.count, sent)
        let cut = await harness.gateway.metrics.snapshot().slowClientDisconnects
        XCTAssertEqual(cut, 1)
        await fast.close()
        await harness.shutdown()
    }

    func testBrieflySlowClientCatchesUpWithEverything() async throws {
        // Under --client-buffer, a client that stops reading for a while is not dropped: what the
        // kernel cannot take waits in its queue and goes out, in order, when it reads again.
        let (harness, slow, fast) = try await self.slowAndFastClients(clientBuffer: 16 << 20)
        // 4 MiB: more than the paused client's socket buffers, so that its connection becomes
        // unwritable and the rest waits in the gateway.
        let sent = try await self.broadcast(batches: 32, through: harness, pacedBy: fast)
        XCTAssertLessThan(slow.events.count, sent, "the paused client cannot have read everything yet")
        slow.resumeReading()
        try await slow.waitUntil(timeout: .seconds(20)) { $0.events.count == sent }
        XCTAssertEqual(slow.events.map(\.id), (1...sent).map { String($0) })
        XCTAssertFalse(slow.isClosed)
        let cut = await harness.gateway.metrics.snapshot().slowClientDisconnects
        XCTAssertEqual(cut, 0)
        await slow.close()
        await fast.close()
        await harness.shutdown()
    }

    func testOversizedRequestHeadGets431() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.maxRequestHeadSize = 4096
        })
        let response = try await RawHTTP.exchange(
            port: harness.port,
            send: "GET /events HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8000))\r\n\r\n",
            group: harness.group
        )
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 431 "), response)
        await harness.shutdown()
    }

    func testMalformedRequestGets400() async throws {
        let harness = try await GatewayHarness.start()
        let response = try await RawHTTP.exchange(port: harness.port, send: "NOT HTTP AT ALL\r\n\r\n", group: harness.group)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 400 "), response)
        // Authority-form (CONNECT) and asterisk-form are not for a gateway; absolute-form is
        // accepted (HardeningTests).
        let authority = try await RawHTTP.exchange(
            port: harness.port, send: "CONNECT elsewhere:443 HTTP/1.1\r\nHost: elsewhere:443\r\n\r\n", group: harness.group)
        XCTAssertTrue(authority.hasPrefix("HTTP/1.1 400 "), authority)
        let asterisk = try await RawHTTP.exchange(
            port: harness.port, send: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", group: harness.group)
        XCTAssertTrue(asterisk.hasPrefix("HTTP/1.1 400 "), asterisk)
        await harness.shutdown()
    }

    func testSlowRequestHeadGets408() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.requestHeadTimeout = .milliseconds(200)
        })
        let response = try await RawHTTP.exchange(port: harness.port, send: "GET /events HTTP/1.1\r\nHo", group: harness.group)
        XCTAssertTrue(response.hasPrefix("HTTP/1.1 408 "), response)
        await harness.shutdown()
    }

    func testMaxClientsGets503AndPerAddressGets429() async throws {
        let harness = try await GatewayHarness.start(configure: { configuration in
            configuration.maxClientsPerIP = 2
        })
        let a = try await harness.client()
        let b = try await harness.client()
        try await a.waitForHead(); try await b.waitForHead()
        let third = try await harness.client()
        let value1 = try await third.waitForHead()
        XCTAssertEqual(value1.status, .tooManyRequests)
        await a.close()
        try await harness.gateway.waitForConnectionCount(1)
        let again = try await harness.client()
        let value2 = try await again.waitForHead()
        XCTAssertEqual(value2.status, .ok)
        await b.close(); await again.close(); await third.close()
        await harness.shutdown()

        let limited = try await GatewayHarness.start(configure: { configuration in
            configuration.maxClients = 1
        })
        let only = try await limited.client()
        try await only.waitForHead()
        let refused = try await limited.client()
        let value3 = try await refused.waitForHead()
        XCTAssertEqual(value3.status, .serviceUnavailable)
        await only.close(); await refused.close()
        await limited.shutdown()
    }

    func testNoRouteGets404() async throws {
        let harness = try await GatewayHarness.start(routes: [("/events", "/")])
        let client = try await harness.client("/elsewhere")
        let value4 = try await client.waitForHead()
        XCTAssertEqual(value4.status, .notFound)
        XCTAssertEqual(harness.origin.requests.count, 0)
        await client.close()
        await harness.shutdown()
    }
}
