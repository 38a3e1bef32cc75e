/// The server-side scripts of the shared history. Each runs atomically on the server, which is
/// what makes the lease a fence: the append checks the lease's token and writes in one step, so
/// an instance whose lease has passed (paused, partitioned, slow) cannot write, however late
/// its request arrives (Kleppmann, "How to do distributed locking", 2016). KEYS are always one
/// stream's keys, which share a hash slot (`HistoryKeys`).
///
/// Stored entries: id `<sequence>-0`; fields `i` (the event's `id`: empty for none, else `=` and
/// the id), `e` (the encoded event), `t` (store time, ms since 1970, for the age bound), `p`
/// (the epoch, so that a follower never mistakes another lineage's entry for the next one).
/// The meta hash: `epoch`, `seq` (last stored sequence), `lastid` (`=` and the last id carried),
/// `h` (the origin's shared headers, `name: value` lines), `fence` (lease counter).
enum HistoryScripts {
    /// KEYS: lease, meta, history. ARGV: instance, lease ms, start fresh (0/1), new epoch,
    /// next sequence, retention ms.
    /// Returns {1, token, epoch, seq, lastid, headers} when the lease is ours now, or
    /// {0, holder, epoch, seq, lastid, headers} when another instance holds it.
    static let claim = RedisScript(#"""
        local holder = redis.call('GET', KEYS[1])
        local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq', 'lastid', 'h')
        if holder then
          return {0, holder, meta[1] or '', meta[2] or '0', meta[3] or '', meta[4] or ''}
        end
        local fence = redis.call('HINCRBY', KEYS[2], 'fence', 1)
        local token = fence .. '/' .. ARGV[1]
        redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
        local epoch, seq, lastid = meta[1], meta[2], meta[3]
        if (not epoch) or ARGV[3] == '1' then
          epoch = ARGV[4]
          seq = tostring(tonumber(ARGV[5]) - 1)
          lastid = ''
          redis.call('DEL', KEYS[3])
          redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', seq)
          redis.call('HDEL', KEYS[2], 'lastid')
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[6])
        return {1, token, epoch, seq or '0', lastid or '', meta[4] or ''}
        """#)

    /// KEYS: lease, meta, history. ARGV: token, lease ms, retention ms. Returns 1, or 0 when the
    /// lease is not the token's.
    static let renew = RedisScript(#"""
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        redis.call('PEXPIRE', KEYS[2], ARGV[3])
        redis.call('PEXPIRE', KEYS[3], ARGV[3])
        return 1
        """#)

    /// KEYS: lease. ARGV: token.
    static let release = RedisScript(#"""
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
        return 0
        """#)

    /// KEYS: lease, meta, history. ARGV: token, epoch, max events, oldest time kept (ms),
    /// retention ms, headers ('' unchanged), then per event: sequence, id field, bytes, time.
    /// Returns the last stored sequence, or an error: NOTOWNER (fenced), GAP (the batch does
    /// not continue the history).
    static let append = RedisScript(#"""
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then
          return redis.error_reply('NOTOWNER the lease is not this token\'s')
        end
        if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then
          return redis.error_reply('NOTOWNER the history is of another epoch')
        end
        local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
        local lastid = nil
        for i = 7, #ARGV, 4 do
          local s = tonumber(ARGV[i])
          if s > seq then
            if s ~= seq + 1 then
              return redis.error_reply('GAP the history ends at ' .. seq .. ', the batch goes on at ' .. s)
            end
            redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], ARGV[i] .. '-0',
                       'i', ARGV[i + 1], 'e', ARGV[i + 2], 't', ARGV[i + 3], 'p', ARGV[2])
            seq = s
            if ARGV[i + 1] ~= '' then lastid = ARGV[i + 1] end
          end
        end
        redis.call('HSET', KEYS[2], 'seq', tostring(seq))
        if lastid then redis.call('HSET', KEYS[2], 'lastid', lastid) end
        if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'h', ARGV[6]) end
        local minTime = tonumber(ARGV[4])
        local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
        if oldest[1] and tonumber(oldest[1][2][6]) < minTime then
          local cursor = '-'
          while true do
            local page = redis.call('XRANGE', KEYS[3], cursor, '+', 'COUNT', 100)
            if #page == 0 then break end
            local keep = nil
            for _, entry in ipairs(page) do
              if tonumber(entry[2][6]) >= minTime then keep = entry[1] break end
            end
            if keep then redis.call('XTRIM', KEYS[3], 'MINID', keep) break end
            cursor = '(' .. page[#page][1]
          end
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[5])
        redis.call('PEXPIRE', KEYS[3], ARGV[5])
        return seq
        """#)

    /// KEYS: meta, history. ARGV: id field (`=` and the id). Looks for the newest entry that
    /// carried the id. Returns {1, epoch, entry id, entries after it} or {0, epoch}.
    static let lookup = RedisScript(#"""
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then return {0, ''} end
        local cursor = '+'
        while true do
          local page = redis.call('XREVRANGE', KEYS[2], cursor, '-', 'COUNT', 200)
          if #page == 0 then return {0, epoch} end
          for _, entry in ipairs(page) do
            if entry[2][2] == ARGV[1] then
              return {1, epoch, entry[1], redis.call('XRANGE', KEYS[2], '(' .. entry[1], '+')}
            end
          end
          cursor = '(' .. page[#page][1]
        end
        """#)
}
