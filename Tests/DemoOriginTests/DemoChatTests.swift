import Foundation
import NIOCore
import NIOEmbedded
import XCTest

@testable import DemoOrigin

/// The canned answer and its timer, on an `EmbeddedEventLoop` (virtual time: the standard 18 s
/// pacing costs nothing).
final class DemoChatTests: XCTestCase {
    /// What a sink received, with the loop's time of each call.
    private final class Recording {
        var events: [(at: NIODeadline, text: String)] = []
        var endedAt: NIODeadline?

        func sink(on loop: EmbeddedEventLoop) -> DemoChat.Sink {
            DemoChat.Sink(
                event: { self.events.append((loop.now, $0)) },
                end: { self.endedAt = loop.now }
            )
        }
    }

    /// The `content` of a chat-completions chunk, decoded as JSON by Foundation (checks the escaping).
    static func content(ofEvent text: String) throws -> String {
        struct Chunk: Decodable {
            struct Choice: Decodable {
                struct Delta: Decodable { var content: String }
                var delta: Delta
            }
            var choices: [Choice]
        }
        let prefix = "data: ", suffix = "\n\n"
        guard text.hasPrefix(prefix), text.hasSuffix(suffix) else {
            throw TestFailure("not one data-only event: \(String(reflecting: text))")
        }
        let json = text.dropFirst(prefix.count).dropLast(suffix.count)
        let chunk = try JSONDecoder().decode(Chunk.self, from: Data(json.utf8))
        guard chunk.choices.count == 1 else { throw TestFailure("\(chunk.choices.count) choices") }
        return chunk.choices[0].delta.content
    }

    struct TestFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func testTokensAddUpToTheAnswerAndTheEventsAreChatCompletionChunks() throws {
        XCTAssertEqual(DemoChat.tokens.joined(), DemoChat.answer)
        XCTAssertGreaterThan(DemoChat.tokens.count, 100)
        XCTAssertTrue(DemoChat.tokens.allSatisfy { !$0.isEmpty })
        XCTAssertTrue(DemoChat.tokens[DemoChat.pauseBefore].hasPrefix("\n\n"), "the pause falls between the paragraphs")
        for token in DemoChat.tokens {
            let event = DemoChat.eventText(token: token)
            XCTAssertFalse(event.dropLast(2).contains("\n"), "one line per event: \(String(reflecting: event))")
            XCTAssertEqual(try Self.content(ofEvent: event), token)
        }
        XCTAssertEqual(DemoChat.jsonEscaped("a\"b\\c\u{1}\t\u{2014}"), "a\\\"b\\\\c\\u0001\\t\u{2014}")
    }

    func testStandardPacingSendsTokensInOrderWithTheThinkingPauseThenDone() throws {
        let loop = EmbeddedEventLoop()
        let recording = Recording()
        let start = loop.now
        let pacing = DemoChat.Pacing.standard
        let chat = DemoChat(eventLoop: loop, pacing: pacing)
        chat.start(sink: recording.sink(on: loop))
        XCTAssertTrue(chat.isAnswering)

        loop.advanceTime(by: pacing.firstToken - .milliseconds(1))
        XCTAssertTrue(recording.events.isEmpty, "nothing before the first token's time")
        loop.advanceTime(by: pacing.total)
        XCTAssertFalse(chat.isAnswering)

        let texts = recording.events.map { $0.text }
        XCTAssertEqual(texts.count, DemoChat.tokens.count + 1)
        XCTAssertEqual(texts.last, "data: [DONE]\n\n")
        XCTAssertEqual(try texts.dropLast().map(Self.content(ofEvent:)), DemoChat.tokens)

        // The first token after firstToken; the pause before the second paragraph; the rest paced.
        let times = recording.events.map { $0.at - start }
        XCTAssertEqual(times[0], pacing.firstToken)
        for index in 1..<times.count {
            let gap = times[index] - times[index - 1]
            XCTAssertEqual(gap, index == DemoChat.pauseBefore ? pacing.thinking : pacing.betweenTokens, "before step \(index)")
        }
        XCTAssertEqual(times.last, pacing.total)
        XCTAssertEqual(recording.endedAt.map { $0 - start }, pacing.total, "the end right after [DONE]")

        // Long enough to reload the page mid-answer; a pause long enough for heartbeats at the
        // demo's 2 s (and for a client without them to give up: 2.5 heartbeats).
        XCTAssertGreaterThanOrEqual(pacing.total, .seconds(15))
        XCTAssertLessThanOrEqual(pacing.total, .seconds(25))
        XCTAssertGreaterThan(pacing.thinking, .seconds(5))
        let beforePause = times[DemoChat.pauseBefore - 1], afterPause = times[DemoChat.pauseBefore]
        XCTAssertGreaterThan(beforePause, .seconds(4), "tokens stream for a while before the pause")
        XCTAssertGreaterThan(pacing.total - afterPause, .seconds(4), "and after it")
        try loop.syncShutdownGracefully()
    }

    func testStopCancelsTheTimerMidAnswer() throws {
        let loop = EmbeddedEventLoop()
        let recording = Recording()
        let chat = DemoChat(eventLoop: loop, pacing: .standard)
        chat.start(sink: recording.sink(on: loop))
        loop.advanceTime(by: .seconds(2))
        let sent = recording.events.count
        XCTAssertGreaterThan(sent, 5)

        chat.stop()
        XCTAssertFalse(chat.isAnswering)
        loop.advanceTime(by: .seconds(60))
        XCTAssertEqual(recording.events.count, sent, "nothing after stop")
        XCTAssertNil(recording.endedAt, "a stopped answer does not end the response")
        chat.stop()  // idempotent

        // The timer is cancelled, not just ignored when it fires: nothing holds a stopped answer.
        weak var stopped: DemoChat?
        do {
            let chat = DemoChat(eventLoop: loop, pacing: .standard)
            stopped = chat
            chat.start(sink: recording.sink(on: loop))
            loop.advanceTime(by: .seconds(1))
            chat.stop()
        }
        XCTAssertNil(stopped, "a timer still holds the stopped answer")

        // Stopped from inside a write (the write closed the channel): the timer armed for the
        // next step is cancelled as well.
        let closing = DemoChat(eventLoop: loop, pacing: .standard)
        var writes = 0
        closing.start(sink: DemoChat.Sink(event: { _ in writes += 1; closing.stop() }, end: { XCTFail("ended") }))
        loop.advanceTime(by: .seconds(60))
        XCTAssertEqual(writes, 1)
        XCTAssertFalse(closing.isAnswering)
        try loop.syncShutdownGracefully()
    }
}
