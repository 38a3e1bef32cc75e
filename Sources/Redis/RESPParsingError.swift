/// Why bytes from a server are not RESP3 (or exceed the parser's limits). After one, the stream is
/// out of step and the connection must be closed.
public enum RESPParsingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A value starts with a byte that is no RESP3 type.
    case invalidType(UInt8)
    /// A line or a bulk payload is not followed by CRLF (or a line holds a bare CR or LF).
    case missingCRLF
    /// A simple line (string, error, number, length) is longer than `Limits.maxLineLength`.
    case lineTooLong
    /// A length or count is not decimal digits (a sign, a space, empty), or negative other than
    /// the RESP2 null `-1` of `$` and `*`.
    case invalidLength
    /// A bulk string, bulk error or verbatim string is longer than `Limits.maxBulkLength`.
    case bulkTooLong
    /// An aggregate announces more than `Limits.maxAggregateCount` elements (entries for maps).
    case tooManyElements
    /// Aggregates are nested deeper than `Limits.maxDepth`.
    case tooDeep
    /// A `:` number is not an optional sign and digits, or does not fit in 64 bits.
    case invalidNumber
    /// A `,` double is not `[sign](inf|nan|digits[.digits][e[sign]digits])`.
    case invalidDouble
    /// A `#` boolean is not `t` or `f`.
    case invalidBoolean
    /// A `(` big number is not an optional sign and digits.
    case invalidBigNumber
    /// A `_` null has content.
    case invalidNull
    /// A `=` verbatim string is shorter than 4 bytes or lacks the `xxx:` format prefix.
    case invalidVerbatimString
    /// A streamed string or aggregate (`$?`, `*?`, ...): valid RESP3, which no Redis sends and
    /// this parser does not take.
    case streamedValueNotSupported

    public var description: String {
        switch self {
        case .invalidType(let byte): return "RESP: invalid type byte 0x\(String(byte, radix: 16))"
        case .missingCRLF: return "RESP: missing CRLF"
        case .lineTooLong: return "RESP: line too long"
        case .invalidLength: return "RESP: invalid length"
        case .bulkTooLong: return "RESP: bulk string too long"
        case .tooManyElements: return "RESP: aggregate has too many elements"
        case .tooDeep: return "RESP: aggregates nested too deep"
        case .invalidNumber: return "RESP: invalid number"
        case .invalidDouble: return "RESP: invalid double"
        case .invalidBoolean: return "RESP: invalid boolean"
        case .invalidBigNumber: return "RESP: invalid big number"
        case .invalidNull: return "RESP: invalid null"
        case .invalidVerbatimString: return "RESP: invalid verbatim string"
        case .streamedValueNotSupported: return "RESP: streamed values are not supported"
        }
    }
}
