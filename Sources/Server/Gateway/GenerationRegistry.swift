import LifelineCore
import NIOConcurrencyHelpers
import NIOHTTP1

extension CallerCredentials {
    /// The credentials `head` carries: every line of its `Authorization` and `Cookie`.
    init(of head: HTTPRequestHead) {
        self.init(CallerHeaders(of: head))
    }
}

extension CallerHeaders {
    /// The credentials `head` carries, as they came (for the store of kept generations).
    init(of head: HTTPRequestHead) {
        func joined(_ name: String) -> String? {
            let values = head.headers[name]
            return values.isEmpty ? nil : values.joined(separator: ", ")
        }
        self.init(authorization: joined("authorization"), cookie: joined("cookie"))
    }
}

extension CallerCredentials {
    init(_ headers: CallerHeaders) {
        self.init(authorization: headers.authorization, cookie: headers.cookie)
    }
}

extension ArchivedGeneration {
    /// The request that started the generation as far as the archive knows it, for this
    /// instance's router: its method and path (not its query, whose values the archive keeps
    /// masked), with the resume's headers.
    func startingHead(_ resume: HTTPRequestHead) -> HTTPRequestHead {
        let path = self.facts.displayPath.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        return HTTPRequestHead(version: resume.version, method: HTTPMethod(rawValue: self.facts.method), uri: path, headers: resume.headers)
    }
}

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

    /// Ended generations kept for resumes, oldest first, with the bytes each keeps.
    private let kept = NIOLockedValueBox<(queue: [(token: ResumeToken, bytes: Int)], bytes: Int)>(([], 0))

    /// A generation ended and keeps `bytes` for resumes; over `limit` in all, the ones that ended
    /// first are forgotten.
    func generationEnded(_ token: ResumeToken, keeping bytes: Int, limit: Int) {
        let forget: [ResumeToken] = self.kept.withLockedValue { kept in
            kept.queue.append((token, bytes))
            kept.bytes += bytes
            var dropped: [ResumeToken] = []
            while kept.bytes > limit, !kept.queue.isEmpty {
                let oldest = kept.queue.removeFirst()
                kept.bytes -= oldest.bytes
                dropped.append(oldest.token)
            }
            return dropped
        }
        for token in forget {
            let entry = self.shard(token).withLockedValue { $0.removeValue(forKey: token) }
            entry?.stream.forgetKept()
        }
    }

    /// Bytes the ended generations keep now.
    var keptBytes: Int { self.kept.withLockedValue { $0.bytes } }

    func register(_ entry: Entry, as token: ResumeToken) {
        self.shard(token).withLockedValue { $0[token] = entry }
    }

    func remove(_ token: ResumeToken) {
        self.shard(token).withLockedValue { _ = $0.removeValue(forKey: token) }
        self.kept.withLockedValue { kept in
            if let index = kept.queue.firstIndex(where: { $0.token == token }) {
                kept.bytes -= kept.queue.remove(at: index).bytes
            }
        }
    }

    /// The generation `token` names, if `credentials` are its caller's; nil otherwise (the same
    /// answer for an unknown token and another caller's, so that it is no oracle).
    func generation(_ token: ResumeToken, for credentials: CallerCredentials) -> Entry? {
        guard let entry = self.shard(token).withLockedValue({ $0[token] }), entry.credentials.admits(credentials) else {
            return nil
        }
        return entry
    }

    var count: Int { self.shards.reduce(0) { $0 + $1.withLockedValue { $0.count } } }
}
