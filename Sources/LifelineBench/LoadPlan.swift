import NIOCore

/// Where the load goes: `http://HOST:PORT/PATH` or `https://...`, with `{k}` in the path standing
/// for the stream number.
struct LoadTarget: Sendable {
    var isTLS: Bool
    var host: String
    var port: Int
    /// The path before and after `{k}` (the whole path in `pathHead` when there is no `{k}`).
    var pathHead: String
    var pathTail: String
    var hasStreamPlaceholder: Bool

    /// The Host header / :authority.
    var authority: String {
        let defaultPort = self.isTLS ? 443 : 80
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return self.port == defaultPort ? host : "\(host):\(self.port)"
    }

    func path(stream: Int) -> String {
        self.hasStreamPlaceholder ? "\(self.pathHead)\(stream)\(self.pathTail)" : self.pathHead
    }

    static func parse(_ url: String) throws(UsageError) -> LoadTarget {
        let isTLS: Bool
        var rest: Substring
        if url.hasPrefix("http://") {
            isTLS = false
            rest = url.dropFirst(7)
        } else if url.hasPrefix("https://") {
            isTLS = true
            rest = url.dropFirst(8)
        } else {
            throw UsageError("--url: expected http://HOST:PORT/PATH or https://..., got \"\(url)\"")
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        rest = rest[slash...]
        var path = rest.isEmpty ? "/" : String(rest)
        if let fragment = path.firstIndex(of: "#") {
            path = String(path[..<fragment])
        }
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw UsageError("--url: missing \"]\" in \"\(url)\"") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        guard !host.isEmpty else { throw UsageError("--url: no host in \"\(url)\"") }
        var port = isTLS ? 443 : 80
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw UsageError("--url: bad port \"\(portText)\" in \"\(url)\"")
            }
            port = value
        }
        // `{k}` splits the path; without it every connection asks for the same path.
        var head = path
        var tail = ""
        var hasPlaceholder = false
        let characters = Array(path)
        if characters.count >= 3 {
            for start in 0...(characters.count - 3) where characters[start] == "{" && characters[start + 1] == "k"
                && characters[start + 2] == "}"
            {
                head = String(characters[..<start])
                tail = String(characters[(start + 3)...])
                hasPlaceholder = true
                break
            }
        }
        return LoadTarget(
            isTLS: isTLS, host: String(host), port: port, pathHead: head, pathTail: tail,
            hasStreamPlaceholder: hasPlaceholder)
    }
}

enum LoadProtocol: String, Sendable {
    case http1, h2c, h2
}

/// Everything a load run needs, fixed before it starts.
struct LoadPlan: Sendable {
    var target: LoadTarget
    var address: SocketAddress
    var proto: LoadProtocol
    /// Connections over all shards.
    var totalConnections: Int
    var streams: Int
    var multiplex: Int
    var shard: Shard
    var durationNanoseconds: Int64
    var rampNanoseconds: Int64
    var sourceAddresses: [SocketAddress]
    var reconnect: Bool
    var reconnectDelayNanoseconds: Int64
    var connectTimeoutNanoseconds: Int64
    /// `--storm-at` / `--storm-at-epoch`: the wall-clock moment (ns since the epoch) every streaming
    /// subscription drops its connection and comes back at once with Last-Event-ID; nil: no storm.
    /// Wall clock, so that several load processes storm at the same moment.
    var stormAtWallNanoseconds: Int64? = nil

    /// Whether requests carry `Last-Event-ID`: a run that reconnects, and a storm's come-back.
    var sendsLastEventID: Bool {
        self.reconnect || self.stormAtWallNanoseconds != nil
    }

    /// For progress lines: the protocol and whether it runs over TLS.
    var protocolDescription: String {
        switch self.proto {
        case .http1: self.target.isTLS ? "http1 over TLS" : "http1"
        case .h2c, .h2: self.proto.rawValue
        }
    }

    /// The global numbers of the connections this process opens.
    var shardConnections: StrideTo<Int> {
        stride(from: self.shard.index, to: self.totalConnections, by: self.shard.count)
    }

    var shardConnectionCount: Int {
        self.totalConnections > self.shard.index
            ? (self.totalConnections - self.shard.index + self.shard.count - 1) / self.shard.count : 0
    }

    /// The stream number of subscription `request` (0..<multiplex) on connection `connection`:
    /// consecutive subscriptions go to consecutive streams, so every stream gets its share.
    func stream(connection: Int, request: Int) -> Int {
        (connection &* self.multiplex &+ request) % self.streams
    }

    /// When connection `connection` opens, relative to the start: evenly over the ramp, in global
    /// order, so the shards of one run interleave rather than each ramping its own block.
    func openingOffset(connection: Int) -> Int64 {
        guard self.totalConnections > 1 else { return 0 }
        return Int64(Double(self.rampNanoseconds) * Double(connection) / Double(self.totalConnections))
    }
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) {
        self.description = description
    }
}
