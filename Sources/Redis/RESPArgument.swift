import NIOCore

/// One argument of a command, sent as a RESP bulk string. Strings go out as UTF-8, integers in
/// decimal, doubles as Swift prints them ("1.5", "inf", "-inf"), byte buffers as they are.
public enum RESPArgument: Sendable, Hashable {
    case string(String)
    case bytes(ByteBuffer)
    case int(Int64)
    case uint(UInt64)
    case double(Double)

    public init(_ value: String) { self = .string(value) }
    public init(_ value: Substring) { self = .string(String(value)) }
    public init(_ value: ByteBuffer) { self = .bytes(value) }
    public init(_ value: Int) { self = .int(Int64(value)) }
    public init(_ value: Int64) { self = .int(value) }
    public init(_ value: UInt64) { self = .uint(value) }
    public init(_ value: Double) { self = .double(value) }

    /// The payload's length in bytes, without header and CRLF.
    var payloadLength: Int {
        switch self {
        case .string(let string): return string.utf8.count
        case .bytes(let bytes): return bytes.readableBytes
        case .int(let value): return Self.decimalLength(value.magnitude) + (value < 0 ? 1 : 0)
        case .uint(let value): return Self.decimalLength(value)
        case .double(let value): return value.description.utf8.count
        }
    }

    /// `$<length>\r\n<payload>\r\n`: what the argument takes on the wire.
    var encodedLength: Int {
        let length = self.payloadLength
        return 1 + Self.decimalLength(UInt64(length)) + 2 + length + 2
    }

    func write(into buffer: inout ByteBuffer) {
        let length = self.payloadLength
        buffer.writeInteger(UInt8(ascii: "$"))
        Self.writeDecimal(UInt64(length), negative: false, into: &buffer)
        buffer.writeInteger(Self.crlf)
        switch self {
        case .string(let string): buffer.writeString(string)
        case .bytes(let bytes): buffer.writeImmutableBuffer(bytes)
        case .int(let value): Self.writeDecimal(value.magnitude, negative: value < 0, into: &buffer)
        case .uint(let value): Self.writeDecimal(value, negative: false, into: &buffer)
        case .double(let value): buffer.writeString(value.description)
        }
        buffer.writeInteger(Self.crlf)
    }

    static let crlf: UInt16 = 0x0D0A  // written big-endian: CR then LF

    static func decimalLength(_ value: UInt64) -> Int {
        var length = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            length += 1
        }
        return length
    }

    /// Writes the digits in place, last first: no String in between.
    static func writeDecimal(_ value: UInt64, negative: Bool, into buffer: inout ByteBuffer) {
        let length = decimalLength(value) + (negative ? 1 : 0)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { bytes in
            var rest = value
            var index = length - 1
            repeat {
                bytes[index] = UInt8(truncatingIfNeeded: rest % 10) + 0x30
                rest /= 10
                index -= 1
            } while rest > 0
            if negative { bytes[0] = UInt8(ascii: "-") }
            return length
        }
    }
}

extension RESPArgument: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension RESPArgument: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}
