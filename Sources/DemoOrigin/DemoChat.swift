import NIOCore

/// One answer of `POST /demo/chat`: a canned text streamed token by token in the shape of an
/// OpenAI chat-completions stream (`data: {"choices":[{"delta":{"content":"…"}}]}`, no ids, then
/// `data: [DONE]`), with a silent "thinking" pause in the middle.
///
/// The answer is long enough (about 18 s) for a person to reload the demo page in the middle of
/// it, and the pause is long enough for a gateway's heartbeats to show in it: that is what the
/// page's chat panel demonstrates. The prompt does not change the answer; tests rely on that.
///
/// Confined to one event loop. It holds its sink only while it answers: once finished or stopped
/// it references nothing, so a handler that owns it forms no lasting cycle.
final class DemoChat {
    /// When each event goes out.
    struct Pacing: Sendable {
        /// From the request to the first token.
        var firstToken: TimeAmount
        /// Between two tokens, and from the last token to `[DONE]`.
        var betweenTokens: TimeAmount
        /// The silence in the middle, instead of `betweenTokens`.
        var thinking: TimeAmount

        /// What the demo page shows: about 18 s in all, 6 s of it silent (three heartbeats at the
        /// demo's 2 s heartbeat, and more than the client's 2.5-heartbeat watchdog).
        static let standard = Pacing(firstToken: .milliseconds(500), betweenTokens: .milliseconds(80), thinking: .seconds(6))

        /// From the request to the end of the answer.
        var total: TimeAmount {
            self.firstToken + self.thinking + .nanoseconds(self.betweenTokens.nanoseconds * Int64(DemoChat.tokens.count - 1))
        }
    }

    /// Where the answer goes: complete SSE events, then the end of the response.
    struct Sink {
        var event: (String) -> Void
        var end: () -> Void
    }

    private enum State {
        case idle
        /// `next` is the step the armed timer will send: a token's index, or `tokens.count` for `[DONE]`.
        case answering(next: Int, timer: Scheduled<Void>, sink: Sink)
        case finished
        case stopped
    }

    /// The largest prompt (request body) taken; a larger one is refused with `413`.
    static let maxPromptBytes = 16 * 1024

    /// The answer up to the pause, and after it.
    static let beforePause =
        "This answer is canned, but it travels like a real one. Your prompt went to Lifeline as a POST, "
        + "and Lifeline passed it on to the demo origin, once. The origin streams its reply token by token, "
        + "in the shape of an OpenAI chat-completions stream, and Lifeline keeps every event of this "
        + "generation. Now the origin goes quiet for a few seconds, the way a model does while it thinks\u{2026}"
    static let afterPause =
        "\n\nWhile it was silent, Lifeline sent heartbeat comments, so that no proxy on the way took the "
        + "connection for dead. If you reloaded the page meanwhile, the page did not send your prompt again: "
        + "it asked Lifeline for the rest of the same generation with its resume token and the number of "
        + "events it already had, and the text went on where it stopped. The origin was asked once \u{2014} "
        + "see the count of chat POSTs it received."

    /// The whole text the tokens add up to.
    static var answer: String { beforePause + afterPause }

    /// The answer in tokens as a model streams them: each word with the whitespace before it.
    static let tokens: [String] = tokenize(beforePause) + tokenize(afterPause)

    /// The index of the first token after the pause.
    static let pauseBefore = tokenize(beforePause).count

    private let eventLoop: EventLoop
    private let pacing: Pacing
    private var state = State.idle

    init(eventLoop: EventLoop, pacing: Pacing) {
        self.eventLoop = eventLoop
        self.pacing = pacing
    }

    /// True from `start` until the last event was sent or `stop` was called.
    var isAnswering: Bool {
        if case .answering = self.state { return true }
        return false
    }

    /// Starts the timer; `sink` gets every event and then the end, unless `stop` comes first.
    func start(sink: Sink) {
        self.eventLoop.preconditionInEventLoop()
        guard case .idle = self.state else { preconditionFailure("a DemoChat answers once") }
        self.state = .answering(next: 0, timer: self.arm(step: 0), sink: sink)
    }

    /// Stops the answer where it is (the connection is gone): no more events, no end, no timer.
    func stop() {
        self.eventLoop.preconditionInEventLoop()
        switch self.state {
        case .answering(_, let timer, _):
            timer.cancel()
            self.state = .stopped
        case .idle:
            self.state = .stopped
        case .finished, .stopped:
            break
        }
    }

    /// How long before `step` is sent, counted from the step before it (or from `start`).
    static func delay(beforeStep step: Int, pacing: Pacing) -> TimeAmount {
        switch step {
        case 0: return pacing.firstToken
        case Self.pauseBefore: return pacing.thinking
        default: return pacing.betweenTokens
        }
    }

    /// The event for one token.
    static func eventText(token: String) -> String {
        "data: {\"choices\":[{\"delta\":{\"content\":\"\(jsonEscaped(token))\"}}]}\n\n"
    }

    static let doneEvent = "data: [DONE]\n\n"

    private func arm(step: Int) -> Scheduled<Void> {
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        return self.eventLoop.scheduleTask(in: Self.delay(beforeStep: step, pacing: self.pacing)) {
            bound.value.send(step: step)
        }
    }

    private func send(step: Int) {
        guard case .answering(let next, _, let sink) = self.state, next == step else { return }
        guard step < Self.tokens.count else {
            self.state = .finished
            sink.event(Self.doneEvent)
            sink.end()
            return
        }
        // The state moves on before the write: a write can close the channel, which stops us.
        self.state = .answering(next: step + 1, timer: self.arm(step: step + 1), sink: sink)
        sink.event(Self.eventText(token: Self.tokens[step]))
    }

    // MARK: Text

    private static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for character in text {
            if character.isWhitespace, current.contains(where: { !$0.isWhitespace }) {
                tokens.append(current)
                current = ""
            }
            current.append(character)
        }
        if !current.isEmpty {
            tokens.append(current)
        }
        return tokens
    }

    /// `text` as the inside of a JSON string: quotes, backslashes and control characters escaped.
    static func jsonEscaped(_ text: String) -> String {
        var escaped = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }
}
