import NIOCore

/// A store of stream histories shared by several gateway instances (Redis, with `--redis`): one
/// instance at a time holds a stream's origin connection under a lease and appends its events;
/// the others follow the history. The core sees it only through these protocols.
public protocol SharedHistoryStore: AnyObject, Sendable {
    /// The handle on `name`'s history for a stream on `eventLoop`; used only there.
    func history(named name: SharedStreamName, on eventLoop: EventLoop) -> StreamHistory
    /// This instance's name in leases (for the status page: who owns what).
    var instanceName: String { get }
    /// Whether the store answered its latest probe (for metrics, `/readyz` and the status page);
    /// callable from any thread.
    var isReachable: Bool { get }
}

/// The name of a stream in the shared store: a keyed hash of its key with a secret the instances
/// share, so that instances agree on it and the store holds no URL, credential or cookie.
public struct SharedStreamName: Sendable, Hashable, CustomStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { self.value }
}

/// Where a shared history stands: its epoch (random per history; a different one means the history
/// was lost or reset) and its last event.
public struct HistoryPosition: Sendable, Equatable {
    public var epoch: String
    /// Sequence of the last stored event (0: none yet).
    public var lastSequence: UInt64
    /// The last `id` the stored events carried: what the origin is reopened with.
    public var lastEventID: String?

    public init(epoch: String, lastSequence: UInt64, lastEventID: String?) {
        self.epoch = epoch
        self.lastSequence = lastSequence
        self.lastEventID = lastEventID
    }
}

/// The answer to a claim on a stream's lease.
public enum HistoryClaim: Sendable {
    /// This instance holds the lease: it opens the origin and appends under `token`.
    case owner(token: String, position: HistoryPosition)
    /// Another instance holds it: follow the history.
    case follower(owner: String, position: HistoryPosition, originHeaders: [(String, String)])
    /// The store could not be asked.
    case unavailable(String)
}

public enum HistoryAppend: Sendable, Equatable {
    case stored
    /// The lease is not this token's any more (it expired, and perhaps another instance took it):
    /// nothing was stored.
    case notOwner
    case unavailable(String)
}

public enum HistoryLookup: Sendable {
    /// The id is in the history of `epoch`, at `sequence`: these are the stored events after it
    /// (possibly none).
    case hit(epoch: String, sequence: UInt64, events: [EncodedEvent])
    /// The history does not hold the id (trimmed, lost, never there).
    case miss
    case unavailable(String)
}

/// One stream's shared history, as its stream uses it. Every call is made on the stream's loop
/// and every completion comes back there.
public protocol StreamHistory: AnyObject {
    /// Takes the lease if it is free. When it is taken and `startFresh` is set (or the history
    /// has no epoch), a new epoch begins with the next event numbered `nextSequence`, and what was
    /// stored is dropped.
    func claim(startFresh: Bool, nextSequence: UInt64, completion: @escaping (HistoryClaim) -> Void)
    /// Extends the lease; true when it was still `token`'s, false when it was not, nil when the
    /// store could not be asked.
    func renew(token: String, completion: @escaping (Bool?) -> Void)
    /// Stores one batch (consecutive sequences) if `token` still holds the lease and `epoch` is
    /// current: checked by the store in the same step as the write.
    func append(
        _ events: [EncodedEvent], token: String, epoch: String, originHeaders: [(String, String)]?,
        completion: @escaping (HistoryAppend) -> Void
    )
    /// Starts delivering the events of `epoch` after `sequence` as they are stored, in order, none
    /// skipped; an event of another epoch breaks the follow.
    func follow(after sequence: UInt64, epoch: String, delegate: HistoryFollowerDelegate) -> HistoryFollowing
    /// The stored events after the one that carried `lastEventID`.
    func events(after lastEventID: String, completion: @escaping (HistoryLookup) -> Void)
    /// Gives the lease up (drain, the stream ended) if `token` still holds it.
    func release(token: String)
}

/// A running follow of a history; `stop` ends it (no callbacks after).
public protocol HistoryFollowing: AnyObject {
    func stop()
}

/// What a stream hears from the follow of its history; on the stream's loop.
public protocol HistoryFollowerDelegate: AnyObject {
    /// Stored events, consecutive, continuing the last delivered one.
    func historyReceived(_ events: [EncodedEvent])
    /// The follow broke (the store is unreachable, or its answer did not continue the history).
    func historyFollowFailed(_ reason: String)
    /// The history is complete: a kept private generation's origin response ended so
    /// (`originFinished`, `originBroke`) after the last delivered event. Shared histories never end.
    func historyEnded(_ reason: StreamEndReason)
}
