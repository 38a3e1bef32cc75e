/// Names streams in a shared store: a keyed hash (HMAC-SHA-256 with the instances' shared
/// secret, `--redis-key-secret-file`) of what makes the stream key, so that every instance names
/// a stream alike while the store sees no URL, credential or cookie, and nobody without the
/// secret can tell which stream a name is or make two names collide.
public struct SharedStreamNamer: Sendable {
    private let keyedHash: @Sendable ([UInt8]) -> [UInt8]

    /// `keyedHash`: the MAC of a message under the shared secret.
    public init(keyedHash: @escaping @Sendable ([UInt8]) -> [UInt8]) {
        self.keyedHash = keyedHash
    }

    public func name(method: String, origin: String, path: String?, query: String?, headerValues: [String?]) -> SharedStreamName {
        // Each part with a presence byte and its length, so that no two different keys make the
        // same message.
        var message: [UInt8] = Array("lifeline-stream-1".utf8)
        func add(_ part: String?) {
            guard let part else { return message.append(0) }
            message.append(1)
            let bytes = Array(part.utf8)
            withUnsafeBytes(of: UInt32(bytes.count).bigEndian) { message.append(contentsOf: $0) }
            message.append(contentsOf: bytes)
        }
        add(method)
        add(origin)
        add(path)
        add(query)
        for value in headerValues { add(value) }
        return SharedStreamName(self.hexDigest(message))
    }

    /// A private generation's name in the store: keyed, so the store holds no usable token.
    public func name(ofGeneration token: ResumeToken) -> SharedStreamName {
        SharedStreamName(self.hexDigest(Array("lifeline-generation-1\u{0}".utf8) + Array(token.value.utf8)))
    }

    /// What the store keeps of a caller's credential (`kind`: which header): a keyed hash, so
    /// that instances can compare credentials without the store holding one.
    public func digest(ofCredential value: String, kind: String) -> String {
        self.hexDigest(Array("lifeline-credential-1\u{0}\(kind)\u{0}".utf8) + Array(value.utf8))
    }

    private func hexDigest(_ message: [UInt8]) -> String {
        // 128 bits are plenty for a name; shorter keys cost Redis less memory.
        let digest = self.keyedHash(message).prefix(16)
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(32)
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
