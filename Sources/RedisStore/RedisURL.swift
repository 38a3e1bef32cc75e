import Redis

/// `--redis=URL`: `redis://[user:password@]HOST:PORT[/DB]`, `rediss://…` (TLS), and
/// `redis+cluster://HOST:PORT[,HOST:PORT…]` / `rediss+cluster://…` (seed nodes of a Redis
/// Cluster). The password may also come from `--redis-password-file`, which wins.
public struct RedisURL: Sendable, Equatable {
    public var addresses: [RedisAddress]
    public var isCluster: Bool
    public var usesTLS: Bool
    public var username: String?
    public var password: String?
    public var database: Int

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(parsing text: String) throws(ParseError) {
        func fail(_ why: String) -> ParseError {
            ParseError(description: "\(why) (expected redis://[user:password@]HOST:PORT[/DB], rediss://…, or redis+cluster://HOST:PORT[,HOST:PORT…])")
        }
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw fail("no scheme") }
        switch parts[0].lowercased() {
        case "redis": (self.isCluster, self.usesTLS) = (false, false)
        case "rediss": (self.isCluster, self.usesTLS) = (false, true)
        case "redis+cluster": (self.isCluster, self.usesTLS) = (true, false)
        case "rediss+cluster": (self.isCluster, self.usesTLS) = (true, true)
        default: throw fail("unknown scheme \"\(parts[0])\"")
        }
        var rest = parts[1]
        self.username = nil
        self.password = nil
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = String(userInfo[..<colon])
                self.username = user.isEmpty ? nil : try Self.percentDecoded(user, fail)
                self.password = try Self.percentDecoded(String(userInfo[userInfo.index(after: colon)...]), fail)
            } else if !userInfo.isEmpty {
                // `redis://password@host` is how many clients read a lone user-info part.
                self.password = try Self.percentDecoded(String(userInfo), fail)
            }
        }
        self.database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard !self.isCluster else { throw fail("a Redis Cluster has no database number") }
                guard let db = Int(path), db >= 0, db < 1 << 20 else { throw fail("database \"\(path)\" is not a number") }
                self.database = db
            }
        }
        if rest.contains("?") { throw fail("query options are not supported") }
        let hosts = rest.split(separator: ",", omittingEmptySubsequences: false)
        guard !hosts.isEmpty, !(hosts.count > 1 && !self.isCluster) else {
            throw fail("several hosts need redis+cluster://")
        }
        var addresses: [RedisAddress] = []
        for host in hosts { addresses.append(try Self.address(host, fail)) }
        self.addresses = addresses
    }

    /// `text` with the password of its user information replaced by `***` (for `--check` and
    /// logs); text without one is returned as it is.
    public static func redactingPassword(_ text: String) -> String {
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let at = parts[1].lastIndex(of: "@") else { return text }
        let userInfo = parts[1][..<at]
        let user = userInfo.firstIndex(of: ":").map { String(userInfo[..<$0]) + ":" } ?? ""
        return "\(parts[0])://\(user)***\(parts[1][at...])"
    }

    private static func address(_ text: Substring, _ fail: (String) -> ParseError) throws(ParseError) -> RedisAddress {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("unclosed [ in \"\(text)\"") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw fail("bad host \"\(text)\"") }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw fail("no host") }
        var port = 6379
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else { throw fail("bad port \"\(portText)\"") }
            port = value
        }
        return RedisAddress(host: String(host), port: port)
    }

    private static func percentDecoded(_ text: String, _ fail: (String) -> ParseError) throws(ParseError) -> String {
        guard text.contains("%") else { return text }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                throw fail("bad percent-encoding in the user information")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
