import LifelineCore
import NIOConcurrencyHelpers

/// Requests with an `Idempotency-Key` (IETF draft-ietf-httpapi-idempotency-key-header) and what
/// became of them: a retry of the same request (same caller, route, key and body) joins the first
/// one's private generation instead of running a second. Sharded locks; any loop may ask.
final class IdempotencyRegistry: Sendable {
    /// Whose key it is: another caller's (or another route's) key is a key of its own.
    struct Key: Hashable, Sendable {
        let credentials: CallerCredentials
        let route: String
        let value: String
    }

    enum Entry: Sendable {
        /// Sent to the origin; its answer has not come yet.
        case pending(bodyDigest: [UInt8])
        /// Answered with a private generation, still running or kept for resumes.
        case generation(EventStream, bodyDigest: [UInt8])
    }

    enum Lookup {
        /// A new key: the caller sends the request (and reports its outcome).
        case new
        /// The same request: join this generation.
        case join(EventStream)
        case inProgress
        case otherBody
    }

    private static let shardCount = 16
    private let shards: [NIOLockedValueBox<[Key: Entry]>] = (0..<IdempotencyRegistry.shardCount).map { _ in NIOLockedValueBox([:]) }

    private func shard(_ key: Key) -> NIOLockedValueBox<[Key: Entry]> {
        self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(Self.shardCount))]
    }

    /// Looks `key` up and, when it is new, records it as pending, in one step.
    func begin(_ key: Key, bodyDigest: [UInt8]) -> Lookup {
        self.shard(key).withLockedValue { entries in
            switch entries[key] {
            case nil:
                entries[key] = .pending(bodyDigest: bodyDigest)
                return .new
            case .pending(let digest):
                return digest == bodyDigest ? .inProgress : .otherBody
            case .generation(let stream, let digest):
                return digest == bodyDigest ? .join(stream) : .otherBody
            }
        }
    }

    /// The request's answer became a private generation.
    func answered(_ key: Key, with stream: EventStream) {
        self.shard(key).withLockedValue { entries in
            if case .pending(let digest) = entries[key] {
                entries[key] = .generation(stream, bodyDigest: digest)
            }
        }
    }

    /// The request ended without a generation, or its generation is forgotten: the key is free.
    func forget(_ key: Key) {
        self.shard(key).withLockedValue { _ = $0.removeValue(forKey: key) }
    }

    var count: Int { self.shards.reduce(0) { $0 + $1.withLockedValue { $0.count } } }
}
