/// The one percent decoder of the request path: paths (`+` is a plus) and query values (`+` is a
/// space, as forms encode it). Foundation's `removingPercentEncoding` differs in the `+` and is
/// not used, so that both meanings are spelled out where they are used.
enum PercentDecoding {
    /// The bytes `text` encodes; nil when an escape is malformed.
    static func bytes<Text: StringProtocol>(of text: Text, plusIsSpace: Bool) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
                else { return nil }
                bytes.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                bytes.append(UInt8(ascii: " "))
            default:
                bytes.append(byte)
            }
        }
        return bytes
    }

    /// A query parameter's value as text; nil when an escape is malformed.
    static func queryValue<Text: StringProtocol>(_ text: Text) -> String? {
        Self.bytes(of: text, plusIsSpace: true).map { String(decoding: $0, as: UTF8.self) }
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
