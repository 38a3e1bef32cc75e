/// The server-side scripts that keep private generations (`GenerationKeys`). KEYS are always one
/// generation's two keys, which share a hash slot.
///
/// The facts hash: `a` and `k` (keyed hashes of the caller's `Authorization` and `Cookie`, empty
/// when it carried none), `h` (response headers, `name: value` lines), `d` (display path), `r`
/// (route prefix), `m` (method), `o` (recording instance), `s` (`r` running, `c` finished, `b`
/// broke off). The events stream: entries `<sequence>-0` with `i` (id field, as the shared
/// history's) and `e` (the encoded event); the end is one entry `<last sequence>-1` with `x`
/// (`c` or `b`), so that a reader meets it in order, after the last event.
///
/// While the generation runs, both keys live a short time (the liveness TTL) and its recorder
/// extends them; a recorder that is gone (its instance died) lets them expire, which readers
/// take as a break. Once it ended, they live for the resume window.
enum GenerationScripts {
    /// KEYS: facts, events. ARGV: ttl ms, a, k, h, d, r, m, o.
    static let start = RedisScript(#"""
        redis.call('DEL', KEYS[1], KEYS[2])
        redis.call('HSET', KEYS[1], 'a', ARGV[2], 'k', ARGV[3], 'h', ARGV[4], 'd', ARGV[5], 'r', ARGV[6],
          'm', ARGV[7], 'o', ARGV[8], 's', 'r')
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        return 1
        """#)

    /// KEYS: facts, events. ARGV: ttl ms, oldest sequence kept, then per event: sequence, id
    /// field, bytes. Returns 1, or the error GONE when the generation is not kept any more.
    static let append = RedisScript(#"""
        if redis.call('HGET', KEYS[1], 's') ~= 'r' then return redis.error_reply('GONE not kept') end
        for i = 3, #ARGV, 3 do
          redis.call('XADD', KEYS[2], ARGV[i] .. '-0', 'i', ARGV[i + 1], 'e', ARGV[i + 2])
        end
        if tonumber(ARGV[2]) > 1 then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2] .. '-0') end
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        redis.call('PEXPIRE', KEYS[2], ARGV[1])
        return 1
        """#)

    /// KEYS: facts, events. ARGV: ttl ms. Extends a running generation's life; 0 when it is not
    /// running (any more).
    static let touch = RedisScript(#"""
        if redis.call('HGET', KEYS[1], 's') ~= 'r' then return 0 end
        redis.call('PEXPIRE', KEYS[1], ARGV[1])
        redis.call('PEXPIRE', KEYS[2], ARGV[1])
        return 1
        """#)

    /// KEYS: facts, events. ARGV: `c` or `b`, last sequence, resume window ms.
    static let finish = RedisScript(#"""
        if redis.call('HGET', KEYS[1], 's') ~= 'r' then return 0 end
        redis.call('XADD', KEYS[2], ARGV[2] .. '-1', 'x', ARGV[1])
        redis.call('HSET', KEYS[1], 's', ARGV[1])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        redis.call('PEXPIRE', KEYS[2], ARGV[3])
        return 1
        """#)

    /// KEYS: facts, events. Returns {} when not kept, else {facts (flat field/value list), the
    /// facts' PTTL ms, the entries}.
    static let open = RedisScript(#"""
        local facts = redis.call('HGETALL', KEYS[1])
        if #facts == 0 then return {} end
        return {facts, redis.call('PTTL', KEYS[1]), redis.call('XRANGE', KEYS[2], '-', '+')}
        """#)
}

/// One private generation's keys: the braces make the keyed name the hash tag (one slot).
struct GenerationKeys: Sendable, Equatable {
    let facts: String
    let events: String

    init(_ name: String, prefix: String) {
        let base = "\(prefix):{\(name)}"
        self.facts = base + ":gen"
        self.events = base + ":genevents"
    }

    var both: [String] { [self.facts, self.events] }
}
