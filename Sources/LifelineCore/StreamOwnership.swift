import NIOCore

/// Who feeds a stream when several instances share its history (`--redis`): this instance, under
/// the lease (it holds the origin connection and appends), another instance (this one follows the
/// stored history), or nobody reachable (the store is down: this instance falls back to its own
/// origin connection, resuming from the last id it delivered). The pure part of `EventStream`'s
/// shared-history role: no I/O, no timers; it answers each happening with the actions to run.
///
/// The stream's own events are numbered in the sequence space of one history epoch (`localEpoch`),
/// or in a space of their own (nil) while it is on its own. It never mixes the two: moving from
/// its own numbering onto a history is a *rejoin*, which looks the last delivered id up in the
/// history and continues exactly after it, or not at all.
struct StreamOwnership {
    /// What the stream knows of itself when something happens.
    struct Local: Equatable {
        /// Sequence of the last event delivered (0: none).
        var lastSequence: UInt64
        /// The last `id` the delivered events carried; the origin is reopened from it.
        var lastEventID: String?
        /// The first sequence the ring still holds (nil: empty).
        var firstHeldSequence: UInt64?
    }

    enum State: Equatable {
        /// No shared history (no `--redis`).
        case standalone
        /// A claim is out. `originRunning`: an origin connection of our own is open meanwhile.
        case claiming(originRunning: Bool, startFresh: Bool)
        /// We hold the lease and the origin connection. `storedThrough`: the last sequence the
        /// history has; `appending`: a write is out (one at a time: the next one takes what
        /// arrived meanwhile, one round trip per batch).
        case owning(token: String, epoch: String, storedThrough: UInt64, appending: Bool, validUntil: NIODeadline)
        /// We hold the lease but the history has events we lack: follow until we have them, then
        /// open the origin from the history's last id.
        case takingOver(token: String, position: HistoryPosition, validUntil: NIODeadline)
        /// Another instance owns the stream; we follow the history.
        case following(epoch: String)
        /// Following, while a claim asks whether the owner's lease has lapsed.
        case checkingLease(epoch: String)
        /// Our origin connection is stopped while we ask whether the history holds our last id.
        case rejoining
        /// The store is unreachable (or does not continue us): our own origin connection feeds
        /// the stream, numbered in our own space; a claim is tried again at `retryAt`.
        case fallback(retryAt: NIODeadline)
        case ended
    }

    enum Action: Equatable {
        /// Ask for the lease (and a fresh epoch numbered from `nextSequence` if `startFresh`).
        case claim(startFresh: Bool, nextSequence: UInt64)
        case renew(token: String)
        /// Open the origin, resuming from `resumeID`; the events that follow are numbered from
        /// `nextSequence` in `epoch`'s space (nil: our own).
        case openOrigin(resumeID: String?, nextSequence: UInt64, epoch: String?)
        case stopOrigin
        /// Follow the history from after `sequence`, numbering in `epoch`'s space; `resetRing`:
        /// what the ring holds is in another space and is dropped first.
        case follow(after: UInt64, epoch: String, resetRing: Bool)
        case stopFollowing
        /// Store the ring's events after `sequence` (with the origin's headers when `withHeaders`).
        case append(after: UInt64, token: String, epoch: String)
        /// Ask the history for the events after `lastEventID` (a rejoin).
        case lookUp(lastEventID: String)
        case release(token: String)
        /// Say so in the logs, metrics and status page.
        case note(Note)
    }

    enum Note: Equatable {
        case becameOwner, becameFollower, fellBack(String), rejoined
    }

    struct Timing: Equatable {
        var lease: TimeAmount
        /// How often an owner renews and a follower looks at the lease.
        var check: TimeAmount { .nanoseconds(self.lease.nanoseconds / 3) }
        var retryMin: TimeAmount = .milliseconds(500)
        var retryMax: TimeAmount = .seconds(30)
    }

    private(set) var state: State
    let timing: Timing
    /// The epoch whose sequence space the stream's events are numbered in (nil: its own).
    private(set) var localEpoch: String?
    /// Store failures in a row: the retry waits longer after each.
    private var failures = 0

    init(shared: Bool, timing: Timing) {
        self.state = shared ? .claiming(originRunning: false, startFresh: false) : .standalone
        self.timing = timing
    }

    /// The stream's loop is about to make events from its own origin connection: whether to take
    /// them. An owner whose lease has run out by its own clock (it was paused, or could not renew)
    /// takes nothing more: another instance may own the stream by now.
    mutating func originBatchArrived(now: NIODeadline, local: Local) -> (accept: Bool, actions: [Action]) {
        switch self.state {
        case .owning(let token, _, _, _, let validUntil) where now >= validUntil:
            _ = token
            self.state = .claiming(originRunning: false, startFresh: false)
            return (false, [.stopOrigin, .claim(startFresh: false, nextSequence: local.lastSequence + 1)])
        case .standalone, .owning, .fallback, .claiming(originRunning: true, _):
            return (true, [])
        case .claiming(originRunning: false, _), .takingOver, .following, .checkingLease, .rejoining, .ended:
            // A connection that should not be open any more (a late read).
            return (false, [])
        }
    }

    /// New events are in the ring (from the origin or the history).
    mutating func eventsArrived(local: Local) -> [Action] {
        switch self.state {
        case .owning(let token, let epoch, let storedThrough, let appending, let validUntil):
            guard !appending, local.lastSequence > storedThrough else { return [] }
            self.state = .owning(token: token, epoch: epoch, storedThrough: storedThrough, appending: true, validUntil: validUntil)
            return [.append(after: storedThrough, token: token, epoch: epoch)]
        case .takingOver(let token, let position, let validUntil):
            guard local.lastSequence >= position.lastSequence else { return [] }
            self.state = .owning(
                token: token, epoch: position.epoch, storedThrough: position.lastSequence, appending: false, validUntil: validUntil)
            return [.stopFollowing, .openOrigin(resumeID: position.lastEventID ?? local.lastEventID,
                                                nextSequence: position.lastSequence + 1, epoch: position.epoch),
                    .note(.becameOwner)]
        default:
            return []
        }
    }

    /// The owner's write came back; `storedThrough` is what it covered.
    mutating func appendAnswered(_ result: HistoryAppend, storedThrough: UInt64, now: NIODeadline, local: Local) -> [Action] {
        guard case .owning(let token, let epoch, _, _, let validUntil) = self.state else { return [] }
        switch result {
        case .stored:
            self.state = .owning(token: token, epoch: epoch, storedThrough: storedThrough, appending: false, validUntil: validUntil)
            return self.eventsArrived(local: local)
        case .notOwner:
            // Fenced: someone else owns the stream now. Stop reading the origin and find out.
            self.state = .claiming(originRunning: false, startFresh: false)
            return [.stopOrigin, .claim(startFresh: false, nextSequence: local.lastSequence + 1)]
        case .unavailable(let reason):
            return self.fallBack(reason, now: now, originRunning: true, local: local)
        }
    }

    /// The stream's one check timer: renew, look at the lease, or retry the store.
    mutating func checkTimerFired(now: NIODeadline, local: Local) -> [Action] {
        switch self.state {
        case .owning(let token, _, _, _, _), .takingOver(let token, _, _):
            return [.renew(token: token)]
        case .following(let epoch):
            // The owner may be gone: a claim takes the lease only if it is free.
            self.state = .checkingLease(epoch: epoch)
            return [.claim(startFresh: false, nextSequence: local.lastSequence + 1)]
        case .fallback(let retryAt) where now >= retryAt:
            self.state = .claiming(originRunning: true, startFresh: false)
            return [.claim(startFresh: false, nextSequence: local.lastSequence + 1)]
        default:
            return []
        }
    }

    mutating func renewAnswered(_ renewed: Bool?, sentAt: NIODeadline, now: NIODeadline, local: Local) -> [Action] {
        switch (self.state, renewed) {
        case (.owning(let token, let epoch, let stored, let appending, _), true):
            self.state = .owning(token: token, epoch: epoch, storedThrough: stored, appending: appending,
                                 validUntil: sentAt + self.timing.lease)
            return []
        case (.takingOver(let token, let position, _), true):
            self.state = .takingOver(token: token, position: position, validUntil: sentAt + self.timing.lease)
            return []
        case (.owning, false), (.takingOver, false):
            let wasOwning: Bool
            if case .owning = self.state { wasOwning = true } else { wasOwning = false }
            self.state = .claiming(originRunning: false, startFresh: false)
            return (wasOwning ? [.stopOrigin] : [.stopFollowing]) + [.claim(startFresh: false, nextSequence: local.lastSequence + 1)]
        case (.owning, nil):
            return self.fallBack("the store did not answer a lease renewal", now: now, originRunning: true, local: local)
        case (.takingOver, nil):
            return [.stopFollowing] + self.fallBack("the store did not answer a lease renewal", now: now, originRunning: false, local: local)
        default:
            return []
        }
    }

    /// The answer to a claim. `openerResumeID`: the id the stream was opened for, used when
    /// nothing is known yet.
    mutating func claimAnswered(_ claim: HistoryClaim, now: NIODeadline, local: Local, openerResumeID: String?) -> [Action] {
        if case .checkingLease(let epoch) = self.state {
            return self.leaseChecked(claim, following: epoch, now: now, local: local)
        }
        guard case .claiming(let originRunning, let startedFresh) = self.state else {
            // Ended meanwhile: give back a lease we were just given.
            if case .owner(let token, _) = claim { return [.release(token: token)] }
            return []
        }
        let validUntil = now + self.timing.lease
        if case .unavailable = claim {} else { self.failures = 0 }
        switch claim {
        case .owner(let token, let position):
            let sameSpace = position.epoch == self.localEpoch || (startedFresh && position.lastSequence == local.lastSequence)
            let nothingLocal = local.lastSequence == 0 && self.localEpoch == nil
            if nothingLocal || (sameSpace && local.lastSequence <= position.lastSequence) {
                self.localEpoch = position.epoch
                if local.lastSequence < position.lastSequence && !nothingLocal {
                    // Catch up on the history first; the origin opens from its last id.
                    self.state = .takingOver(token: token, position: position, validUntil: validUntil)
                    return (originRunning ? [.stopOrigin] : []) + [.follow(after: local.lastSequence, epoch: position.epoch, resetRing: false)]
                }
                self.state = .owning(token: token, epoch: position.epoch, storedThrough: position.lastSequence,
                                     appending: false, validUntil: validUntil)
                if originRunning && !nothingLocal {
                    // Our connection is exactly where the history ends: it goes on as the owner's.
                    return [.note(.becameOwner)]
                }
                var actions: [Action] = []
                if originRunning { actions.append(.stopOrigin) }
                let resumeID = nothingLocal ? (position.lastEventID ?? openerResumeID) : (position.lastEventID ?? local.lastEventID)
                actions.append(.openOrigin(resumeID: resumeID, nextSequence: position.lastSequence + 1, epoch: position.epoch))
                actions.append(.note(.becameOwner))
                return actions
            }
            if sameSpace, let first = local.firstHeldSequence, first <= position.lastSequence + 1 {
                // We are ahead of the history (events we took but could not store): keep our
                // connection, store what the history lacks.
                self.localEpoch = position.epoch
                self.state = .owning(token: token, epoch: position.epoch, storedThrough: position.lastSequence,
                                     appending: false, validUntil: validUntil)
                var actions: [Action] = originRunning ? [] : [.openOrigin(resumeID: local.lastEventID,
                                                                          nextSequence: local.lastSequence + 1, epoch: position.epoch)]
                actions.append(.note(.becameOwner))
                return actions + self.eventsArrived(local: local)
            }
            // The history is in a space we are not numbered in: start a fresh epoch from our own
            // numbering (what it held was lost or is another lineage's).
            self.state = .claiming(originRunning: originRunning, startFresh: true)
            return [.release(token: token), .claim(startFresh: true, nextSequence: local.lastSequence + 1)]
        case .follower(_, let position, _):
            let nothingLocal = local.lastSequence == 0 && self.localEpoch == nil
            if nothingLocal {
                self.localEpoch = position.epoch
                self.state = .following(epoch: position.epoch)
                return [.follow(after: position.lastSequence, epoch: position.epoch, resetRing: false), .note(.becameFollower)]
            }
            if position.epoch == self.localEpoch, local.lastSequence <= position.lastSequence {
                self.state = .following(epoch: position.epoch)
                return (originRunning ? [.stopOrigin] : []) + [.follow(after: local.lastSequence, epoch: position.epoch, resetRing: false)]
                    + [.note(.becameFollower)]
            }
            // Our events are numbered in another space: move onto the history only where it holds
            // the last id we delivered.
            guard let lastEventID = local.lastEventID, !lastEventID.isEmpty else {
                return self.fallBack("the shared history does not continue this stream", now: now, originRunning: originRunning, local: local)
            }
            self.state = .rejoining
            return (originRunning ? [.stopOrigin] : []) + [.lookUp(lastEventID: lastEventID)]
        case .unavailable(let reason):
            return self.fallBack(reason, now: now, originRunning: originRunning, local: local, openerResumeID: openerResumeID)
        }
    }

    /// The answer to a follower's look at the lease; the follow runs on meanwhile.
    private mutating func leaseChecked(_ claim: HistoryClaim, following epoch: String, now: NIODeadline, local: Local) -> [Action] {
        switch claim {
        case .owner(let token, let position) where position.epoch == epoch:
            // The owner is gone and the lease is ours: take over once we have all it stored.
            let validUntil = now + self.timing.lease
            if local.lastSequence < position.lastSequence {
                self.state = .takingOver(token: token, position: position, validUntil: validUntil)
                return []
            }
            self.state = .owning(token: token, epoch: epoch, storedThrough: position.lastSequence, appending: false,
                                 validUntil: validUntil)
            return [.stopFollowing,
                    .openOrigin(resumeID: position.lastEventID ?? local.lastEventID, nextSequence: position.lastSequence + 1, epoch: epoch),
                    .note(.becameOwner)]
        case .owner(let token, _):
            // The history was reset under us: give the lease back and look again as a newcomer.
            self.state = .claiming(originRunning: false, startFresh: false)
            return [.stopFollowing, .release(token: token), .claim(startFresh: false, nextSequence: local.lastSequence + 1)]
        case .follower(_, let position, _) where position.epoch == epoch:
            self.state = .following(epoch: epoch)
            return []
        case .follower:
            guard let lastEventID = local.lastEventID, !lastEventID.isEmpty else {
                return [.stopFollowing] + self.fallBack("the shared history was reset", now: now, originRunning: false, local: local)
            }
            self.state = .rejoining
            return [.stopFollowing, .lookUp(lastEventID: lastEventID)]
        case .unavailable:
            // The follow's own connection tells whether the store is down.
            self.state = .following(epoch: epoch)
            return []
        }
    }

    /// The answer to a rejoin's lookup.
    mutating func lookUpAnswered(_ lookup: HistoryLookup, now: NIODeadline, local: Local) -> [Action] {
        guard case .rejoining = self.state else { return [] }
        switch lookup {
        case .hit(let epoch, let matchedSequence, _):
            self.failures = 0
            self.localEpoch = epoch
            self.state = .following(epoch: epoch)
            return [.follow(after: matchedSequence, epoch: epoch, resetRing: true), .note(.rejoined)]
        case .miss:
            return self.fallBack("the shared history does not hold this stream's last id yet", now: now, originRunning: false, local: local)
        case .unavailable(let reason):
            return self.fallBack(reason, now: now, originRunning: false, local: local)
        }
    }

    /// The follow of the history broke.
    mutating func followFailed(_ reason: String, now: NIODeadline, local: Local) -> [Action] {
        switch self.state {
        case .following, .checkingLease, .takingOver:
            return [.stopFollowing] + self.fallBack(reason, now: now, originRunning: false, local: local)
        default:
            return []
        }
    }

    /// The stream ended: the lease goes back.
    mutating func streamEnded() -> [Action] {
        defer { self.state = .ended }
        switch self.state {
        case .owning(let token, _, _, _, _), .takingOver(let token, _, _):
            return [.release(token: token)]
        default:
            return []
        }
    }

    private mutating func fallBack(
        _ reason: String, now: NIODeadline, originRunning: Bool, local: Local, openerResumeID: String? = nil
    ) -> [Action] {
        let attempt = self.failures
        self.failures += 1
        let delay = Self.backoff(attempt: attempt, timing: self.timing)
        self.state = .fallback(retryAt: now + delay)
        var actions: [Action] = []
        if !originRunning {
            // On our own from here: our numbering, resuming from what we delivered.
            self.localEpoch = nil
            let resumeID = local.lastSequence == 0 ? openerResumeID : local.lastEventID
            actions.append(.openOrigin(resumeID: resumeID, nextSequence: local.lastSequence + 1, epoch: nil))
        } else {
            self.localEpoch = nil
        }
        actions.append(.note(.fellBack(reason)))
        return actions
    }

    /// Doubling from `retryMin` up to `retryMax`.
    static func backoff(attempt: Int, timing: Timing) -> TimeAmount {
        let factor = Int64(1) << Int64(min(attempt, 16))
        return .nanoseconds(min(timing.retryMax.nanoseconds, timing.retryMin.nanoseconds * factor))
    }

    /// For the status page and metrics.
    var role: SharedRole {
        switch self.state {
        case .standalone: return .standalone
        case .owning, .takingOver: return .owner
        case .following, .checkingLease: return .follower
        case .fallback, .claiming(originRunning: true, _): return .fallback
        case .claiming, .rejoining, .ended: return .deciding
        }
    }
}

/// A stream's part in a shared gateway, as operators see it.
public enum SharedRole: String, Sendable, CaseIterable {
    /// No shared store.
    case standalone
    /// This instance holds the origin connection and writes the history.
    case owner
    /// Another instance does; this one follows the history.
    case follower
    /// The store is unreachable: this instance reads the origin itself.
    case fallback
    /// Asking the store.
    case deciding
}
