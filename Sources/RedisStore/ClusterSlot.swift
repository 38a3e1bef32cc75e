/// Which of Redis Cluster's 16384 hash slots a key belongs to: CRC16 (XMODEM: polynomial
/// 0x1021, initial value 0, no reflection) of the key, or of its hash tag, modulo 16384.
///
/// The hash tag is what lies between the first `{` and the first `}` after it, when that is not
/// empty: `lifeline:{h}:lease` and `lifeline:{h}:events` share a slot, so one script may touch
/// both. Pure.
enum ClusterSlot {
    static let count = 16384

    static func of(_ key: String) -> Int {
        var key = key
        return key.withUTF8 { bytes in Int(Self.crc16(Self.hashedPart(of: bytes)) & 0x3FFF) }
    }

    /// The bytes Redis hashes: the hash tag's content when there is one, else the whole key.
    static func hashedPart(of key: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>.SubSequence {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
              let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")),
              close > open + 1
        else { return key[...] }
        return key[(open + 1)..<close]
    }

    static func crc16<Bytes: Sequence>(_ bytes: Bytes) -> UInt16 where Bytes.Element == UInt8 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ Self.table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    /// The CRC of each leading byte, shifted through eight rounds of the polynomial once, so that
    /// a key costs one lookup per byte instead of eight shifts.
    private static let table: [UInt16] = (0..<256).map { (index: Int) -> UInt16 in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
