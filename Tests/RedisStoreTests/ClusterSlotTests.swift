import XCTest

@testable import RedisStore

final class ClusterSlotTests: XCTestCase {
    func testCRC16IsXModem() {
        // The check value of CRC-16/XMODEM, as in the Redis Cluster specification.
        XCTAssertEqual(ClusterSlot.crc16(Array("123456789".utf8)), 0x31C3)
        XCTAssertEqual(ClusterSlot.crc16([UInt8]()), 0)
    }

    func testKnownSlots() {
        XCTAssertEqual(ClusterSlot.of("foo"), 12182)
        XCTAssertEqual(ClusterSlot.of("bar"), 5061)
        XCTAssertEqual(ClusterSlot.of("hello"), 866)
        XCTAssertEqual(ClusterSlot.of(""), 0)
        XCTAssertEqual(ClusterSlot.of("123456789"), 0x31C3 & 0x3FFF)
    }

    func testHashTags() {
        XCTAssertEqual(ClusterSlot.of("{user1000}.following"), ClusterSlot.of("{user1000}.followers"))
        XCTAssertEqual(ClusterSlot.of("{user1000}.following"), ClusterSlot.of("user1000"))
        XCTAssertEqual(ClusterSlot.of("lifeline:{abc}:lease"), ClusterSlot.of("lifeline:{abc}:events"))
        // Only the first `{` counts, and the first `}` after it.
        XCTAssertEqual(ClusterSlot.of("foo{bar}{zap}"), ClusterSlot.of("bar"))
        XCTAssertEqual(ClusterSlot.of("foo{{bar}}zap"), ClusterSlot.of("{bar"))
        // An empty tag, or none closed: the whole key.
        XCTAssertEqual(ClusterSlot.of("foo{}{bar}"), Int(ClusterSlot.crc16(Array("foo{}{bar}".utf8)) & 0x3FFF))
        XCTAssertNotEqual(ClusterSlot.of("foo{}{bar}"), ClusterSlot.of("bar"))
        XCTAssertEqual(ClusterSlot.of("foo{bar"), Int(ClusterSlot.crc16(Array("foo{bar".utf8)) & 0x3FFF))
        XCTAssertEqual(ClusterSlot.of("}foo{bar}"), ClusterSlot.of("bar"))
    }

    func testNonASCIIKeysHashTheirUTF8() {
        XCTAssertEqual(ClusterSlot.of("é"), Int(ClusterSlot.crc16([0xC3, 0xA9]) & 0x3FFF))
        XCTAssertEqual(ClusterSlot.of("{é}x"), ClusterSlot.of("é"))
    }

    func testSlotsAreInRange() {
        for _ in 0..<1000 {
            let key = String((0..<Int.random(in: 0...40)).map { _ in Character(UnicodeScalar(UInt8.random(in: 32...126))) })
            XCTAssertTrue((0..<16384).contains(ClusterSlot.of(key)), key)
        }
    }
}
