import Foundation
import LifelineTestSupport
import XCTest

@testable import Server

/// The running gateway's accept queue holds a reconnect storm. (SwiftNIO's `withBoundSocket`
/// listens again with a backlog of 128: 10,000 clients coming back at once overflowed it, and each
/// client that met the full queue waited 1-3 s for a SYN-ACK retransmission.)
final class ListenBacklogTests: XCTestCase {
    func testTheGatewaysListenerHasTheLongestAcceptQueueTheKernelAllows() async throws {
        #if os(Linux)
        let ssPath = ["/usr/bin/ss", "/bin/ss"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let ssPath, let text = try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8),
            let cap = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw XCTSkip("needs ss (iproute2) and /proc/sys/net/core/somaxconn") }
        let harness = try await GatewayHarness.start(routes: [("/", "/")], origin: ScriptedOrigin.sseHandler(prelude: { _ in "" }))
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: ssPath)
        ss.arguments = ["-Hltn", "sport = :\(harness.port)"]
        let pipe = Pipe()
        ss.standardOutput = pipe
        try ss.run()
        ss.waitUntilExit()
        let line = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        XCTAssertEqual(fields.count >= 3 ? Int(fields[2]) : nil, min(Int(ListeningSocket.backlog), cap), "ss: \(line)")
        await harness.shutdown()
        #endif
    }
}
