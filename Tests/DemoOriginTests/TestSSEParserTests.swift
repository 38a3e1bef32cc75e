import LifelineTestSupport
import XCTest

final class TestSSEParserTests: XCTestCase {
    private func parse(_ chunks: [String]) -> TestSSEParser {
        var parser = TestSSEParser()
        for chunk in chunks {
            parser.feed(Array(chunk.utf8))
        }
        return parser
    }

    func testFieldsEventsAndComments() {
        let parser = self.parse([
            ": hello\n\nid: 1\ndata: a\n\nevent: tick\ndata:b\ndata:  c\n\ndata\n\nretry: 250\nid\n\n"
        ])
        XCTAssertEqual(parser.comments, ["hello"])
        XCTAssertEqual(
            parser.events,
            [
                TestEvent(id: "1", data: "a"),
                TestEvent(type: "tick", data: "b\n c", lastEventID: "1"),
                TestEvent(data: "", lastEventID: "1"),
            ]
        )
        XCTAssertEqual(parser.retry, 250)
        XCTAssertEqual(parser.lastEventID, "", "a bare id field resets the last event ID")
    }

    func testLineEndingsSplitAcrossReads() {
        let parser = self.parse(["\u{FEFF}data: x\r", "\ndata: y\r\r", "id: 2\r", "\n", "data: z\n", "\n"])
        XCTAssertEqual(parser.events, [TestEvent(data: "x\ny"), TestEvent(id: "2", data: "z")])

        // A CR at the end of one read, then a line in pieces: the later LF ends that line.
        let pieces = self.parse(["data: p\r", "data: ", "q", "\n\r\n"])
        XCTAssertEqual(pieces.events, [TestEvent(data: "p\nq")])
    }

    func testIgnoresBlocksWithoutDataAndBadFields() {
        let parser = self.parse(["event: x\n\nid: a\u{0}b\ndata: 1\n\nretry: 1s\nretry: 7\n\nunfinished: 2\ndata: 3"])
        XCTAssertEqual(parser.events, [TestEvent(data: "1")])
        XCTAssertEqual(parser.retry, 7)
    }
}
