import NIOCore

/// An incremental RESP3 parser: takes bytes as they arrive, gives one complete, validated value
/// at a time as a `RESPToken` (a slice of the buffer: no bytes are copied).
///
/// Everything in a token is validated before it is returned (type bytes, CRLFs, lengths, numbers,
/// doubles, booleans, verbatim prefixes), so decoding it later cannot fail. No input traps.
///
/// Attributes (`|`): one in front of a top-level value is consumed and dropped; the value after
/// it is returned. Attributes inside aggregates stay in the token's bytes and are skipped when
/// iterating (`RESPToken.Array`, `RESPToken.Map`): they are metadata, not elements.
///
/// Big replies in small chunks: when a value is incomplete the parser remembers how far it got
/// (the offset of the first element not yet validated, the open aggregates, and how far that
/// element's line was searched for CR), and the next call resumes there. So each byte is
/// validated once, and a call that returns nil costs little more than the bytes that arrived;
/// only the short header line of an incomplete bulk string is read again. This requires that
/// between calls that return nil the caller only appends to the buffer (as `ByteToMessageDecoder`
/// does; moving the bytes, as `discardReadBytes` does, is fine: offsets are relative to the
/// reader index).
public struct RESPTokenParser: Sendable {
    /// Bounds on what a server can make the parser accept, hence on the memory a reply can take
    /// before it is complete.
    public struct Limits: Sendable, Hashable {
        /// How deep aggregates may nest (a top-level array is depth 1).
        public var maxDepth: Int
        /// The longest bulk string, bulk error or verbatim string, in bytes.
        public var maxBulkLength: Int
        /// The most elements an aggregate may announce (entries, for maps and attributes).
        public var maxAggregateCount: Int
        /// The longest simple line (simple strings and errors, numbers, lengths), in bytes.
        public var maxLineLength: Int

        public init(
            maxDepth: Int = 32,
            maxBulkLength: Int = 64 << 20,
            maxAggregateCount: Int = 1 << 20,
            maxLineLength: Int = 64 << 10
        ) {
            self.maxDepth = maxDepth
            self.maxBulkLength = maxBulkLength
            self.maxAggregateCount = maxAggregateCount
            self.maxLineLength = maxLineLength
        }
    }

    /// An aggregate whose elements are being validated.
    private struct Frame: Sendable {
        /// Values still to come (twice the entries for maps and attributes).
        var remaining: Int
        /// Attributes take no element slot in their parent.
        var isAttribute: Bool
    }

    /// How far an incomplete value was validated. Offsets are relative to the reader index.
    private struct Progress: Sendable {
        /// The first byte not yet validated: the start of an element.
        var offset = 0
        /// Where the value to return starts (after top-level attributes).
        var valueStart = 0
        /// How far the line of the element at `offset` was searched for its CR.
        var lineSearched = 0
    }

    public let limits: Limits
    private var progress = Progress()
    /// The open aggregates of the incomplete value, innermost last. Kept between values so that
    /// its storage is reused.
    private var frames: [Frame] = []

    /// - Parameter limits: values above 2^31 - 1 are taken as 2^31 - 1, so that no offset
    ///   arithmetic can overflow.
    public init(limits: Limits = Limits()) {
        var limits = limits
        let ceiling = Int(Int32.max)
        limits.maxDepth = min(max(limits.maxDepth, 0), ceiling)
        limits.maxBulkLength = min(max(limits.maxBulkLength, 0), ceiling)
        limits.maxAggregateCount = min(max(limits.maxAggregateCount, 0), ceiling)
        limits.maxLineLength = min(max(limits.maxLineLength, 0), ceiling)
        self.limits = limits
    }

    /// The next complete value in `buffer`, consumed (the reader index moves past it and past
    /// any top-level attributes before it), or nil when `buffer` does not hold one yet (the
    /// reader index does not move). After an error the stream is out of step: stop using it.
    public mutating func next(from buffer: inout ByteBuffer) throws(RESPParsingError) -> RESPToken? {
        let result = buffer.withUnsafeReadableBytes { self.scan($0) }
        switch result {
        case .failure(let error):
            self.reset()
            throw error
        case .success(nil):
            return nil
        case .success(let range?):
            self.reset()
            // In range: `scan` only returns offsets within the readable bytes.
            let token = buffer.getSlice(at: buffer.readerIndex + range.lowerBound, length: range.count) ?? ByteBuffer()
            buffer.moveReaderIndex(forwardBy: range.upperBound)
            return RESPToken(validated: token)
        }
    }

    private mutating func reset() {
        self.progress = Progress()
        self.frames.removeAll(keepingCapacity: true)
    }

    /// Validates from where the last call stopped. Returns the range of a complete value, nil
    /// (with the progress saved) when the bytes end first, or the first error.
    private mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Result<Range<Int>?, RESPParsingError> {
        var progress = self.progress
        if progress.offset > bytes.count {
            // Not the buffer of the last call (a caller that broke the contract): start over
            // rather than read out of range.
            progress = Progress()
            self.frames.removeAll(keepingCapacity: true)
        }
        defer { self.progress = progress }

        while true {
            let offset = progress.offset
            guard offset < bytes.count else { return .success(nil) }
            let type = bytes[offset]
            guard Self.isType(type) else { return .failure(.invalidType(type)) }

            // The element's first line: up to maxLineLength bytes, then CRLF.
            let lineStart = offset + 1
            let lineLimit = lineStart + self.limits.maxLineLength  // the furthest CR may be
            let searchFrom = max(lineStart, progress.lineSearched)
            let searchEnd = min(bytes.count, lineLimit + 1)
            var cr = -1
            if searchFrom < searchEnd {
                if let found = bytes[searchFrom..<searchEnd].firstIndex(where: { $0 == RESPSyntax.cr || $0 == RESPSyntax.lf }) {
                    guard bytes[found] == RESPSyntax.cr else { return .failure(.missingCRLF) }
                    cr = found
                }
            }
            if cr < 0 {
                if bytes.count > lineLimit { return .failure(.lineTooLong) }
                progress.lineSearched = searchEnd
                return .success(nil)
            }
            guard cr + 1 < bytes.count else {
                progress.lineSearched = cr
                return .success(nil)
            }
            guard bytes[cr + 1] == RESPSyntax.lf else { return .failure(.missingCRLF) }
            let line = bytes[lineStart..<cr]
            var end = cr + 2
            var completedAttribute = false

            switch type {
            case RESPSyntax.simpleString, RESPSyntax.simpleError:
                break
            case RESPSyntax.number:
                guard RESPSyntax.int64(line, allowPlus: true) != nil else { return .failure(.invalidNumber) }
            case RESPSyntax.double:
                guard RESPSyntax.isDouble(line) else { return .failure(.invalidDouble) }
            case RESPSyntax.boolean:
                guard RESPSyntax.line(line, is: "t") || RESPSyntax.line(line, is: "f") else {
                    return .failure(.invalidBoolean)
                }
            case RESPSyntax.null:
                guard line.isEmpty else { return .failure(.invalidNull) }
            case RESPSyntax.bigNumber:
                guard RESPSyntax.isBigNumber(line) else { return .failure(.invalidBigNumber) }
            case RESPSyntax.bulkString, RESPSyntax.bulkError, RESPSyntax.verbatimString:
                if RESPSyntax.line(line, is: "?") { return .failure(.streamedValueNotSupported) }
                if type == RESPSyntax.bulkString, RESPSyntax.line(line, is: "-1") { break }
                let (parsed, tooLarge) = RESPSyntax.length(line, maximum: self.limits.maxBulkLength)
                guard let length = parsed else { return .failure(tooLarge ? .bulkTooLong : .invalidLength) }
                if type == RESPSyntax.verbatimString, length < RESPSyntax.verbatimPrefixLength {
                    return .failure(.invalidVerbatimString)
                }
                guard length <= bytes.count - end - 2 else {
                    // A CR that is not where it must be is an error already (a peer announcing a
                    // short payload and sending more need not be waited for).
                    if length < bytes.count - end, bytes[end + length] != RESPSyntax.cr {
                        return .failure(.missingCRLF)
                    }
                    // The payload is not all here: come back to this header (its CR is known).
                    progress.lineSearched = cr
                    return .success(nil)
                }
                guard bytes[end + length] == RESPSyntax.cr, bytes[end + length + 1] == RESPSyntax.lf else {
                    return .failure(.missingCRLF)
                }
                if type == RESPSyntax.verbatimString, bytes[end + RESPSyntax.verbatimPrefixLength - 1] != UInt8(ascii: ":") {
                    return .failure(.invalidVerbatimString)
                }
                end += length + 2
            default:  // aggregates (isType checked the byte)
                if RESPSyntax.line(line, is: "?") { return .failure(.streamedValueNotSupported) }
                if type == RESPSyntax.array, RESPSyntax.line(line, is: "-1") { break }
                let (parsed, tooLarge) = RESPSyntax.length(line, maximum: self.limits.maxAggregateCount)
                guard let count = parsed else { return .failure(tooLarge ? .tooManyElements : .invalidLength) }
                guard self.frames.count < self.limits.maxDepth else { return .failure(.tooDeep) }
                let values = RESPSyntax.valueCount(type: type, count: count)
                if values > 0 {
                    self.frames.append(Frame(remaining: values, isAttribute: type == RESPSyntax.attribute))
                    progress.offset = end
                    progress.lineSearched = 0
                    continue
                }
                completedAttribute = type == RESPSyntax.attribute
            }

            // An element ended at `end`: close the aggregates it completes.
            progress.offset = end
            progress.lineSearched = 0
            while true {
                if completedAttribute {
                    // Takes no slot. At the top level, the value to return starts after it.
                    if self.frames.isEmpty { progress.valueStart = end }
                    break
                }
                guard !self.frames.isEmpty else {
                    return .success(progress.valueStart..<end)
                }
                self.frames[self.frames.count - 1].remaining -= 1
                guard self.frames[self.frames.count - 1].remaining == 0 else { break }
                completedAttribute = self.frames.removeLast().isAttribute
            }
        }
    }

    private static func isType(_ byte: UInt8) -> Bool {
        switch byte {
        case RESPSyntax.simpleString, RESPSyntax.simpleError, RESPSyntax.number, RESPSyntax.double,
             RESPSyntax.boolean, RESPSyntax.null, RESPSyntax.bigNumber, RESPSyntax.bulkString,
             RESPSyntax.bulkError, RESPSyntax.verbatimString, RESPSyntax.array, RESPSyntax.set,
             RESPSyntax.push, RESPSyntax.map, RESPSyntax.attribute:
            return true
        default:
            return false
        }
    }
}
