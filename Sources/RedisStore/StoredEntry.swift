import LifelineCore
import NIOCore
import Redis

/// Reading stored history entries (`[id, [field, value, …]]`) back into events.
enum StoredEntry {
    enum DecodingError: Error, CustomStringConvertible {
        case malformed(String)
        var description: String {
            switch self {
            case .malformed(let what): return "malformed history entry: \(what)"
            }
        }
    }

    /// The sequence in an entry id `<sequence>-0`.
    static func sequence(ofEntryID text: String) -> UInt64? {
        guard let dash = text.firstIndex(of: "-") else { return UInt64(text) }
        return UInt64(text[..<dash])
    }

    /// The `i` field's form of an event id: empty for none, else `=` and the id.
    static func idField(_ id: String?) -> String {
        id.map { "=" + $0 } ?? ""
    }

    static func id(fromField field: String) -> String? {
        field.hasPrefix("=") ? String(field.dropFirst()) : nil
    }

    /// What clients get is these bytes as they are, so a stored event must be what the owner's
    /// serializer writes: LF-only lines ending in exactly one blank line. Anything else (a
    /// careless or hostile writer of the key) would break the framing of every client's stream.
    static func isOneEventBlock(_ bytes: ByteBuffer) -> Bool {
        bytes.withUnsafeReadableBytes { raw in
            let count = raw.count
            guard count >= 2, raw[count - 1] == 0x0A, raw[count - 2] == 0x0A else { return false }
            var previousWasLF = false
            for index in 0..<(count - 1) {
                let byte = raw[index]
                if byte == 0x0D { return false }
                if byte == 0x0A {
                    if previousWasLF { return false }
                    previousWasLF = true
                } else {
                    previousWasLF = false
                }
            }
            return true
        }
    }

    /// Decodes a shared history's entries (which never end).
    static func events(
        _ entries: RESPToken.Array, epoch: String?, receivedAt: NIODeadline, allocator: ByteBufferAllocator
    ) throws(DecodingError) -> [EncodedEvent] {
        let batch = try Self.batch(entries, epoch: epoch, receivedAt: receivedAt, allocator: allocator)
        guard batch.end == nil else { throw .malformed("an end entry in a shared history") }
        return batch.events
    }

    /// The end entry's `x` field (`GenerationScripts`).
    static func endField(_ reason: StreamEndReason) -> String {
        reason == .originFinished ? "c" : "b"
    }

    /// Decodes entries: events, and the end entry of a kept generation if the batch reaches it
    /// (nothing may follow it). Each event's bytes are copied out of the reply (a slice would
    /// keep the whole read buffer alive for as long as the ring holds the event).
    static func batch(
        _ entries: RESPToken.Array, epoch: String?, receivedAt: NIODeadline, allocator: ByteBufferAllocator
    ) throws(DecodingError) -> (events: [EncodedEvent], end: StreamEndReason?) {
        var events: [EncodedEvent] = []
        var end: StreamEndReason?
        events.reserveCapacity(entries.count)
        for entry in entries {
            guard end == nil else { throw .malformed("an entry after the end") }
            guard let pair = entry.array, pair.count == 2 else { throw .malformed("not [id, fields]") }
            var iterator = pair.makeIterator()
            guard let idText = iterator.next()?.string, let sequence = Self.sequence(ofEntryID: idText),
                let fields = iterator.next()?.array
            else { throw .malformed("bad entry id") }
            var id: String?
            var bytes: ByteBuffer?
            var entryEpoch: String?
            var fieldIterator = fields.makeIterator()
            while let name = fieldIterator.next(), let value = fieldIterator.next() {
                switch name.string {
                case "x":
                    switch value.string {
                    case "c": end = .originFinished
                    case "b": end = .originBroke
                    default: throw .malformed("entry \(idText) ends with an unknown outcome")
                    }
                case "i": id = value.string.flatMap(Self.id(fromField:))
                case "e":
                    if let slice = value.bytes {
                        guard Self.isOneEventBlock(slice) else {
                            throw .malformed("entry \(idText) does not hold one event block")
                        }
                        var copy = allocator.buffer(capacity: slice.readableBytes)
                        copy.writeImmutableBuffer(slice)
                        bytes = copy
                    }
                case "p": entryEpoch = value.string
                default: break
                }
            }
            if end != nil { continue }
            guard let bytes else { throw .malformed("entry \(idText) has no event") }
            if let epoch, entryEpoch != epoch {
                throw .malformed("entry \(idText) is of epoch \(entryEpoch ?? "none"), not \(epoch)")
            }
            events.append(EncodedEvent(sequence: sequence, id: id, bytes: bytes, receivedAt: receivedAt))
        }
        return (events, end)
    }
}
