import NIOCore
import NIOEmbedded

@testable import LifelineCore

/// An in-memory stand-in for the Redis history with the same rules as its scripts: a lease with
/// a token and an expiry (on the loop's virtual clock), fenced appends that must continue the
/// history, an epoch, lookups by id, and followers that get every stored event in order. Each
/// answer comes in a task of its own, as a network answer would. `reachable = false` makes every
/// call fail and every follow break; `unanswered` swallows one instance's calls (a paused or
/// partitioned process).
final class FakeSharedHistory {
    let loop: EmbeddedEventLoop
    /// Going unreachable breaks every follow, as a dead server breaks its blocking reads.
    var reachable = true {
        didSet {
            guard !self.reachable else { return }
            for follower in self.followers { follower.breakOff("unreachable") }
            self.followers = []
        }
    }
    /// Instances whose requests never arrive.
    var unanswered: Set<String> = []

    private(set) var epoch: String?
    private(set) var events: [EncodedEvent] = []
    private(set) var lastSequence: UInt64 = 0
    private(set) var lastEventID: String?
    private(set) var headers: [(String, String)] = []
    private var lease: (token: String, until: NIODeadline)?
    private var fence = 0
    private var epochs = 0
    private(set) var appendsRefused = 0
    fileprivate var followers: [FakeFollowing] = []

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    func history(for instance: String) -> FakeStreamHistory {
        FakeStreamHistory(store: self, instance: instance)
    }

    var leaseHolder: String? {
        guard let lease, lease.until > self.loop.now else { return nil }
        return String(lease.token.split(separator: "/")[1])
    }

    /// Forgets everything (a Redis restart without persistence).
    func flush() {
        self.epoch = nil
        self.events = []
        self.lastSequence = 0
        self.lastEventID = nil
        self.lease = nil
        for follower in self.followers { follower.breakOff("the store restarted") }
        self.followers = []
    }

    fileprivate func answer(_ instance: String, _ body: @escaping () -> Void) {
        guard !self.unanswered.contains(instance) else { return }
        self.loop.execute(body)
    }

    fileprivate func claim(_ instance: String, startFresh: Bool, nextSequence: UInt64) -> HistoryClaim {
        guard self.reachable else { return .unavailable("unreachable") }
        if let holder = self.leaseHolder {
            return .follower(owner: holder, position: self.position, originHeaders: self.headers)
        }
        self.fence += 1
        let token = "\(self.fence)/\(instance)"
        self.lease = (token, self.loop.now + .seconds(5))
        if self.epoch == nil || startFresh {
            self.epochs += 1
            self.epoch = "e\(self.epochs)"
            self.events = []
            self.lastSequence = nextSequence - 1
            self.lastEventID = nil
        }
        return .owner(token: token, position: self.position)
    }

    var position: HistoryPosition {
        HistoryPosition(epoch: self.epoch ?? "", lastSequence: self.lastSequence, lastEventID: self.lastEventID)
    }

    fileprivate func renew(_ token: String) -> Bool? {
        guard self.reachable else { return nil }
        guard let lease, lease.token == token, lease.until > self.loop.now else { return false }
        self.lease = (token, self.loop.now + .seconds(5))
        return true
    }

    fileprivate func append(_ batch: [EncodedEvent], token: String, epoch: String, headers: [(String, String)]?) -> HistoryAppend {
        guard self.reachable else { return .unavailable("unreachable") }
        guard let lease, lease.token == token, lease.until > self.loop.now, epoch == self.epoch else {
            self.appendsRefused += 1
            return .notOwner
        }
        for event in batch where event.sequence > self.lastSequence {
            precondition(event.sequence == self.lastSequence + 1, "a batch must continue the history")
            self.events.append(event)
            self.lastSequence = event.sequence
            if let id = event.id { self.lastEventID = id }
        }
        if let headers { self.headers = headers }
        for follower in self.followers { follower.wake() }
        return .stored
    }

    fileprivate func lookup(_ id: String) -> HistoryLookup {
        guard self.reachable else { return .unavailable("unreachable") }
        guard let epoch = self.epoch, let index = self.events.lastIndex(where: { $0.id == id }) else { return .miss }
        return .hit(epoch: epoch, sequence: self.events[index].sequence, events: Array(self.events[(index + 1)...]))
    }

    fileprivate func release(_ token: String) {
        if self.lease?.token == token { self.lease = nil }
    }

    /// Sets the lease's time to run out now (as if its holder stopped renewing long ago).
    func expireLease() {
        self.lease = nil
    }
}

final class FakeStreamHistory: StreamHistory {
    let store: FakeSharedHistory
    let instance: String

    init(store: FakeSharedHistory, instance: String) {
        self.store = store
        self.instance = instance
    }

    func claim(startFresh: Bool, nextSequence: UInt64, completion: @escaping (HistoryClaim) -> Void) {
        self.store.answer(self.instance) { [store, instance] in
            completion(store.claim(instance, startFresh: startFresh, nextSequence: nextSequence))
        }
    }

    func renew(token: String, completion: @escaping (Bool?) -> Void) {
        self.store.answer(self.instance) { [store] in completion(store.renew(token)) }
    }

    func append(_ events: [EncodedEvent], token: String, epoch: String, originHeaders: [(String, String)]?,
                completion: @escaping (HistoryAppend) -> Void) {
        self.store.answer(self.instance) { [store] in
            completion(store.append(events, token: token, epoch: epoch, headers: originHeaders))
        }
    }

    func follow(after sequence: UInt64, epoch: String, delegate: HistoryFollowerDelegate) -> HistoryFollowing {
        let following = FakeFollowing(store: self.store, epoch: epoch, after: sequence, delegate: delegate)
        self.store.followers.append(following)
        following.wake()
        return following
    }

    func events(after lastEventID: String, completion: @escaping (HistoryLookup) -> Void) {
        self.store.answer(self.instance) { [store] in completion(store.lookup(lastEventID)) }
    }

    func release(token: String) {
        self.store.answer(self.instance) { [store] in store.release(token) }
    }
}

final class FakeFollowing: HistoryFollowing {
    private let store: FakeSharedHistory
    private let epoch: String
    private var after: UInt64
    private weak var delegate: HistoryFollowerDelegate?
    private var stopped = false

    fileprivate init(store: FakeSharedHistory, epoch: String, after: UInt64, delegate: HistoryFollowerDelegate) {
        self.store = store
        self.epoch = epoch
        self.after = after
        self.delegate = delegate
    }

    func stop() {
        self.stopped = true
        self.store.followers.removeAll { $0 === self }
    }

    fileprivate func wake() {
        self.store.loop.execute {
            guard !self.stopped else { return }
            guard self.store.reachable, self.store.epoch == self.epoch else {
                return self.breakOff("unreachable or reset")
            }
            let fresh = self.store.events.filter { $0.sequence > self.after }
            guard let last = fresh.last else { return }
            self.after = last.sequence
            self.delegate?.historyReceived(fresh)
        }
    }

    fileprivate func breakOff(_ reason: String) {
        guard !self.stopped else { return }
        self.stopped = true
        self.store.loop.execute { self.delegate?.historyFollowFailed(reason) }
    }
}
