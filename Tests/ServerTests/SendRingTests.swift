import SendRing
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The io_uring wrapper behind `--io-uring`, on socket pairs: sends complete within
/// `submitAndWait`, a full socket reports `EAGAIN` (or a partial count) instead of blocking, and a
/// closed peer is an error, not a SIGPIPE.
final class SendRingTests: XCTestCase {
    private func socketPair() throws -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
            throw XCTSkip("socketpair: \(errno)")
        }
        return (fds[0], fds[1])
    }

    private func ring(capacity: Int = 64) throws -> SendRing {
        guard let ring = SendRing(capacity: capacity) else { throw XCTSkip("no io_uring here (errno \(errno))") }
        return ring
    }

    private func readAll(_ fd: CInt, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return Array(bytes[0..<got])
    }

    func testOneSubmissionSendsToEverySocket() throws {
        let ring = try self.ring()
        let pairs = try (0..<10).map { _ in try self.socketPair() }
        defer { for (a, b) in pairs { close(a); close(b) } }
        let payloads = (0..<10).map { Array("event \($0)\n".utf8) }
        for (index, (writer, _)) in pairs.enumerated() {
            let queued = payloads[index].withUnsafeBytes { ring.queueSend(descriptor: writer, bytes: $0, tag: UInt64(index)) }
            XCTAssertTrue(queued)
        }
        XCTAssertEqual(ring.pending, 10)
        var results: [UInt64: Int32] = [:]
        XCTAssertTrue(ring.submitAndWait { results[$0.tag] = $0.result })
        XCTAssertEqual(ring.pending, 0)
        for (index, (_, reader)) in pairs.enumerated() {
            XCTAssertEqual(results[UInt64(index)], Int32(payloads[index].count))
            XCTAssertEqual(self.readAll(reader, count: payloads[index].count), payloads[index])
        }
    }

    func testAFullSocketCompletesWithEAGAINInsteadOfWaiting() throws {
        let ring = try self.ring()
        let (writer, reader) = try self.socketPair()
        defer { close(writer); close(reader) }
        var small: CInt = 4096
        setsockopt(writer, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<CInt>.size))
        _ = fcntl(writer, F_SETFL, fcntl(writer, F_GETFL) | O_NONBLOCK)
        let chunk = [UInt8](repeating: 0x41, count: 4096)
        while (chunk.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }) > 0 {}
        let big = [UInt8](repeating: 0x42, count: 64 << 10)
        var result: Int32?
        big.withUnsafeBytes { bytes in
            XCTAssertTrue(ring.queueSend(descriptor: writer, bytes: bytes, tag: 7))
            XCTAssertTrue(ring.submitAndWait { result = $0.result })
        }
        let sent = try XCTUnwrap(result)
        XCTAssertTrue(sent == -EAGAIN || (sent >= 0 && sent < Int32(big.count)), "\(sent)")
        XCTAssertTrue(ring.isUsable)
    }

    func testAClosedPeerIsAnErrorNotASignal() throws {
        let ring = try self.ring()
        let (writer, reader) = try self.socketPair()
        defer { close(writer) }
        close(reader)
        let bytes = Array("data: x\n\n".utf8)
        var result: Int32?
        bytes.withUnsafeBytes { buffer in
            XCTAssertTrue(ring.queueSend(descriptor: writer, bytes: buffer, tag: 1))
            XCTAssertTrue(ring.submitAndWait { result = $0.result })
        }
        XCTAssertEqual(result, -EPIPE)  // and the process is still here: MSG_NOSIGNAL
    }

    func testNoMoreThanItsCapacityIsQueued() throws {
        let ring = try self.ring(capacity: 4)
        let (writer, reader) = try self.socketPair()
        defer { close(writer); close(reader) }
        let byte: [UInt8] = [0x43]
        let queued = (0..<6).map { index in
            byte.withUnsafeBytes { ring.queueSend(descriptor: writer, bytes: $0, tag: UInt64(index)) }
        }
        XCTAssertEqual(queued, [true, true, true, true, false, false])
        var completions = 0
        XCTAssertTrue(ring.submitAndWait { _ in completions += 1 })
        XCTAssertEqual(completions, 4)
        XCTAssertEqual(self.readAll(reader, count: 4), [0x43, 0x43, 0x43, 0x43])
    }

    func testABadDescriptorIsReportedForItsSendAlone() throws {
        let ring = try self.ring()
        let (writer, reader) = try self.socketPair()
        defer { close(writer); close(reader) }
        let bytes: [UInt8] = Array("ok".utf8)
        var results: [UInt64: Int32] = [:]
        bytes.withUnsafeBytes { buffer in
            XCTAssertTrue(ring.queueSend(descriptor: 1_000_000, bytes: buffer, tag: 1))
            XCTAssertTrue(ring.queueSend(descriptor: writer, bytes: buffer, tag: 2))
            XCTAssertTrue(ring.submitAndWait { results[$0.tag] = $0.result })
        }
        XCTAssertEqual(results[1], -EBADF)
        XCTAssertEqual(results[2], 2)
        XCTAssertEqual(self.readAll(reader, count: 2), Array("ok".utf8))
    }
}
