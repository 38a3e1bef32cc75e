import NIOCore

/// Exactly one complete RESP3 value, already validated, as a view into the bytes it arrived in:
/// `base` is a slice of the receive buffer, and nothing in it is copied until asked for.
///
/// `value` decodes one level; elements of aggregates are tokens again (slices of `base`).
/// Tokens come from `RESPTokenParser`, which validated every byte, so decoding never fails.
public struct RESPToken: Sendable, Hashable {
    /// The value's bytes on the wire, type byte to final CRLF.
    public let base: ByteBuffer

    /// `base` must hold exactly one value that `RESPTokenParser` validated.
    init(validated base: ByteBuffer) {
        self.base = base
    }

    /// The first value in `buffer`, validated with `limits`; nil when `buffer` does not hold a
    /// complete one. Bytes after it are ignored. For building tokens in tests and fakes.
    public init?(validating buffer: ByteBuffer, limits: RESPTokenParser.Limits = .init()) throws(RESPParsingError) {
        var parser = RESPTokenParser(limits: limits)
        var buffer = buffer
        guard let token = try parser.next(from: &buffer) else { return nil }
        self = token
    }

    /// One level of a RESP3 value. Payloads are slices of the token's `base`.
    public enum Value: Sendable, Hashable {
        case simpleString(ByteBuffer)
        case simpleError(ByteBuffer)
        case bulkString(ByteBuffer)
        case bulkError(ByteBuffer)
        /// The whole payload, format prefix included (`txt:...`); `string` and `bytes` leave it out.
        case verbatimString(ByteBuffer)
        case number(Int64)
        case double(Double)
        case boolean(Bool)
        /// RESP3's `_`, and RESP2's null bulk string `$-1` and null array `*-1`.
        case null
        /// The digits, with their sign if any.
        case bigNumber(ByteBuffer)
        case array(RESPToken.Array)
        case map(RESPToken.Map)
        case set(RESPToken.Array)
        /// Only for tokens made of an attribute alone: the parser drops top-level attributes and
        /// iteration skips nested ones, so tokens it returns never decode to this.
        case attribute(RESPToken.Map)
        case push(RESPToken.Array)
    }

    /// The value, decoded one level.
    public var value: Value {
        self.base.withUnsafeReadableBytes { bytes in
            guard let (type, line, next) = RESPSyntax.header(bytes, at: 0) else { return .null }
            let content = bytes[line]
            // The payload of a blob: after its header, before its final CRLF.
            func payload() -> ByteBuffer {
                self.slice(from: next, to: bytes.count - 2)
            }
            func lineBuffer() -> ByteBuffer {
                self.slice(from: line.lowerBound, to: line.upperBound)
            }
            func elements() -> ByteBuffer {
                self.slice(from: next, to: bytes.count)
            }
            switch type {
            case RESPSyntax.simpleString: return .simpleString(lineBuffer())
            case RESPSyntax.simpleError: return .simpleError(lineBuffer())
            case RESPSyntax.number: return .number(RESPSyntax.int64(content, allowPlus: true) ?? 0)
            case RESPSyntax.double: return .double(Self.double(content))
            case RESPSyntax.boolean: return .boolean(RESPSyntax.line(content, is: "t"))
            case RESPSyntax.null: return .null
            case RESPSyntax.bigNumber: return .bigNumber(lineBuffer())
            case RESPSyntax.bulkString:
                return RESPSyntax.line(content, is: "-1") ? .null : .bulkString(payload())
            case RESPSyntax.bulkError: return .bulkError(payload())
            case RESPSyntax.verbatimString: return .verbatimString(payload())
            default:
                if type == RESPSyntax.array, RESPSyntax.line(content, is: "-1") { return .null }
                let count = RESPSyntax.length(content, maximum: Int(Int32.max)).value ?? 0
                switch type {
                case RESPSyntax.array: return .array(Array(count: count, elements: elements()))
                case RESPSyntax.set: return .set(Array(count: count, elements: elements()))
                case RESPSyntax.push: return .push(Array(count: count, elements: elements()))
                case RESPSyntax.map: return .map(Map(count: count, elements: elements()))
                case RESPSyntax.attribute: return .attribute(Map(count: count, elements: elements()))
                default: return .null  // not reached: the parser validated the type byte
                }
            }
        }
    }

    private func slice(from start: Int, to end: Int) -> ByteBuffer {
        guard start >= 0, start <= end, end <= self.base.readableBytes else { return ByteBuffer() }
        return self.base.getSlice(at: self.base.readerIndex + start, length: end - start) ?? ByteBuffer()
    }

    private static func double(_ line: UnsafeRawBufferPointer.SubSequence) -> Double {
        // Spelled out: `Double(String)` would also take hex, "infinity" and the like, which the
        // parser has already refused, so only the validated forms reach here.
        var text = Substring(decoding: line, as: UTF8.self)
        var sign: Double = 1
        if text.first == "-" || text.first == "+" {
            if text.first == "-" { sign = -1 }
            text = text.dropFirst()
        }
        switch text {
        case "inf": return sign * .infinity
        case "nan": return .nan
        default: return sign * (Double(text) ?? .nan)
        }
    }

    // MARK: - Conveniences

    /// Simple, bulk and verbatim strings (without the verbatim format prefix) as UTF-8, invalid
    /// sequences repaired; nil for other types.
    public var string: String? {
        self.bytes.map { String(buffer: $0) }
    }

    /// The payload of a simple, bulk or verbatim string (without the verbatim format prefix), as
    /// a slice; nil for other types.
    public var bytes: ByteBuffer? {
        switch self.value {
        case .simpleString(let bytes), .bulkString(let bytes):
            return bytes
        case .verbatimString(var bytes):
            bytes.moveReaderIndex(forwardBy: min(RESPSyntax.verbatimPrefixLength, bytes.readableBytes))
            return bytes
        default:
            return nil
        }
    }

    /// A number, or a simple or bulk string of decimal digits (with an optional `-`) that fits
    /// in 64 bits; nil otherwise.
    public var int: Int64? {
        switch self.value {
        case .number(let number):
            return number
        case .simpleString(let bytes), .bulkString(let bytes):
            return bytes.withUnsafeReadableBytes { RESPSyntax.int64($0[...], allowPlus: false) }
        default:
            return nil
        }
    }

    /// The elements of an array, set or push; nil for other types.
    public var array: RESPToken.Array? {
        switch self.value {
        case .array(let array), .set(let array), .push(let array): return array
        default: return nil
        }
    }

    /// The entries of a map; nil for other types.
    public var map: RESPToken.Map? {
        if case .map(let map) = self.value { return map }
        return nil
    }

    /// Whether this is a null (`_`, `$-1` or `*-1`).
    public var isNull: Bool {
        if case .null = self.value { return true }
        return false
    }

    /// Whether this is a simple or bulk error.
    public var isError: Bool {
        guard let type = self.base.getInteger(at: self.base.readerIndex, as: UInt8.self) else { return false }
        return type == RESPSyntax.simpleError || type == RESPSyntax.bulkError
    }

    /// Whether this is a push (`>`): out-of-band data, not the reply to a command.
    public var isPush: Bool {
        self.base.getInteger(at: self.base.readerIndex, as: UInt8.self) == RESPSyntax.push
    }

    /// The text of a simple or bulk error, e.g. "WRONGTYPE Operation against a key holding the
    /// wrong kind of value"; nil for other types.
    public var errorMessage: String? {
        switch self.value {
        case .simpleError(let bytes), .bulkError(let bytes): return String(buffer: bytes)
        default: return nil
        }
    }
}

extension RESPToken {
    /// The elements of an array, set or push, each a token (a slice of the aggregate's bytes).
    /// Walking to the next element reads the current one's headers, not its payloads: indexing
    /// is O(1) per step for flat aggregates. Attributes between elements are skipped.
    public struct Array: Collection, Sendable, Hashable {
        /// A position: the byte offset of an element within the aggregate.
        public struct Index: Comparable, Hashable, Sendable {
            let offset: Int
            public static func < (lhs: Index, rhs: Index) -> Bool { lhs.offset < rhs.offset }
        }

        /// The number of elements (O(1): the aggregate's header says it).
        public let count: Int
        /// The elements' bytes, back to back.
        let elements: ByteBuffer

        init(count: Int, elements: ByteBuffer) {
            self.count = count
            self.elements = elements
        }

        public var isEmpty: Bool { self.count == 0 }

        public var startIndex: Index {
            Index(offset: self.elements.withUnsafeReadableBytes { RESPSyntax.skippingAttributes($0, from: 0) })
        }

        public var endIndex: Index { Index(offset: self.elements.readableBytes) }

        public func index(after i: Index) -> Index {
            Index(offset: self.elements.withUnsafeReadableBytes { bytes in
                guard let end = RESPSyntax.valueEnd(bytes, from: i.offset) else { return bytes.count }
                return RESPSyntax.skippingAttributes(bytes, from: end)
            })
        }

        public subscript(position: Index) -> RESPToken {
            let end = self.elements.withUnsafeReadableBytes { RESPSyntax.valueEnd($0, from: position.offset) }
            return RESPToken(validated: self.elements.token(from: position.offset, to: end))
        }

        public func makeIterator() -> Iterator {
            Iterator(elements: self.elements)
        }

        /// Walks each element once (indexing would walk it twice: to slice it and to step over it).
        public struct Iterator: IteratorProtocol, Sendable {
            let elements: ByteBuffer
            var offset = 0

            public mutating func next() -> RESPToken? {
                self.elements.nextElement(at: &self.offset)
            }
        }
    }

    /// The entries of a map (or attribute), in wire order, each key and value a token.
    public struct Map: Sequence, Sendable, Hashable {
        /// The number of entries (O(1): the map's header says it).
        public let count: Int
        let elements: ByteBuffer

        init(count: Int, elements: ByteBuffer) {
            self.count = count
            self.elements = elements
        }

        public var isEmpty: Bool { self.count == 0 }

        public func makeIterator() -> Iterator {
            Iterator(elements: self.elements)
        }

        public struct Iterator: IteratorProtocol, Sendable {
            let elements: ByteBuffer
            var offset = 0

            public mutating func next() -> (key: RESPToken, value: RESPToken)? {
                guard let key = self.elements.nextElement(at: &self.offset),
                      let value = self.elements.nextElement(at: &self.offset)
                else { return nil }
                return (key, value)
            }
        }

        /// The value of the first entry whose key is a string equal to `key`; nil if none.
        public subscript(_ key: String) -> RESPToken? {
            self.first { $0.key.string == key }?.value
        }
    }
}

extension ByteBuffer {
    /// The element of a validated aggregate's bytes at `offset` (attributes before it skipped),
    /// with `offset` moved past it; nil at the end.
    fileprivate func nextElement(at offset: inout Int) -> RESPToken? {
        let (start, end) = self.withUnsafeReadableBytes { bytes -> (Int, Int?) in
            let start = RESPSyntax.skippingAttributes(bytes, from: offset)
            guard start < bytes.count else { return (start, nil) }
            return (start, RESPSyntax.valueEnd(bytes, from: start))
        }
        guard let end else {
            offset = self.readableBytes
            return nil
        }
        offset = end
        return RESPToken(validated: self.token(from: start, to: end))
    }

    /// The bytes from `start` to `end` (to the end when nil), clamped to what is readable.
    fileprivate func token(from start: Int, to end: Int?) -> ByteBuffer {
        let end = min(end ?? self.readableBytes, self.readableBytes)
        let start = min(max(start, 0), end)
        return self.getSlice(at: self.readerIndex + start, length: end - start) ?? ByteBuffer()
    }
}

extension RESPToken: CustomStringConvertible {
    /// A compact rendering for logs and test failures, e.g. `["OK", 1, {"a": null}]`; long
    /// strings and aggregates are cut short.
    public var description: String {
        var text = ""
        self.describe(into: &text, depth: 0)
        return text
    }

    private func describe(into text: inout String, depth: Int) {
        func quoted(_ bytes: ByteBuffer) -> String {
            let string = String(buffer: bytes.getSlice(at: bytes.readerIndex, length: min(bytes.readableBytes, 200)) ?? bytes)
            return string.debugDescription + (bytes.readableBytes > 200 ? "…(\(bytes.readableBytes) bytes)" : "")
        }
        guard depth < 8 else {
            text += "…"
            return
        }
        func list(_ tokens: RESPToken.Array, open: String, close: String) {
            text += open
            for (index, element) in tokens.prefix(20).enumerated() {
                if index > 0 { text += ", " }
                element.describe(into: &text, depth: depth + 1)
            }
            if tokens.count > 20 { text += ", …(\(tokens.count))" }
            text += close
        }
        func entries(_ map: RESPToken.Map, open: String) {
            text += open
            for (index, entry) in map.prefix(20).enumerated() {
                if index > 0 { text += ", " }
                entry.key.describe(into: &text, depth: depth + 1)
                text += ": "
                entry.value.describe(into: &text, depth: depth + 1)
            }
            if map.count > 20 { text += ", …(\(map.count))" }
            text += "}"
        }
        switch self.value {
        case .simpleString(let bytes), .bulkString(let bytes): text += quoted(bytes)
        case .verbatimString(let bytes): text += "verbatim " + quoted(bytes)
        case .simpleError(let bytes), .bulkError(let bytes): text += "error " + quoted(bytes)
        case .number(let number): text += String(number)
        case .double(let double): text += String(double)
        case .boolean(let boolean): text += String(boolean)
        case .null: text += "null"
        case .bigNumber(let bytes): text += "(" + String(buffer: bytes) + ")"
        case .array(let array): list(array, open: "[", close: "]")
        case .set(let set): list(set, open: "~[", close: "]")
        case .push(let push): list(push, open: ">[", close: "]")
        case .map(let map): entries(map, open: "{")
        case .attribute(let map): entries(map, open: "|{")
        }
    }
}
