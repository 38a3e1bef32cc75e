import TLS

/// A server-side Lua script, run by its SHA-1 digest (`EVALSHA`) and sent in full only when the
/// server does not have it yet.
struct RedisScript: Sendable {
    let source: String
    let sha1: String

    init(_ source: String) {
        self.source = source
        self.sha1 = Digest.sha1Hex(Array(source.utf8))
    }
}
