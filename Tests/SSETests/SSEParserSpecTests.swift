import NIOCore
import SSE
import XCTest

/// One input and the outputs the WHATWG algorithm gives for it.
struct SpecCase {
    var name: String
    /// One entry per connection; the parser gets `startNewStream` between them.
    var streams: [[UInt8]]
    var expected: [SSEParser.Output]
    var error: SSEParser.Error? = nil
    var maxEventSize = 1 << 20
    var lastEventID = ""

    init(
        _ name: String,
        _ streams: [UInt8]...,
        expected: [SSEParser.Output],
        error: SSEParser.Error? = nil,
        maxEventSize: Int = 1 << 20,
        lastEventID: String = ""
    ) {
        self.name = name
        self.streams = streams
        self.expected = expected
        self.error = error
        self.maxEventSize = maxEventSize
        self.lastEventID = lastEventID
    }

    var expectedRun: ParseRun {
        ParseRun(outputs: self.expected, error: self.error)
    }

    func run(cuts: (Int, Int) -> [Int] = { _, _ in [] }) -> ParseRun {
        runParser(self.streams, maxEventSize: self.maxEventSize, lastEventID: self.lastEventID, cuts: cuts)
    }
}

/// The web-platform-tests `eventsource/format-*` cases. Their server (`resources/message.py`)
/// sends `message + "\n\n\n"`, or `message + "\n"` with `newline=none`; the inputs below are those
/// bodies. `last-event-id.py` answers a reconnection carrying `Last-Event-ID` with `data: <id>`.
let webPlatformTestCases: [SpecCase] = {
    let longComment = String(repeating: "x", count: 2 * 1024)
    let lastEventIDBody = "id: \u{2026}\nretry: 200\ndata: hello\n\n"
    var cases = [
        SpecCase(
            "format-bom: one leading BOM is skipped, a later one is part of the field name",
            bom + utf8("data:1\n\n") + bom + utf8("data:2\n\ndata:3\n\n\n"),
            expected: [event("1"), event("3")]
        ),
        SpecCase(
            "format-bom-2: only the first of two BOMs is skipped",
            bom + bom + utf8("data:1\n\ndata:2\n\ndata:3\n\n\n"),
            expected: [event("2"), event("3")]
        ),
        SpecCase(
            "format-comments",
            utf8("data:1\r:\0\n:\r\ndata:2\n:\(longComment)\rdata:3\n:data:fail\r:\(longComment)\ndata:4\n\n"),
            expected: [event("1\n2\n3\n4")]
        ),
        SpecCase(
            "format-data-before-final-empty-line: a block without its blank line is never dispatched",
            utf8("retry:1000\ndata:test1\n\nid:test\ndata:test2\n"),
            expected: [.retry(1000), event("test1")]
        ),
        SpecCase(
            "format-field-data",
            utf8("data:\n\ndata\ndata\n\ndata:test\n\n\n"),
            expected: [event(""), event("\n"), event("test")]
        ),
        SpecCase(
            "format-field-event",
            utf8("event:test\ndata:x\n\ndata:x\n\n\n"),
            expected: [event("x", type: "test"), event("x")]
        ),
        SpecCase(
            "format-field-event-empty",
            utf8("event: \ndata:data\n\n\n"),
            expected: [event("data", type: "")]
        ),
        SpecCase(
            "format-field-id: the id survives a reconnection",
            utf8(lastEventIDBody),
            utf8("data: \u{2026}\n\n"),
            expected: [.retry(200), event("hello", id: "\u{2026}"), event("\u{2026}", lastEventID: "\u{2026}")]
        ),
        SpecCase(
            "format-field-id-2: and a second one",
            utf8(lastEventIDBody),
            utf8("data: \u{2026}\n\n"),
            utf8("data: \u{2026}\n\n"),
            expected: [
                .retry(200), event("hello", id: "\u{2026}"),
                event("\u{2026}", lastEventID: "\u{2026}"), event("\u{2026}", lastEventID: "\u{2026}"),
            ]
        ),
        SpecCase(
            "format-field-id-3: lastEventId persists",
            utf8("id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n"),
            expected: [
                event("1", id: "1"), event("2", lastEventID: "1"),
                event("3", id: "2"), event("4", lastEventID: "2"),
            ]
        ),
        SpecCase(
            "format-field-id-3: lastEventId resets",
            utf8("id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n"),
            expected: [event("1", id: "1"), event("2", id: ""), event("3")]
        ),
        SpecCase(
            "format-field-id-3: lastEventId resets (id without colon)",
            utf8("id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n"),
            expected: [event("1", id: "1"), event("2", id: ""), event("3")]
        ),
        SpecCase(
            "format-field-parsing",
            utf8("data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n"),
            expected: [event("\0\n 2\n1\n3\n\n4")]
        ),
        SpecCase(
            "format-field-retry: base ten, leading zeros allowed",
            utf8("retry:03000\ndata:x\n\n\n"),
            expected: [.retry(3000), event("x")]
        ),
        SpecCase(
            "format-field-retry-bogus",
            utf8("retry:3000\nretry:1000x\ndata:x\n\n\n"),
            expected: [.retry(3000), event("x")]
        ),
        SpecCase(
            "format-field-retry-empty",
            utf8("retry\ndata:test\n\n\n"),
            expected: [event("test")]
        ),
        SpecCase(
            "format-field-unknown",
            utf8("data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n\n"),
            expected: [event("test\n\ntest")]
        ),
        SpecCase(
            "format-leading-space: only one space is removed, and only a space",
            utf8("data:\ttest\rdata: \ndata:test\n\n\n"),
            expected: [event("\ttest\n\ntest")]
        ),
        SpecCase(
            "format-newlines",
            utf8("data:test\r\ndata\ndata:test\r\n\r\n"),
            expected: [event("test\n\ntest")]
        ),
        SpecCase(
            "format-null-character",
            utf8("data:\0\n\n\n\n"),
            expected: [event("\0")]
        ),
        SpecCase(
            "format-utf-8",
            utf8("data:ok\u{2026}\n\n\n"),
            expected: [event("ok\u{2026}")]
        ),
    ]
    // format-field-id-null: an id containing U+0000 is ignored, so the last event ID stays "".
    for idValue in ["\0\0", "x\0", "\0x", "x\0x", " \0"] {
        cases.append(
            SpecCase(
                "format-field-id-null: \(idValue.debugDescription)",
                utf8("id: \(idValue)\nretry: 200\ndata: hello\n\n"),
                expected: [.retry(200), event("hello")]
            )
        )
    }
    return cases
}()

/// More edge cases of the same algorithms, and of this parser's choices.
let additionalCases: [SpecCase] = [
    // UTF-8 decoding with replacement (WHATWG "UTF-8 decode": one U+FFFD per maximal invalid subpart).
    SpecCase("invalid byte", utf8("data:a") + [0xFF] + utf8("b\n\n"), expected: [event("a\u{FFFD}b")]),
    SpecCase(
        "sequence truncated by a line break, and lone continuation bytes",
        utf8("data:") + [0xE2, 0x82] + utf8("\ndata:") + [0x82, 0xAC] + utf8("\n\n"),
        expected: [event("\u{FFFD}\n\u{FFFD}\u{FFFD}")]
    ),
    SpecCase(
        "surrogate and overlong encodings",
        utf8("data:") + [0xED, 0xA0, 0x80, 0xC0, 0xAF] + utf8("\n\n"),
        expected: [event(String(repeating: "\u{FFFD}", count: 5))]
    ),
    SpecCase(
        "invalid UTF-8 in id and event type",
        utf8("id:") + [0xFF] + utf8("\nevent:") + [0xC3] + utf8("\ndata:x\n\n"),
        expected: [event("x", id: "\u{FFFD}", type: "\u{FFFD}")]
    ),
    SpecCase(
        "multi-byte characters (split anywhere by the split tests)",
        utf8("id: \u{00FC}\nevent: \u{00F1}\ndata: h\u{00E9}llo \u{1F30D} \u{3053}\u{3093}\n\n"),
        expected: [event("h\u{00E9}llo \u{1F30D} \u{3053}\u{3093}", id: "\u{00FC}", type: "\u{00F1}")]
    ),

    // Line terminators.
    SpecCase("CR CR", utf8("data:a\r\rdata:b\r\r"), expected: [event("a"), event("b")]),
    SpecCase("LF CRLF", utf8("data:a\n\r\n"), expected: [event("a")]),
    SpecCase("CRLF LF", utf8("data:a\r\n\n"), expected: [event("a")]),
    SpecCase("LF CR: a CR after an LF is a new line", utf8("data:a\n\rdata:b\n\n"), expected: [event("a"), event("b")]),
    SpecCase("CRLF CRLF", utf8("data:a\r\n\r\ndata:b\r\n\r\n"), expected: [event("a"), event("b")]),
    SpecCase("CR LF LF", utf8("data:a\r\n\ndata:b\n\n"), expected: [event("a"), event("b")]),
    SpecCase("only blank lines", utf8("\n\n\r\n\r\r\n"), expected: []),

    // Field parsing.
    SpecCase("a value keeps its colons and other spaces", utf8("data:  a: b \n\n"), expected: [event(" a: b ")]),
    SpecCase("field names are case-sensitive", utf8("DATA:x\nId:1\nEvent:e\n\n"), expected: []),
    SpecCase("the last event field wins", utf8("event:a\nevent:b\ndata:x\n\n"), expected: [event("x", type: "b")]),
    SpecCase("the event type resets at a blank line", utf8("event:a\n\ndata:x\n\n"), expected: [event("x")]),
    SpecCase("the data buffer resets at a blank line", utf8("data:a\n\ndata:b\n\n"), expected: [event("a"), event("b")]),
    SpecCase("a comment-only block dispatches nothing", utf8(":hi\n\n: there\n\n"), expected: []),
    SpecCase("the last valid id wins", utf8("id: 1\nid: 2\0\ndata:x\n\n"), expected: [event("x", id: "1")]),
    SpecCase(
        "an id with NUL doesn't reset the last event ID",
        utf8("id: 1\ndata: a\n\nid: \0\ndata: b\n\n"),
        expected: [event("a", id: "1"), event("b", lastEventID: "1")]
    ),
    SpecCase("a value with a leading colon", utf8("data::x\n\n"), expected: [event(":x")]),

    // Blocks without data.
    SpecCase("an id-only block is emitted", utf8("id: 7\n\n"), expected: [event(nil, id: "7")]),
    SpecCase("an id reset without data is emitted", utf8("id: 7\n\nid\n\ndata:x\n\n"),
             expected: [event(nil, id: "7"), event(nil, id: ""), event("x")]),
    SpecCase("id and event without data", utf8("event: ping\nid: 8\n\n"), expected: [event(nil, id: "8", type: "ping")]),
    SpecCase("an event-only block is not", utf8("event: ping\n\n"), expected: []),
    SpecCase("a retry-only block is not", utf8("retry: 10\n\n"), expected: [.retry(10)]),

    // retry.
    SpecCase("retry 0", utf8("retry:0\n"), expected: [.retry(0)]),
    SpecCase("retry Int.max", utf8("retry: 9223372036854775807\n"), expected: [.retry(Int.max)]),
    SpecCase("retry just past Int.max clamps", utf8("retry: 9223372036854775808\n"), expected: [.retry(Int.max)]),
    SpecCase("retry far past Int.max clamps", utf8("retry: " + String(repeating: "9", count: 100) + "\n"),
             expected: [.retry(Int.max)]),
    SpecCase(
        "bogus retry values are ignored",
        utf8("retry: 12 \nretry:  5\nretry: -1\nretry: +1\nretry: 1.5\nretry: \u{0661}\nretry:0x10\nretry:\n"),
        expected: []
    ),
    SpecCase("retry is emitted before the end of its block", utf8("data:x\nretry:5\n\n"), expected: [.retry(5), event("x")]),

    // End of stream, and BOMs.
    SpecCase("an unterminated line is not processed", utf8("data:x\n\nretry: 5"), expected: [event("x")]),
    SpecCase("only a BOM", bom, expected: []),
    SpecCase("a BOM before a comment", bom + utf8(":c\ndata:x\n\n"), expected: [event("x")]),
    SpecCase(
        "a partial BOM is part of the first line",
        [0xEF, 0xBB] + utf8("data:x\n\ndata:y\n\n"),
        expected: [event("y")]
    ),
    SpecCase("a lone EF is part of the first line", [0xEF] + utf8("data:x\n\n"), expected: []),
    SpecCase("a partial BOM alone is a line", [0xEF, 0xBB, 0x0A, 0x0A], expected: []),
    SpecCase("a BOM starts each stream", bom + utf8("data:a\n\n"), bom + utf8("data:b\n\n"),
             expected: [event("a"), event("b")]),

    // New streams (startNewStream between the inputs).
    SpecCase(
        "a new stream discards the partial line and block, and the block's id",
        utf8("data:a\n\ndata:b\nid: 9\ndata:c"),
        utf8("\ndata:d\n\n"),
        expected: [event("a"), event("d")]
    ),
    SpecCase(
        "a CR at the end of one stream doesn't swallow the next stream's LF",
        utf8("data:a\n\ndata:b\r"),
        utf8("\ndata:c\n\n"),
        expected: [event("a"), event("c")]
    ),
    SpecCase(
        "the last event ID carries over to the next stream",
        utf8("id: 1\ndata:a\n\n"),
        utf8("data:b\n\n"),
        expected: [event("a", id: "1"), event("b", lastEventID: "1")]
    ),
    SpecCase("a starting last event ID", utf8("data:x\n\nid\n\n"), expected: [event("x", lastEventID: "42"), event(nil, id: "")],
             lastEventID: "42"),

    // maxEventSize: a block counts its field lines plus one byte per terminator.
    SpecCase("a block at the limit", utf8("data:0123456789\n\n"), expected: [event("0123456789")], maxEventSize: 16),
    SpecCase("a block over the limit", utf8("data:0123456789A\n\n"), expected: [],
             error: .eventTooLarge(limit: 16), maxEventSize: 16),
    SpecCase("CRLF counts as one byte", utf8("data:0123\r\ndata:\r\n\r\n"), expected: [event("0123\n")], maxEventSize: 16),
    SpecCase("lines add up", utf8("data:012345\ndata:\n\n"), expected: [], error: .eventTooLarge(limit: 16), maxEventSize: 16),
    SpecCase("the count restarts with each block", utf8(String(repeating: "data:0123456789\n\n", count: 5)),
             expected: Array(repeating: event("0123456789"), count: 5), maxEventSize: 16),
    SpecCase("outputs before the error stay", utf8("data:a\n\nretry:1\ndata:0123456789ABCDEF\n\n"),
             expected: [event("a"), .retry(1)], error: .eventTooLarge(limit: 16), maxEventSize: 16),
    SpecCase("comment lines don't count toward a block",
             utf8("data:a\n" + String(repeating: ":0123456789abcd\n", count: 20) + "data:b\n\n"),
             expected: [event("a\nb")], maxEventSize: 16),
    SpecCase("but no line may exceed the limit", utf8(":0123456789abcdef\n\n"), expected: [],
             error: .eventTooLarge(limit: 16), maxEventSize: 16),
    SpecCase("an unterminated line at the limit is kept", utf8("data:0123456789A"), expected: [], maxEventSize: 16),
    SpecCase("an unterminated line over the limit", utf8("data:0123456789AB"), expected: [],
             error: .eventTooLarge(limit: 16), maxEventSize: 16),
    SpecCase("a skipped BOM doesn't count", bom + utf8("data:0123456789\n\n"), expected: [event("0123456789")],
             maxEventSize: 16),
]

final class SSEParserSpecTests: XCTestCase {
    let cases = webPlatformTestCases + additionalCases

    func testWholeInput() {
        for specCase in self.cases {
            XCTAssertEqual(specCase.run(), specCase.expectedRun, specCase.name)
        }
    }

    func testOneByteAtATime() {
        for specCase in self.cases {
            XCTAssertEqual(specCase.run(cuts: everyByte), specCase.expectedRun, specCase.name)
        }
    }

    func testEveryTwoWaySplit() {
        for specCase in self.cases {
            for (streamIndex, stream) in specCase.streams.enumerated() where stream.count > 1 {
                for cut in 1..<stream.count {
                    let run = specCase.run(cuts: { index, _ in index == streamIndex ? [cut] : [] })
                    if run != specCase.expectedRun {
                        XCTFail("\(specCase.name): split at \(cut) of stream \(streamIndex): \(run)")
                        break
                    }
                }
            }
        }
    }

    func testRandomChunkings() {
        var random = SplitMix64(state: 0x5EED)
        for specCase in self.cases {
            for _ in 0..<20 {
                var chunkings: [[Int]] = []
                for stream in specCase.streams {
                    let cutCount = stream.count > 1 ? Int.random(in: 0...min(6, stream.count - 1), using: &random) : 0
                    let cuts = Set((0..<cutCount).map { _ in Int.random(in: 1..<stream.count, using: &random) })
                    chunkings.append(cuts.sorted())
                }
                let run = specCase.run(cuts: { index, _ in chunkings[index] })
                if run != specCase.expectedRun {
                    XCTFail("\(specCase.name): cuts \(chunkings): \(run)")
                    break
                }
            }
        }
    }

    /// Re-serializing what the parser read and parsing that again gives the same outputs:
    /// the serializer's canonical form loses nothing the parser reports.
    func testSerializedOutputsParseBackTheSame() {
        for specCase in self.cases where specCase.error == nil {
            var buffer = ByteBuffer()
            for output in specCase.expected {
                switch output {
                case .event(let event): SSESerializer.write(event, into: &buffer)
                case .retry(let milliseconds): SSESerializer.writeRetry(milliseconds, into: &buffer)
                }
            }
            let run = runParser([Array(buffer.readableBytesView)], lastEventID: specCase.lastEventID)
            XCTAssertEqual(run, ParseRun(outputs: specCase.expected), specCase.name)
        }
    }
}
