import NIOCore
import SSE
import XCTest

final class SSESerializerTests: XCTestCase {
    private func written(_ event: SSEEvent) -> String {
        var buffer = ByteBuffer()
        SSESerializer.write(event, into: &buffer)
        return String(buffer: buffer)
    }

    func testCanonicalForm() {
        XCTAssertEqual(self.written(SSEEvent(id: "1", type: "t", data: "a\nb")), "id: 1\nevent: t\ndata: a\ndata: b\n\n")
        XCTAssertEqual(self.written(SSEEvent(data: "x")), "data: x\n\n")
        XCTAssertEqual(self.written(SSEEvent(data: "")), "data:\n\n")
        XCTAssertEqual(self.written(SSEEvent(data: "a\n")), "data: a\ndata:\n\n")
        XCTAssertEqual(self.written(SSEEvent(data: " x")), "data:  x\n\n")
        XCTAssertEqual(self.written(SSEEvent(id: "")), "id:\n\n")
        XCTAssertEqual(self.written(SSEEvent(id: "7", lastEventID: "ignored")), "id: 7\n\n")
        XCTAssertEqual(self.written(SSEEvent(type: "", data: "x")), "event:\ndata: x\n\n")
    }

    func testEncodeMatchesWrite() {
        let event = SSEEvent(id: "9", type: "update", data: "{\"a\": 1}\n{\"b\": 2}", lastEventID: "9")
        let encoded = SSESerializer.encode(event, allocator: ByteBufferAllocator())
        XCTAssertEqual(String(buffer: encoded), self.written(event))
    }

    func testWriteAppends() {
        var buffer = ByteBuffer(string: "retry: 1\n\n")
        SSESerializer.write(SSEEvent(data: "x"), into: &buffer)
        XCTAssertEqual(String(buffer: buffer), "retry: 1\n\ndata: x\n\n")
    }

    func testRoundTrip() throws {
        let events = [
            SSEEvent(data: "hello"),
            SSEEvent(data: "a\nb\nc"),
            SSEEvent(data: ""),
            SSEEvent(data: "\n"),
            SSEEvent(data: "\n\n"),
            SSEEvent(data: "trailing\n"),
            SSEEvent(data: "  two leading spaces"),
            SSEEvent(data: " "),
            SSEEvent(data: "key: value"),
            SSEEvent(data: ":not a comment"),
            SSEEvent(data: "nul \0 inside"),
            SSEEvent(data: "\u{FEFF}not a BOM here"),
            SSEEvent(data: "h\u{00E9}llo \u{1F30D} \u{3053}\u{3093}\u{306B}\u{3061}\u{306F}"),
            SSEEvent(data: String(repeating: "0123456789abcdef\n", count: 6000)),
            SSEEvent(id: "", data: "reset", lastEventID: ""),
            SSEEvent(id: "", lastEventID: ""),
            SSEEvent(id: "42", lastEventID: "42"),
            SSEEvent(id: "43", type: "ping", lastEventID: "43"),
            SSEEvent(id: " spaced ", data: "x", lastEventID: " spaced "),
            SSEEvent(id: "\u{00FC}-1", type: "\u{00F1}", data: "\u{2026}", lastEventID: "\u{00FC}-1"),
            SSEEvent(type: "", data: "empty type"),
            SSEEvent(type: "with space", data: "x"),
            SSEEvent(data: "no id keeps the stream's last id", lastEventID: "previous"),
        ]
        for event in events {
            // A block without an id reports the id the parser already had.
            var parser = SSEParser(lastEventID: event.id == nil ? event.lastEventID : "stale")
            let buffer = SSESerializer.encode(event, allocator: ByteBufferAllocator())
            XCTAssertEqual(try parser.parse(buffer), [.event(event)], String(buffer: buffer))
        }
    }

    func testRoundTripOfAStreamWithCommentsAndRetry() throws {
        var buffer = ByteBuffer()
        SSESerializer.writeRetry(2500, into: &buffer)
        SSESerializer.writeComment("keepalive", into: &buffer)
        SSESerializer.write(SSEEvent(id: "1", data: "a", lastEventID: "1"), into: &buffer)
        SSESerializer.writeComment("", into: &buffer)
        SSESerializer.write(SSEEvent(type: "t", data: "b", lastEventID: "1"), into: &buffer)
        SSESerializer.writeRetry(0, into: &buffer)
        SSESerializer.writeRetry(Int.max, into: &buffer)
        XCTAssertEqual(
            String(buffer: buffer),
            "retry: 2500\n\n:keepalive\n\nid: 1\ndata: a\n\n:\n\nevent: t\ndata: b\n\nretry: 0\n\nretry: \(Int.max)\n\n"
        )
        let expected: [SSEParser.Output] = [
            .retry(2500), event("a", id: "1"), event("b", type: "t", lastEventID: "1"), .retry(0), .retry(Int.max),
        ]
        var parser = SSEParser()
        XCTAssertEqual(try parser.parse(buffer), expected)
        XCTAssertEqual(runParser([Array(buffer.readableBytesView)], cuts: everyByte).outputs, expected)
    }

    /// A comment between the lines of a block must not end it; one written by the serializer
    /// is a block of its own, so it can be sent between any two events.
    func testCommentDoesNotDisturbTheNextEvent() throws {
        var buffer = ByteBuffer()
        SSESerializer.writeComment("ping", into: &buffer)
        SSESerializer.write(SSEEvent(data: "x"), into: &buffer)
        var parser = SSEParser()
        XCTAssertEqual(try parser.parse(buffer), [event("x")])
    }

    /// The format cannot carry a CR in data; CR and CRLF become line breaks, as any parser reads them.
    func testCRInDataIsWrittenAsLineBreaks() throws {
        let encoded = SSESerializer.encode(SSEEvent(data: "a\rb\r\nc\r"), allocator: ByteBufferAllocator())
        XCTAssertEqual(String(buffer: encoded), "data: a\ndata: b\ndata: c\ndata:\n\n")
        var parser = SSEParser()
        XCTAssertEqual(try parser.parse(encoded), [event("a\nb\nc\n")])
    }
}
