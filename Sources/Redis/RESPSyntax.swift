/// The byte-level rules of RESP3 shared by the parser (which validates) and `RESPToken` (which
/// decodes what the parser validated). Everything works on the readable bytes of a buffer as an
/// `UnsafeRawBufferPointer`, with offsets relative to its start, and never traps: out-of-range or
/// malformed input gives nil.
enum RESPSyntax {
    static let cr: UInt8 = 0x0D
    static let lf: UInt8 = 0x0A

    // Type bytes.
    static let simpleString = UInt8(ascii: "+")
    static let simpleError = UInt8(ascii: "-")
    static let number = UInt8(ascii: ":")
    static let double = UInt8(ascii: ",")
    static let boolean = UInt8(ascii: "#")
    static let null = UInt8(ascii: "_")
    static let bigNumber = UInt8(ascii: "(")
    static let bulkString = UInt8(ascii: "$")
    static let bulkError = UInt8(ascii: "!")
    static let verbatimString = UInt8(ascii: "=")
    static let array = UInt8(ascii: "*")
    static let set = UInt8(ascii: "~")
    static let push = UInt8(ascii: ">")
    static let map = UInt8(ascii: "%")
    static let attribute = UInt8(ascii: "|")

    /// The payload of a verbatim string starts with a three-byte format and a colon ("txt:").
    static let verbatimPrefixLength = 4

    /// Whether a type byte announces a length-prefixed payload (`$`, `!`, `=`).
    static func isBlob(_ type: UInt8) -> Bool {
        type == bulkString || type == bulkError || type == verbatimString
    }

    /// Whether a type byte announces an aggregate (`*`, `~`, `>`, `%`, `|`).
    static func isAggregate(_ type: UInt8) -> Bool {
        type == array || type == set || type == push || type == map || type == attribute
    }

    /// How many values an aggregate of `count` entries holds: maps and attributes hold pairs.
    static func valueCount(type: UInt8, count: Int) -> Int {
        type == map || type == attribute ? 2 * count : count
    }

    /// Whether `line` is exactly the ASCII text `text`.
    static func line(_ line: UnsafeRawBufferPointer.SubSequence, is text: StaticString) -> Bool {
        guard line.count == text.utf8CodeUnitCount else { return false }
        var index = line.startIndex
        for i in 0..<text.utf8CodeUnitCount {
            if line[index] != text.utf8Start[i] { return false }
            index += 1
        }
        return true
    }

    /// A length or count: decimal digits only (no sign), at most `maximum`. Returns nil for
    /// anything else; `tooLarge` says the digits were fine but the value over `maximum` (or over
    /// what an Int holds).
    static func length(
        _ line: UnsafeRawBufferPointer.SubSequence, maximum: Int
    ) -> (value: Int?, tooLarge: Bool) {
        guard !line.isEmpty else { return (nil, false) }
        var value = 0
        var tooLarge = false
        for byte in line {
            let digit = Int(byte) &- 0x30
            guard digit >= 0, digit <= 9 else { return (nil, false) }
            // Once over the maximum keep checking the digits but stop accumulating (no overflow).
            if !tooLarge {
                value = value * 10 + digit
                if value > maximum { tooLarge = true }
            }
        }
        return tooLarge ? (nil, true) : (value, false)
    }

    /// A signed 64-bit integer: an optional sign (`+` only when `allowPlus`), then one or more
    /// decimal digits, no overflow.
    static func int64(_ line: UnsafeRawBufferPointer.SubSequence, allowPlus: Bool) -> Int64? {
        var index = line.startIndex
        guard index < line.endIndex else { return nil }
        var negative = false
        if line[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        } else if allowPlus, line[index] == UInt8(ascii: "+") {
            index += 1
        }
        guard index < line.endIndex else { return nil }
        // Accumulate negatively so that Int64.min parses.
        var value: Int64 = 0
        while index < line.endIndex {
            let digit = Int64(line[index]) &- 0x30
            guard digit >= 0, digit <= 9 else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.subtractingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = next
            index += 1
        }
        if negative { return value }
        let (positive, overflow) = Int64(0).subtractingReportingOverflow(value)
        return overflow ? nil : positive
    }

    /// RESP3's double syntax: `[+|-](inf|nan|<digits>[.<digits>][(e|E)[+|-]<digits>])`.
    static func isDouble(_ line: UnsafeRawBufferPointer.SubSequence) -> Bool {
        var index = line.startIndex
        if index < line.endIndex, line[index] == UInt8(ascii: "-") || line[index] == UInt8(ascii: "+") {
            index += 1
        }
        let rest = line[index...]
        if Self.line(rest, is: "inf") || Self.line(rest, is: "nan") { return true }
        func digits() -> Bool {
            let start = index
            while index < line.endIndex, line[index] >= 0x30, line[index] <= 0x39 { index += 1 }
            return index > start
        }
        guard digits() else { return false }
        if index < line.endIndex, line[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() else { return false }
        }
        if index < line.endIndex, line[index] == UInt8(ascii: "e") || line[index] == UInt8(ascii: "E") {
            index += 1
            if index < line.endIndex, line[index] == UInt8(ascii: "-") || line[index] == UInt8(ascii: "+") {
                index += 1
            }
            guard digits() else { return false }
        }
        return index == line.endIndex
    }

    /// A big number: an optional sign and one or more digits.
    static func isBigNumber(_ line: UnsafeRawBufferPointer.SubSequence) -> Bool {
        var index = line.startIndex
        if index < line.endIndex, line[index] == UInt8(ascii: "-") || line[index] == UInt8(ascii: "+") {
            index += 1
        }
        guard index < line.endIndex else { return false }
        return line[index...].allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// The header of the value at `offset`: its type byte, the range of its first line (after the
    /// type byte, before CRLF) and where the next line starts. nil when there is no complete line.
    /// For already-validated bytes only: it does not bound the line's length.
    static func header(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> (type: UInt8, line: Range<Int>, next: Int)? {
        guard offset >= 0, offset < bytes.count else { return nil }
        let lineStart = offset + 1
        guard let cr = bytes[lineStart...].firstIndex(of: cr), cr + 1 < bytes.count else { return nil }
        return (bytes[offset], lineStart..<cr, cr + 2)
    }

    /// Where the value starting at `offset` ends (the offset after its last byte), attributes in
    /// it included; for an attribute at `offset`, where the attribute alone ends. For already-validated bytes: it walks headers without re-checking payloads, in
    /// one loop (no recursion, so nesting costs no stack). nil when the bytes are not a value.
    static func valueEnd(_ bytes: UnsafeRawBufferPointer, from offset: Int) -> Int? {
        var position = offset
        // Values still to walk. An attribute adds its entries without taking the slot of a value:
        // the value it precedes fills that.
        var remaining = 1
        while remaining > 0 {
            guard let (type, line, next) = header(bytes, at: position) else { return nil }
            let content = bytes[line]
            if isBlob(type) {
                if type == bulkString, Self.line(content, is: "-1") {
                    position = next
                } else {
                    guard let length = length(content, maximum: Int(Int32.max)).value else { return nil }
                    position = next + length + 2
                }
                remaining -= 1
            } else if isAggregate(type) {
                if type == array, Self.line(content, is: "-1") {
                    remaining -= 1
                } else {
                    guard let count = length(content, maximum: Int(Int32.max)).value else { return nil }
                    // An attribute inside takes no slot; one at `offset` is itself what is measured.
                    let takesSlot = type != attribute || position == offset
                    remaining += valueCount(type: type, count: count) - (takesSlot ? 1 : 0)
                }
                position = next
            } else {
                position = next
                remaining -= 1
            }
            guard position <= bytes.count else { return nil }
        }
        return position
    }

    /// `offset` moved past any attributes that start there: the offset of the value they annotate.
    static func skippingAttributes(_ bytes: UnsafeRawBufferPointer, from offset: Int) -> Int {
        var position = offset
        while position < bytes.count, bytes[position] == attribute {
            guard let end = valueEnd(bytes, from: position), end > position else { return bytes.count }
            position = end
        }
        return position
    }
}
