import LifelineCore

/// One stream's keys in Redis. The name is already a keyed hash of the stream key (no URL,
/// credential or cookie reaches Redis); the braces make it the hash tag, so that the lease, the
/// meta hash and the history share one Redis Cluster slot and one script can touch all three.
struct HistoryKeys: Sendable, Equatable {
    let lease: String
    let meta: String
    let history: String
    /// The part Redis Cluster hashes (`{…}`).
    let hashTag: String

    init(_ name: SharedStreamName, prefix: String = "lifeline") {
        self.hashTag = name.value
        let base = "\(prefix):{\(name.value)}"
        self.lease = base + ":lease"
        self.meta = base + ":meta"
        self.history = base + ":events"
    }
}
