import Redis

/// Which master serves each hash slot of a Redis Cluster, from a `CLUSTER SLOTS` reply. Pure.
///
/// Replicas are left out: every command goes to masters. The map is one small node index per
/// slot (32 KiB), so a lookup is one array read and moving one slot (`MOVED`) is one write.
struct ClusterTopology: Sendable, Equatable {
    /// A `CLUSTER SLOTS` reply that is not the documented shape.
    struct ParseError: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    private static let none = UInt16.max
    /// Every address a slot pointed at since the map was made; `slots` holds indices into it.
    private var nodes: [RedisAddress]
    private var slots: [UInt16]

    /// No slot served: what a client knows before its first `CLUSTER SLOTS`.
    init() {
        self.nodes = []
        self.slots = Array(repeating: Self.none, count: ClusterSlot.count)
    }

    /// Parses `CLUSTER SLOTS` (RESP2 or RESP3): an array of `[start, end, master, replica…]`,
    /// each node `[endpoint, port, id, metadata…]`. `askedAt` is the node that answered: an
    /// endpoint that is null or "" means "the host you asked" (with the port given); "?" means
    /// an unknown endpoint, and its slots are left unserved (a later refresh may know it).
    init(parsing reply: RESPToken, askedAt: RedisAddress) throws(ParseError) {
        self.init()
        guard let ranges = reply.array else { throw ParseError(description: "CLUSTER SLOTS answered \(reply), not an array") }
        for range in ranges {
            guard let fields = range.array, fields.count >= 3 else {
                throw ParseError(description: "CLUSTER SLOTS: \(range) is not [start, end, master, …]")
            }
            var field = fields.makeIterator()
            guard let start = field.next()?.int, let end = field.next()?.int,
                  0 <= start, start <= end, end < ClusterSlot.count
            else { throw ParseError(description: "CLUSTER SLOTS: bad slot range in \(range)") }
            guard let master = field.next() else { throw ParseError(description: "CLUSTER SLOTS: no master in \(range)") }
            guard let address = try Self.address(of: master, askedAt: askedAt) else { continue }
            let node = self.index(of: address)
            for slot in Int(start)...Int(end) { self.slots[slot] = node }
        }
    }

    /// One node entry's address; nil for the unknown endpoint "?".
    private static func address(of node: RESPToken, askedAt: RedisAddress) throws(ParseError) -> RedisAddress? {
        guard let fields = node.array, fields.count >= 2 else {
            throw ParseError(description: "CLUSTER SLOTS: node \(node) is not [endpoint, port, …]")
        }
        var field = fields.makeIterator()
        guard let endpoint = field.next(), let port = field.next()?.int, (1...65535).contains(port) else {
            throw ParseError(description: "CLUSTER SLOTS: bad port in node \(node)")
        }
        let host: String
        if endpoint.isNull {
            host = askedAt.host
        } else if let text = endpoint.string {
            if text == "?" { return nil }
            host = text.isEmpty ? askedAt.host : text
        } else {
            throw ParseError(description: "CLUSTER SLOTS: bad endpoint in node \(node)")
        }
        return RedisAddress(host: host, port: Int(port))
    }

    private mutating func index(of address: RedisAddress) -> UInt16 {
        if let index = self.nodes.firstIndex(of: address) { return UInt16(index) }
        self.nodes.append(address)
        return UInt16(self.nodes.count - 1)
    }

    func master(forSlot slot: Int) -> RedisAddress? {
        guard self.slots.indices.contains(slot) else { return nil }
        let node = self.slots[slot]
        return node == Self.none ? nil : self.nodes[Int(node)]
    }

    /// The nodes that serve at least one slot.
    var masters: Set<RedisAddress> {
        var used = [Bool](repeating: false, count: self.nodes.count)
        for node in self.slots where node != Self.none { used[Int(node)] = true }
        return Set(self.nodes.indices.lazy.filter { used[$0] }.map { self.nodes[$0] })
    }

    /// How many slots have a master.
    var servedSlots: Int { self.slots.lazy.filter { $0 != Self.none }.count }

    /// Moves one slot (after `MOVED`), until the next `CLUSTER SLOTS` says the whole truth.
    mutating func assign(slot: Int, to address: RedisAddress) {
        guard self.slots.indices.contains(slot) else { return }
        // Node indices fit in UInt16: a cluster has at most a few thousand nodes, and the list is
        // rebuilt from scratch on each refresh. Past that, the slot is left as it was.
        guard self.nodes.contains(address) || self.nodes.count < Int(Self.none) else { return }
        self.slots[slot] = self.index(of: address)
    }
}

/// A Redis Cluster redirection: `MOVED <slot> <host>:<port>` (the slot has a new master: ask it
/// from now on) or `ASK <slot> <host>:<port>` (the slot is being migrated and this key is already
/// there: ask once, after `ASKING`). Pure.
enum ClusterRedirect: Equatable {
    case moved(slot: Int, to: RedisAddress)
    case ask(slot: Int, to: RedisAddress)

    /// Parses an error reply's message; nil when it is not a redirection, or one without a usable
    /// address. An empty host (`MOVED 3999 :6380`) means the host of `askedAt`. The host is as
    /// Redis writes it (an IPv6 address without brackets: `::1:6381`); brackets are accepted too.
    init?(errorMessage message: String, askedAt: RedisAddress) {
        let words = message.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 3, let slot = Int(words[1]), (0..<ClusterSlot.count).contains(slot),
              let colon = words[2].lastIndex(of: ":"),
              let port = Int(words[2][words[2].index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = words[2][..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard host != "?" else { return nil }
        let address = RedisAddress(host: host.isEmpty ? askedAt.host : String(host), port: port)
        switch words[0] {
        case "MOVED": self = .moved(slot: slot, to: address)
        case "ASK": self = .ask(slot: slot, to: address)
        default: return nil
        }
    }

    var slot: Int {
        switch self {
        case .moved(let slot, _), .ask(let slot, _): return slot
        }
    }

    var address: RedisAddress {
        switch self {
        case .moved(_, let address), .ask(_, let address): return address
        }
    }
}
