import CNghttp2
import NIOCore

/// HTTP/2 frames written and read by hand, so that tests can play a client that misbehaves.
package enum H2 {
    package static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    package enum FrameType: UInt8 {
        case data = 0x0, headers = 0x1, priority = 0x2, rstStream = 0x3, settings = 0x4
        case pushPromise = 0x5, ping = 0x6, goAway = 0x7, windowUpdate = 0x8, continuation = 0x9
    }

    package enum Flag {
        package static let endStream: UInt8 = 0x1
        package static let ack: UInt8 = 0x1
        package static let endHeaders: UInt8 = 0x4
    }

    package enum Setting: UInt16 {
        case headerTableSize = 0x1, enablePush = 0x2, maxConcurrentStreams = 0x3
        case initialWindowSize = 0x4, maxFrameSize = 0x5, maxHeaderListSize = 0x6
    }

    package struct Frame: CustomStringConvertible {
        package var type: UInt8
        package var flags: UInt8
        package var streamID: UInt32
        package var payload: [UInt8]

        package var kind: FrameType? { FrameType(rawValue: self.type) }
        package var endStream: Bool { self.flags & Flag.endStream != 0 }

        /// For RST_STREAM: the error code. For GOAWAY: the error code.
        package var errorCode: UInt32? {
            switch self.kind {
            case .rstStream: return H2.uint32(self.payload, at: 0)
            case .goAway: return H2.uint32(self.payload, at: 4)
            default: return nil
            }
        }

        /// For GOAWAY: the last stream id.
        package var lastStreamID: UInt32? {
            self.kind == .goAway ? H2.uint32(self.payload, at: 0).map { $0 & 0x7fff_ffff } : nil
        }

        /// For SETTINGS: the entries.
        package var settings: [(UInt16, UInt32)] {
            guard self.kind == .settings else { return [] }
            var result: [(UInt16, UInt32)] = []
            var index = 0
            while index + 6 <= self.payload.count {
                let id = UInt16(self.payload[index]) << 8 | UInt16(self.payload[index + 1])
                result.append((id, H2.uint32(self.payload, at: index + 2) ?? 0))
                index += 6
            }
            return result
        }

        /// For WINDOW_UPDATE: the increment.
        package var windowIncrement: UInt32? {
            self.kind == .windowUpdate ? H2.uint32(self.payload, at: 0).map { $0 & 0x7fff_ffff } : nil
        }

        /// For DATA: the payload without padding.
        package var data: [UInt8] {
            guard self.kind == .data else { return [] }
            if self.flags & 0x8 != 0, let pad = self.payload.first {
                return Array(self.payload.dropFirst().dropLast(Int(pad)))
            }
            return self.payload
        }

        /// For HEADERS: the header block fragment without padding and priority.
        package var headerBlock: [UInt8] {
            guard self.kind == .headers else { return [] }
            var bytes = self.payload[...]
            var pad = 0
            if self.flags & 0x8 != 0, let first = bytes.first {
                pad = Int(first)
                bytes = bytes.dropFirst()
            }
            if self.flags & 0x20 != 0 {
                bytes = bytes.dropFirst(5)
            }
            return Array(bytes.dropLast(pad))
        }

        package var description: String {
            "\(self.kind.map { "\($0)" } ?? "type\(self.type)")(stream \(self.streamID), flags 0x\(String(self.flags, radix: 16)), \(self.payload.count) bytes)"
        }
    }

    package static func uint32(_ bytes: [UInt8], at index: Int) -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        return UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8 | UInt32(bytes[index + 3])
    }

    package static func frame(_ type: FrameType, flags: UInt8 = 0, stream: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(9 + payload.count)
        let length = payload.count
        bytes += [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
        bytes += [type.rawValue, flags]
        bytes += be32(stream & 0x7fff_ffff)
        bytes += payload
        return bytes
    }

    package static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    package static func settings(_ entries: [(Setting, UInt32)] = []) -> [UInt8] {
        var payload: [UInt8] = []
        for (id, value) in entries {
            payload += [UInt8(id.rawValue >> 8), UInt8(id.rawValue & 0xff)] + be32(value)
        }
        return frame(.settings, payload: payload)
    }

    package static let settingsAck = frame(.settings, flags: Flag.ack)

    package static func ping(_ opaque: UInt64 = 0, ack: Bool = false) -> [UInt8] {
        let payload = (0..<8).map { UInt8(opaque >> (56 - 8 * UInt64($0)) & 0xff) }
        return frame(.ping, flags: ack ? Flag.ack : 0, payload: payload)
    }

    package static func rstStream(_ stream: UInt32, errorCode: UInt32 = 0x8) -> [UInt8] {
        frame(.rstStream, stream: stream, payload: be32(errorCode))
    }

    package static func windowUpdate(_ stream: UInt32, increment: UInt32) -> [UInt8] {
        frame(.windowUpdate, stream: stream, payload: be32(increment))
    }

    package static func data(_ stream: UInt32, _ bytes: [UInt8], endStream: Bool = false) -> [UInt8] {
        frame(.data, flags: endStream ? Flag.endStream : 0, stream: stream, payload: bytes)
    }

    package static func goAway(lastStreamID: UInt32 = 0, errorCode: UInt32 = 0) -> [UInt8] {
        frame(.goAway, payload: be32(lastStreamID) + be32(errorCode))
    }

    /// A request HEADERS frame (END_HEADERS), header block as literals without indexing, after a
    /// dynamic table size update to 0: the server advertises SETTINGS_HEADER_TABLE_SIZE 0, and a
    /// client that acknowledged it says so at the start of its next block (RFC 7541 §4.2); at the
    /// start of any block it is allowed.
    package static func request(
        _ stream: UInt32,
        method: String = "GET",
        path: String,
        authority: String = "localhost",
        headers: [(String, String)] = [],
        endStream: Bool = true
    ) -> [UInt8] {
        let fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", authority)] + headers
        let flags = Flag.endHeaders | (endStream ? Flag.endStream : 0)
        return frame(.headers, flags: flags, stream: stream, payload: [0x20] + hpackLiterals(fields))
    }

    /// HPACK: every field as "literal header field without indexing — new name", no Huffman.
    package static func hpackLiterals(_ fields: [(String, String)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (name, value) in fields {
            bytes.append(0x00)
            bytes += hpackString(Array(name.utf8))
            bytes += hpackString(Array(value.utf8))
        }
        return bytes
    }

    private static func hpackString(_ bytes: [UInt8]) -> [UInt8] {
        hpackInteger(bytes.count, prefixBits: 7, firstByte: 0) + bytes
    }

    private static func hpackInteger(_ value: Int, prefixBits: Int, firstByte: UInt8) -> [UInt8] {
        let max = (1 << prefixBits) - 1
        if value < max { return [firstByte | UInt8(value)] }
        var result = [firstByte | UInt8(max)]
        var rest = value - max
        while rest >= 128 {
            result.append(UInt8(rest % 128 + 128))
            rest /= 128
        }
        result.append(UInt8(rest))
        return result
    }

    /// Splits a byte stream into frames; returns the frames and how many bytes they used.
    package static func parse(_ bytes: [UInt8]) -> (frames: [Frame], consumed: Int) {
        var frames: [Frame] = []
        var index = 0
        while index + 9 <= bytes.count {
            let length = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
            guard index + 9 + length <= bytes.count else { break }
            let stream = (uint32(bytes, at: index + 5) ?? 0) & 0x7fff_ffff
            frames.append(Frame(type: bytes[index + 3], flags: bytes[index + 4], streamID: stream, payload: Array(bytes[(index + 9)..<(index + 9 + length)])))
            index += 9 + length
        }
        return (frames, index)
    }
}

/// An HPACK decoder (nghttp2's inflater) for the server's header blocks, in order.
package final class HPACKDecoder {
    private var inflater: OpaquePointer?

    package init() {
        _ = nghttp2_hd_inflate_new(&self.inflater)
    }

    deinit {
        nghttp2_hd_inflate_del(self.inflater)
    }

    /// Decodes one complete header block. Nil when it is not valid HPACK.
    package func decode(_ block: [UInt8]) -> [(String, String)]? {
        var fields: [(String, String)] = []
        var offset = 0
        while true {
            var nv = nghttp2_nv()
            var flags: Int32 = 0
            let remaining = block.count - offset
            let consumed = block.withUnsafeBufferPointer { buffer -> Int in
                let base = buffer.baseAddress.map { $0 + offset }
                return nghttp2_hd_inflate_hd2(self.inflater, &nv, &flags, base, remaining, 1)
            }
            if consumed < 0 { return nil }
            offset += consumed
            if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0 {
                let name = String(decoding: UnsafeBufferPointer(start: nv.name, count: nv.namelen), as: UTF8.self)
                let value = String(decoding: UnsafeBufferPointer(start: nv.value, count: nv.valuelen), as: UTF8.self)
                fields.append((name, value))
            }
            if flags & Int32(NGHTTP2_HD_INFLATE_FINAL.rawValue) != 0 {
                nghttp2_hd_inflate_end_headers(self.inflater)
                break
            }
            if consumed == 0 && flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) == 0 {
                return nil
            }
        }
        return fields
    }
}
