import CNghttp2
import Foundation
import XCTest

@testable import HTTP2

/// nghttp2 allocates a 16 KiB output frame buffer per session, of which an event stream's small
/// frames write only the first page. The sessions' allocator (the shim's `cnghttp2_paged_mem`,
/// which `NGHTTP2SessionSetup` gives every session) puts such blocks on pages of their own, so
/// that only the written pages are resident; from the heap, a reused block is resident whole.
/// (Measured: an idle HTTP/2-over-TLS connection 45.5 → 35.7 KiB; docs/tls-and-http2.md.)
final class SessionMemoryTests: XCTestCase {
    func testABigBlockKeepsOnlyTheWrittenPageResident() throws {
        #if os(Linux)
        let mem = cnghttp2_paged_mem()!.pointee
        let size = 16394  // nghttp2's output buffer: NGHTTP2_FRAMEBUF_CHUNKLEN
        let block = try XCTUnwrap(mem.realloc(nil, size, nil))
        defer { mem.free(block, nil) }
        memset(block, 0x42, 100)  // a SETTINGS frame, a small DATA frame
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = UnsafeMutableRawPointer(bitPattern: Int(bitPattern: block) / page * page)!
        let length = (Int(bitPattern: block) + size - Int(bitPattern: start) + page - 1) / page * page
        var residency = [UInt8](repeating: 0, count: length / page)
        XCTAssertEqual(mincore(start, length, &residency), 0, "the block is a mapping of its own")
        XCTAssertEqual(residency.filter { $0 & 1 != 0 }.count, 1, "only the written page is resident: \(residency)")
        // A session made as the gateway makes them works with it.
        var userData = 0
        let session = try withUnsafeMutablePointer(to: &userData) { pointer in
            try NGHTTP2SessionSetup.makeSession(.server, userData: UnsafeMutableRawPointer(pointer),
                                                settings: [(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100)],
                                                connectionWindow: CNGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE) { callbacks, _ in
                nghttp2_session_callbacks_set_send_callback(callbacks) { _, _, length, _, _ in Int(length) }
            }
        }
        XCTAssertEqual(nghttp2_session_send(session), 0)
        nghttp2_session_del(session)
        #endif
    }

    func testThePagedAllocatorKeepsWhatItIsGivenAcrossReallocations() {
        let mem = cnghttp2_paged_mem()!.pointee
        // Across the mapped threshold both ways, and calloc's zeroes.
        var block = mem.realloc(nil, 100, nil)!
        memset(block, 0xAB, 100)
        block = mem.realloc(block, 40000, nil)!
        XCTAssertEqual(block.load(fromByteOffset: 99, as: UInt8.self), 0xAB)
        memset(block + 100, 0xCD, 39900)
        block = mem.realloc(block, 200, nil)!
        XCTAssertEqual(block.load(fromByteOffset: 0, as: UInt8.self), 0xAB)
        XCTAssertEqual(block.load(fromByteOffset: 199, as: UInt8.self), 0xCD)
        mem.free(block, nil)
        for size in [1, 4096, 16384, 100_000] {
            let zeroed = mem.calloc(size, 1, nil)!
            XCTAssertTrue(UnsafeRawBufferPointer(start: zeroed, count: size).allSatisfy { $0 == 0 }, "\(size)")
            mem.free(zeroed, nil)
        }
        XCTAssertNil(mem.calloc(Int.max, 2, nil), "an overflowing size is refused, not wrapped")
        mem.free(nil, nil)
    }
}
