import NIOCore

/// A catching-up stream's way back to the shared stream: the pure part (no loops, no I/O).
///
/// A client whose `Last-Event-ID` the shared stream's buffer could not serve gets a stream of its
/// own, opened with that id, so that the origin replays what it missed. After each batch it has
/// been sent, if the batch's last event carries an id, the shared stream is asked whether it
/// holds that id. While the question is out, new events are held back (not sent): a hit moves
/// the client to the shared stream right after that id, and the shared stream sends it what
/// followed, held events included, so there is neither a gap nor a duplicate at the seam; a
/// miss sends the held events on and asks again later, less often after each miss (an origin
/// whose ids differ per connection never matches, and costs a question per batch at most).
struct CatchUpSplice {
    enum State: Equatable {
        /// Not a catching-up stream, or one whose ids cannot match (`--assign-ids`).
        case disabled
        /// Following the origin; ask after `skip` more batches that end with an id.
        case behind(skip: Int)
        /// The question is out; events are held back.
        case asking
        /// The client continues on the shared stream; nothing more goes to it from here.
        case joined
        /// Held back more than `holdLimit`: the client was let go (it reconnects).
        case overflowed
    }

    enum Question: Equatable {
        case none
        /// Ask the shared stream for what follows this id.
        case ask(String)
    }

    enum BatchAction: Equatable {
        /// Send the batch as usual.
        case deliver
        /// Keep it back until the answer.
        case hold
        /// Send nothing (joined).
        case drop
        /// Held back too much: end the client's response.
        case overflow
    }

    enum AnswerAction {
        case none
        /// Send what was held back, then ask again after `askAgainAfter` if it is set.
        case release([ByteBuffer], eventCount: Int, askAgainAfter: String?)
    }

    private(set) var state: State
    private let holdLimit: Int
    private var held: [ByteBuffer] = []
    private var heldBytes = 0
    private var heldEvents = 0
    /// The id carried by the last held event, if it carried one.
    private var heldLastID: String?
    private(set) var misses = 0

    /// Longest pause between questions, in batches.
    static let maxSkip = 64

    init(enabled: Bool, holdLimit: Int) {
        self.state = enabled ? .behind(skip: 0) : .disabled
        self.holdLimit = holdLimit
    }

    var isJoined: Bool { self.state == .joined }

    /// The client has been sent everything up to an event that carries `lastEventID` (nil: it
    /// carries none, so it is no place to splice at).
    mutating func delivered(lastEventID: String?) -> Question {
        guard case .behind(let skip) = self.state, let lastEventID else { return .none }
        if skip > 0 {
            self.state = .behind(skip: skip - 1)
            return .none
        }
        self.state = .asking
        return .ask(lastEventID)
    }

    /// A batch came from the origin: send it, hold it, or drop it.
    /// - Parameter lastEventID: the id the batch's last event carries, nil if none (or no event).
    mutating func batchArrived(_ bytes: [ByteBuffer], eventCount: Int, lastEventID: String?) -> BatchAction {
        switch self.state {
        case .disabled, .behind:
            return .deliver
        case .joined, .overflowed:
            return .drop
        case .asking:
            self.heldBytes += bytes.reduce(0) { $0 + $1.readableBytes }
            if self.heldBytes > self.holdLimit {
                self.state = .overflowed
                self.held = []
                self.heldBytes = 0
                self.heldEvents = 0
                return .overflow
            }
            self.held += bytes
            self.heldEvents += eventCount
            if eventCount > 0 {
                self.heldLastID = lastEventID
            }
            return .hold
        }
    }

    /// The shared stream answered the question.
    mutating func answered(joined: Bool) -> AnswerAction {
        guard self.state == .asking else { return .none }
        let held = self.held
        let heldEvents = self.heldEvents
        let heldLastID = self.heldLastID
        self.held = []
        self.heldBytes = 0
        self.heldEvents = 0
        self.heldLastID = nil
        if joined {
            self.state = .joined
            return .none
        }
        self.misses += 1
        self.state = .behind(skip: min(self.misses - 1, Self.maxSkip))
        // What was held is delivered now; it may itself end at a place to ask about.
        var askAgain: String?
        if heldEvents > 0, case .ask(let id) = self.delivered(lastEventID: heldLastID) {
            askAgain = id
        }
        return .release(held, eventCount: heldEvents, askAgainAfter: askAgain)
    }
}
