import CNghttp2
import Foundation
import HTTP2TestSupport
import NIOCore
import XCTest

@testable import HTTP2

/// nghttp2 allocates a 16 KiB output frame buffer per session, of which an event stream's small
/// frames write only the first page. Each session's allocator (an arena: `cnghttp2_arena` in the
/// shim, which `NGHTTP2SessionSetup` gives every session) puts such blocks on pages of their own,
/// so that only the written pages are resident (from the heap, a reused block is resident whole),
/// and after a heartbeat the handler gives the output buffer's pages back. (Measured: an idle
/// HTTP/2-over-TLS connection 45.5 → 35.7 KiB, then ~4 KiB less; docs/tls-and-http2.md.)
final class SessionMemoryTests: XCTestCase {
    private static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Resident pages of `length` bytes at `pointer` (page-aligned).
    private func residentPages(_ pointer: UnsafeMutableRawPointer, _ length: Int) -> Int {
        var residency = [UInt8](repeating: 0, count: (length + Self.page - 1) / Self.page)
        XCTAssertEqual(mincore(pointer, length, &residency), 0, "a mapping of its own")
        return residency.filter { $0 & 1 != 0 }.count
    }

    private func outputResidentPages(_ arena: UnsafeMutablePointer<cnghttp2_arena>) throws -> Int {
        var length = 0
        let output = try XCTUnwrap(cnghttp2_arena_output(arena, &length), "the session's output buffer is mapped")
        return self.residentPages(output, length)
    }

    func testABigBlockKeepsOnlyTheWrittenPageResident() throws {
        #if os(Linux)
        let arena = try XCTUnwrap(cnghttp2_arena_new())
        defer { cnghttp2_arena_del(arena) }
        let mem = cnghttp2_arena_mem(arena)
        let size = 16394  // nghttp2's output buffer: NGHTTP2_FRAMEBUF_CHUNKLEN
        let block = try XCTUnwrap(mem.malloc(size, mem.mem_user_data))
        XCTAssertEqual(Int(bitPattern: block) % Self.page, 0, "no header before a mapped block")
        memset(block, 0x42, 100)  // a SETTINGS frame, a small DATA frame
        XCTAssertEqual(self.residentPages(block, size), 1, "only the written page is resident")
        mem.free(block, mem.mem_user_data)
        XCTAssertEqual(cnghttp2_arena_mapped_count(arena), 0)

        // A session made as the gateway makes them has its output buffer there, and works.
        var userData = 0
        let made = try withUnsafeMutablePointer(to: &userData) { pointer in
            try NGHTTP2SessionSetup.makeSession(.server, userData: UnsafeMutableRawPointer(pointer),
                                                settings: [(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100)],
                                                connectionWindow: CNGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) { callbacks, _ in
                nghttp2_session_callbacks_set_send_callback(callbacks) { _, _, length, _, _ in Int(length) }
            }
        }
        XCTAssertEqual(cnghttp2_arena_mapped_count(made.arena), 1)
        XCTAssertEqual(nghttp2_session_send(made.session), 0)
        XCTAssertEqual(try self.outputResidentPages(made.arena), 1)
        made.delete()
        #endif
    }

    func testTheArenaKeepsWhatItIsGivenAcrossReallocations() throws {
        let arena = try XCTUnwrap(cnghttp2_arena_new())
        defer { cnghttp2_arena_del(arena) }
        let mem = cnghttp2_arena_mem(arena)
        let user = mem.mem_user_data
        // Across the mapped threshold both ways, and calloc's zeroes.
        var block = mem.realloc(nil, 100, user)!
        memset(block, 0xAB, 100)
        block = mem.realloc(block, 40000, user)!
        XCTAssertEqual(block.load(fromByteOffset: 99, as: UInt8.self), 0xAB)
        memset(block + 100, 0xCD, 39900)
        block = mem.realloc(block, 50000, user)!
        XCTAssertEqual(block.load(fromByteOffset: 39999, as: UInt8.self), 0xCD)
        block = mem.realloc(block, 200, user)!
        XCTAssertEqual(block.load(fromByteOffset: 0, as: UInt8.self), 0xAB)
        XCTAssertEqual(block.load(fromByteOffset: 199, as: UInt8.self), 0xCD)
        mem.free(block, user)
        for size in [1, 4096, 16384, 100_000] {
            let zeroed = mem.calloc(size, 1, user)!
            XCTAssertTrue(UnsafeRawBufferPointer(start: zeroed, count: size).allSatisfy { $0 == 0 }, "\(size)")
            mem.free(zeroed, user)
        }
        XCTAssertNil(mem.calloc(Int.max, 4, user), "a count times size past size_t is refused, not wrapped")
        mem.free(nil, user)
        XCTAssertEqual(cnghttp2_arena_mapped_count(arena), 0)
    }

    /// More big blocks than the arena lists (or mmap refusing, e.g. at vm.max_map_count) come
    /// from malloc: memory, not a failed allocation.
    func testBigBlocksBeyondTheArenasSlotsComeFromMalloc() throws {
        let arena = try XCTUnwrap(cnghttp2_arena_new())
        defer { cnghttp2_arena_del(arena) }
        let mem = cnghttp2_arena_mem(arena)
        var blocks: [UnsafeMutableRawPointer] = []
        for i in 0..<12 {
            let block = try XCTUnwrap(mem.malloc(20000, mem.mem_user_data))
            memset(block, Int32(i), 20000)
            blocks.append(block)
        }
        #if os(Linux)
        XCTAssertEqual(cnghttp2_arena_mapped_count(arena), 8)
        #endif
        for (i, block) in blocks.enumerated() {
            XCTAssertEqual(block.load(fromByteOffset: 19999, as: UInt8.self), UInt8(i))
        }
        // A malloc'd big block grows into a mapping once a slot is free, keeping its bytes.
        mem.free(blocks[0], mem.mem_user_data)
        let grown = try XCTUnwrap(mem.realloc(blocks[11], 30000, mem.mem_user_data))
        XCTAssertEqual(grown.load(fromByteOffset: 19999, as: UInt8.self), 11)
        blocks[11] = grown
        for block in blocks.dropFirst() {
            mem.free(block, mem.mem_user_data)
        }
        XCTAssertEqual(cnghttp2_arena_mapped_count(arena), 0)
    }

    /// After a heartbeat (`flushIdle`) the session's output buffer holds no resident page; the
    /// next frames are written and read whole. An ordinary flush (an event) releases nothing.
    func testAnIdleFlushGivesTheOutputPagesBack() throws {
        #if os(Linux)
        let h2 = try EmbeddedH2()
        defer { _ = try? h2.channel.finish(acceptAlreadyClosed: true) }
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream")])
            stream.write(ByteBuffer(string: ": ok\n\n"))
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/events"))
        try h2.read()
        let arena = try XCTUnwrap(h2.handler.arena)
        let stream = try XCTUnwrap(h2.streams.first)
        XCTAssertEqual(try self.outputResidentPages(arena), 1)

        for i in 0..<3 {
            stream.write(ByteBuffer(string: "data: \(i)\n\n"))
            stream.flush()
            XCTAssertEqual(try h2.read().map { String(decoding: $0.data, as: UTF8.self) }, ["data: \(i)\n\n"])
        }
        XCTAssertEqual(h2.handler.outputReleases, 0, "events do not release (no page fault per event)")
        XCTAssertEqual(try self.outputResidentPages(arena), 1)

        stream.write(ByteBuffer(string: ":\n"))
        stream.flushIdle()
        XCTAssertEqual(try h2.read().map { String(decoding: $0.data, as: UTF8.self) }, [":\n"])
        XCTAssertEqual(h2.handler.outputReleases, 1)
        XCTAssertEqual(try self.outputResidentPages(arena), 0, "an idle session holds no output page")

        // The next frames are whole; the buffer is resident again once written.
        stream.write(ByteBuffer(string: "data: after\n\n"))
        stream.flush()
        XCTAssertEqual(try h2.read().map { String(decoding: $0.data, as: UTF8.self) }, ["data: after\n\n"])
        try h2.send(H2.ping(7))
        XCTAssertEqual(try h2.read().filter { $0.kind == .ping }.count, 1)
        XCTAssertEqual(try self.outputResidentPages(arena), 1)
        #endif
    }

    /// While nghttp2 still has frames to send (the channel is not writable), nothing is released;
    /// they go out intact once it is writable.
    func testNothingIsReleasedWhileOutputWaits() throws {
        #if os(Linux)
        let h2 = try EmbeddedH2()
        defer { _ = try? h2.channel.finish(acceptAlreadyClosed: true) }
        h2.onRequest = { stream in
            stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream")])
            stream.flush()
        }
        try h2.send(H2.request(1, path: "/events"))
        try h2.read()
        let stream = try XCTUnwrap(h2.streams.first)
        h2.channel.isWritable = false
        stream.write(ByteBuffer(string: ":\n"))
        stream.flushIdle()
        try h2.send(H2.ping(9))  // a PING ACK waits in nghttp2 too
        XCTAssertEqual(try h2.read().count, 0)
        XCTAssertEqual(h2.handler.outputReleases, 0)
        h2.channel.isWritable = true
        h2.channel.pipeline.fireChannelWritabilityChanged()
        let frames = try h2.read()
        XCTAssertEqual(frames.filter { $0.kind == .data }.map { String(decoding: $0.data, as: UTF8.self) }, [":\n"])
        XCTAssertEqual(frames.filter { $0.kind == .ping }.count, 1)
        #endif
    }
}
