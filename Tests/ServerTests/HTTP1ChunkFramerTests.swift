import NIOCore
import XCTest

@testable import Server

final class HTTP1ChunkFramerTests: XCTestCase {
    func testFramesAsOneChunk() {
        let framed = HTTP1ChunkFramer.frame(ByteBuffer(string: "id: 4\ndata: e4\n\n"), allocator: ByteBufferAllocator())
        XCTAssertEqual(String(buffer: framed), "10\r\nid: 4\ndata: e4\n\n\r\n")
    }

    func testEmptyBytesFrameToNothingRatherThanTheLastChunk() {
        XCTAssertEqual(HTTP1ChunkFramer.frame(ByteBuffer(), allocator: ByteBufferAllocator()).readableBytes, 0)
    }

    func testTheSameBatchIsFramedOnceForEverySubscriberOfTheLoop() {
        let framer = HTTP1ChunkFramer()
        let batch = ByteBuffer(string: "data: a\n\n")
        let first = framer.framed(batch)
        let again = framer.framed(batch)
        first.withUnsafeReadableBytes { a in
            again.withUnsafeReadableBytes { b in XCTAssertEqual(a.baseAddress, b.baseAddress, "one framed buffer, shared") }
        }
        // Equal bytes in other storage are another batch: framed anew (and still right).
        let other = ByteBuffer(string: "data: a\n\n")
        let framedOther = framer.framed(other)
        XCTAssertEqual(String(buffer: framedOther), "9\r\ndata: a\n\n\r\n")
        framedOther.withUnsafeReadableBytes { a in
            first.withUnsafeReadableBytes { b in XCTAssertNotEqual(a.baseAddress, b.baseAddress) }
        }
        // A slice of the same storage with other bounds is other bytes.
        let slice = batch.getSlice(at: batch.readerIndex, length: 4)!
        XCTAssertEqual(String(buffer: framer.framed(slice)), "4\r\ndata\r\n")
    }
}
