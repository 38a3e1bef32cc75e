import LifelineCore
import NIOConcurrencyHelpers

/// The private generations that can be resumed (`Lifeline-Resume`), by token: each with the
/// credentials of the caller that started it and the request it answered. Any loop may look a
/// token up; the generation's stream is then joined through its thread-safe `attach`. Sharded
/// locks, as the hub's: no lock is shared by every request.
final class GenerationRegistry: Sendable {
    struct Entry: Sendable {
        let stream: EventStream
        let credentials: CallerCredentials
        /// The request that started the generation, for the resumes' access log and status.
        let request: ClientRequest
    }

    private static let shardCount = 16
    private let shards: [NIOLockedValueBox<[ResumeToken: Entry]>] = (0..<GenerationRegistry.shardCount).map { _ in
        NIOLockedValueBox([:])
    }

    private func shard(_ token: ResumeToken) -> NIOLockedValueBox<[ResumeToken: Entry]> {
        self.shards[Int(UInt(bitPattern: token.hashValue) % UInt(Self.shardCount))]
    }

    func register(_ entry: Entry, as token: ResumeToken) {
        self.shard(token).withLockedValue { $0[token] = entry }
    }

    func remove(_ token: ResumeToken) {
        self.shard(token).withLockedValue { _ = $0.removeValue(forKey: token) }
    }

    /// The generation `token` names, if `credentials` are its caller's; nil otherwise (the same
    /// answer for an unknown token and another caller's, so that it is no oracle).
    func generation(_ token: ResumeToken, for credentials: CallerCredentials) -> Entry? {
        guard let entry = self.shard(token).withLockedValue({ $0[token] }), entry.credentials == credentials else {
            return nil
        }
        return entry
    }

    var count: Int { self.shards.reduce(0) { $0 + $1.withLockedValue { $0.count } } }
}
