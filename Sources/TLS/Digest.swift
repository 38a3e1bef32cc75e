import COpenSSL

/// OpenSSL's digests and HMAC for the rest of the gateway (which keeps no C interop of its own):
/// script digests for Redis (`EVALSHA`) and the keyed hash that names streams in the shared store.
public enum Digest {
    /// SHA-1 of `bytes` as 40 lowercase hex digits (what Redis names a script by; not a security use).
    public static func sha1Hex(_ bytes: [UInt8]) -> String {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            EVP_Digest(input.baseAddress, input.count, &output, &length, EVP_sha1(), nil)
        }
        precondition(ok == 1, "EVP_Digest(SHA-1) failed")
        return hex(output.prefix(Int(length)))
    }

    /// SHA-256 of `bytes` (raw, 32 bytes).
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = EVP_Digest(bytes.baseAddress, bytes.count, &output, &length, EVP_sha256(), nil)
        precondition(ok == 1, "EVP_Digest(SHA-256) failed")
        return Array(output.prefix(Int(length)))
    }

    /// HMAC-SHA-256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: 32)
        var length = 0
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { messageBytes in
                EVP_Q_mac(nil, "HMAC", nil, "SHA256", nil,
                          keyBytes.baseAddress, keyBytes.count, messageBytes.baseAddress, messageBytes.count,
                          &output, output.count, &length)
            }
        }
        precondition(result != nil && length == 32, "EVP_Q_mac(HMAC-SHA-256) failed")
        return output
    }

    public static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
