// ASCII bytes the event stream format gives meaning to.
let asciiLF: UInt8 = 0x0A
let asciiCR: UInt8 = 0x0D
let asciiColon: UInt8 = 0x3A
let asciiSpace: UInt8 = 0x20
let asciiNUL: UInt8 = 0x00

extension UnsafeRawBufferPointer {
    /// The index of the first CR or LF at or after `start`, or nil.
    ///
    /// Lines are usually much longer than a word, so this tests eight bytes at a time and only
    /// looks at single bytes in the word that holds a match (and in the tail). Public for other
    /// event-stream readers (the benchmark client).
    public func firstLineBreak(from start: Int) -> Int? {
        guard let base = self.baseAddress else { return nil }
        let count = self.count
        var index = start
        while index &+ 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            if hasZeroByte(word ^ 0x0A0A_0A0A_0A0A_0A0A) || hasZeroByte(word ^ 0x0D0D_0D0D_0D0D_0D0D) {
                break
            }
            index &+= 8
        }
        while index < count {
            let byte = base.load(fromByteOffset: index, as: UInt8.self)
            if byte == asciiLF || byte == asciiCR {
                return index
            }
            index &+= 1
        }
        return nil
    }

    /// Whether the bytes are exactly the ASCII text `name`.
    func equals(_ name: StaticString) -> Bool {
        let expected = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        return self.count == expected.count && self.elementsEqual(expected)
    }
}

/// Whether any byte of `word` is zero. Exact for the word as a whole, which is all the search needs.
@inline(__always)
func hasZeroByte(_ word: UInt64) -> Bool {
    (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080 != 0
}
