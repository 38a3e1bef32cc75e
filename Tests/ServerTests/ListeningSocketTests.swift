import Foundation
import XCTest

@testable import Server

/// The gateway's listening sockets are bound by `ListeningSocket` (so that an upgrade can hand
/// them over); their accept queue must hold a reconnect storm.
final class ListeningSocketTests: XCTestCase {
    func testTheAcceptQueueIsAsLongAsTheKernelAllows() throws {
        #if os(Linux)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ss") || FileManager.default.isExecutableFile(atPath: "/bin/ss"),
            let text = try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8),
            let cap = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw XCTSkip("needs ss (iproute2) and /proc/sys/net/core/somaxconn") }
        let fd = try ListeningSocket.bind(host: "127.0.0.1", port: 0)
        defer { close(fd) }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        XCTAssertEqual(named, 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        // For a listening socket, ss's Send-Q is the backlog it was given (capped by the kernel).
        let ss = Process()
        ss.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/bin/ss") ? "/usr/bin/ss" : "/bin/ss")
        ss.arguments = ["-Hltn", "sport = :\(port)"]
        let pipe = Pipe()
        ss.standardOutput = pipe
        try ss.run()
        ss.waitUntilExit()
        let line = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        XCTAssertGreaterThanOrEqual(fields.count, 3, line)
        XCTAssertEqual(fields.count >= 3 ? Int(fields[2]) : nil, min(65535, cap), "the backlog: \(line)")
        #endif
    }
}
