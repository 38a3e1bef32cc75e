/// ALPN protocol lists (RFC 7301): validation, the wire format, and the server's choice.
/// Pure functions, so the parsing of what a client sends is testable without OpenSSL.
enum ALPN {
    /// Validates names and returns each as bytes, in order.
    static func validate(_ protocols: [String]) throws -> [[UInt8]] {
        try protocols.map { name in
            let bytes = Array(name.utf8)
            guard (1...255).contains(bytes.count) else { throw TLSError.invalidALPN(name) }
            return bytes
        }
    }

    /// The wire format: each name prefixed by its one-byte length.
    static func wireFormat(_ protocols: [[UInt8]]) -> [UInt8] {
        var wire: [UInt8] = []
        wire.reserveCapacity(protocols.reduce(0) { $0 + 1 + $1.count })
        for name in protocols {
            wire.append(UInt8(name.count))
            wire.append(contentsOf: name)
        }
        return wire
    }

    /// Server preference: the first of `preferred` that the client offered. Returns the range of
    /// the chosen name inside `offered` (OpenSSL wants a pointer into the client's list), or nil
    /// when nothing overlaps. `offered` comes from the network: a malformed list (a length that
    /// runs past the end, an empty name) matches nothing past the malformed entry.
    static func select(preferred: [[UInt8]], offered: UnsafeRawBufferPointer) -> Range<Int>? {
        for candidate in preferred {
            var index = 0
            while index < offered.count {
                let length = Int(offered[index])
                let start = index + 1
                let end = start + length
                guard length > 0, end <= offered.count else { break }
                if length == candidate.count,
                    candidate.withUnsafeBytes({ $0.elementsEqual(UnsafeRawBufferPointer(rebasing: offered[start..<end])) })
                {
                    return start..<end
                }
                index = end
            }
        }
        return nil
    }
}
