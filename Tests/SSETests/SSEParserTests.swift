import NIOCore
import SSE
import XCTest

final class SSEParserTests: XCTestCase {
    private func parse(_ parser: inout SSEParser, _ text: String) throws -> [SSEParser.Output] {
        try parser.parse(ByteBuffer(string: text))
    }

    func testConvenienceParseReturnsOutputsInOrder() throws {
        var parser = SSEParser()
        XCTAssertEqual(
            try self.parse(&parser, "retry: 5\nid: 1\ndata: a\n\ndata: b\n\n"),
            [.retry(5), event("a", id: "1"), event("b", lastEventID: "1")]
        )
    }

    func testParseRawBytes() throws {
        var parser = SSEParser()
        var outputs: [SSEParser.Output] = []
        try utf8("data: a\n\n").withUnsafeBytes { bytes in
            try parser.parse(bytes) { outputs.append($0) }
        }
        XCTAssertEqual(outputs, [event("a")])
    }

    /// The spec sets the last event ID buffer when an `id` line is parsed, but the EventSource's
    /// last event ID (the one a reconnection sends) only when the block is dispatched.
    func testLastEventIDChangesOnlyAtDispatch() throws {
        var parser = SSEParser(lastEventID: "0")
        XCTAssertEqual(try self.parse(&parser, "id: 5\ndata: x\n"), [])
        XCTAssertEqual(parser.lastEventID, "0")
        XCTAssertEqual(try self.parse(&parser, "\n"), [event("x", id: "5")])
        XCTAssertEqual(parser.lastEventID, "5")
    }

    /// Decision: an `id` in a block that a connection's end cut off is forgotten, so the
    /// reconnection resumes from the last delivered event and the cut-off one is sent again.
    /// (format-data-before-final-empty-line, then a reconnection.)
    func testIDOfAnUndispatchedBlockIsForgottenByANewStream() throws {
        var parser = SSEParser()
        XCTAssertEqual(
            try self.parse(&parser, "retry:1000\ndata:test1\n\nid:test\ndata:test2\n"),
            [.retry(1000), event("test1")]
        )
        XCTAssertEqual(parser.lastEventID, "")
        parser.startNewStream()
        XCTAssertEqual(parser.lastEventID, "")
        XCTAssertEqual(try self.parse(&parser, "data:test2\n\n"), [event("test2")])
    }

    func testSkippingAnOversizedEventResumesAfterItsID() throws {
        var parser = SSEParser(maxEventSize: 32)
        _ = try parser.parse(ByteBuffer(string: "id: 1\ndata: ok\n\n"))
        XCTAssertThrowsError(try parser.parse(ByteBuffer(string: "id: 2\ndata: " + String(repeating: "x", count: 64))))
        parser.startNewStreamSkippingCurrentEvent()
        XCTAssertEqual(parser.lastEventID, "2", "a reconnect asks for what follows the oversized event")
        XCTAssertEqual(try parser.parse(ByteBuffer(string: "data: next\n\n")), [.event(SSEEvent(data: "next", lastEventID: "2"))])
        // Without an id in the oversized block, the position stays where it was.
        XCTAssertThrowsError(try parser.parse(ByteBuffer(string: "data: " + String(repeating: "y", count: 64))))
        parser.startNewStreamSkippingCurrentEvent()
        XCTAssertEqual(parser.lastEventID, "2")
    }

    func testNewStreamKeepsTheDispatchedLastEventID() throws {
        var parser = SSEParser()
        _ = try self.parse(&parser, "id: 3\ndata: a\n\nid: 4\ndata: b")
        parser.startNewStream()
        XCTAssertEqual(parser.lastEventID, "3")
        XCTAssertEqual(try self.parse(&parser, "data: c\n\n"), [event("c", lastEventID: "3")])
    }

    func testInitialLastEventID() throws {
        var parser = SSEParser(lastEventID: "abc")
        XCTAssertEqual(parser.lastEventID, "abc")
        XCTAssertEqual(try self.parse(&parser, "data: x\n\n"), [event("x", lastEventID: "abc")])
    }

    func testParserStaysFailedUntilNewStream() throws {
        var parser = SSEParser(maxEventSize: 8)
        XCTAssertThrowsError(try self.parse(&parser, "data: 0123456789\n\n")) { error in
            XCTAssertEqual(error as? SSEParser.Error, .eventTooLarge(limit: 8))
        }
        XCTAssertThrowsError(try self.parse(&parser, "data: a\n\n")) { error in
            XCTAssertEqual(error as? SSEParser.Error, .eventTooLarge(limit: 8))
        }
        parser.startNewStream()
        XCTAssertEqual(try self.parse(&parser, "data: a\n\n"), [event("a")])
    }

    /// A line that never ends must not grow memory past the limit: the parser gives up as soon as
    /// the pending line exceeds it, however the bytes arrive.
    func testEndlessLineThrowsOnceItExceedsTheLimit() {
        let limit = 1 << 20
        var parser = SSEParser(maxEventSize: limit)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 4096)
        var fed = 0
        XCTAssertThrowsError(
            try {
                _ = try parser.parse(ByteBuffer(string: "data: "))
                while fed <= 2 * limit {
                    try parser.parse(chunk) { _ in XCTFail("no output expected") }
                    fed += chunk.readableBytes
                }
            }()
        ) { error in
            XCTAssertEqual(error as? SSEParser.Error, .eventTooLarge(limit: limit))
        }
        XCTAssertLessThanOrEqual(fed, limit)
    }

    func testOneHugeBufferWithoutTerminatorThrows() {
        var parser = SSEParser(maxEventSize: 1024)
        XCTAssertThrowsError(try parser.parse(ByteBuffer(repeating: UInt8(ascii: "x"), count: 1 << 20)))
    }

    func testBlockJustUnderAndOverTheDefaultLimit() throws {
        let limit = 1 << 20
        // "data: " + payload + LF, plus the blank line (not counted).
        let fits = "data: " + String(repeating: "x", count: limit - 7) + "\n\n"
        let tooBig = "data: " + String(repeating: "x", count: limit - 6) + "\n\n"

        var parser = SSEParser()
        let outputs = try self.parse(&parser, fits)
        XCTAssertEqual(outputs.count, 1)
        guard case .event(let event)? = outputs.first else { return XCTFail("expected an event") }
        XCTAssertEqual(event.data?.utf8.count, limit - 7)

        parser = SSEParser()
        XCTAssertThrowsError(try self.parse(&parser, tooBig)) { error in
            XCTAssertEqual(error as? SSEParser.Error, .eventTooLarge(limit: limit))
        }
    }

    func testManyDataLinesAddUpToTheLimit() throws {
        var parser = SSEParser(maxEventSize: 1000)
        // Each "data: 123456789" line counts 16 bytes: 62 lines are 992, 63 are 1008.
        let line = "data: 123456789\n"
        XCTAssertEqual(try self.parse(&parser, String(repeating: line, count: 62) + "\n").count, 1)
        XCTAssertThrowsError(try self.parse(&parser, String(repeating: line, count: 63) + "\n"))
    }

    /// Splits in the middle of a large stream, in chunks the size a socket would deliver.
    func testLargeStreamInSocketSizedChunks() throws {
        var stream = ByteBuffer()
        var expected: [SSEParser.Output] = []
        for index in 0..<2000 {
            let event = SSEEvent(id: "\(index)", type: index.isMultiple(of: 3) ? "tick" : nil,
                                 data: "line one \(index)\nline two \u{00E9}\u{1F30D}", lastEventID: "\(index)")
            SSESerializer.write(event, into: &stream)
            SSESerializer.writeComment("keepalive", into: &stream)
            expected.append(.event(event))
        }
        for chunkSize in [1000, 4096, 65536] {
            var parser = SSEParser()
            var outputs: [SSEParser.Output] = []
            var remaining = stream
            while let chunk = remaining.readSlice(length: min(chunkSize, remaining.readableBytes)), chunk.readableBytes > 0 {
                try parser.parse(chunk) { outputs.append($0) }
            }
            XCTAssertEqual(outputs, expected, "chunk size \(chunkSize)")
        }
    }
}
