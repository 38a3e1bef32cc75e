/// The accepting thread's queue of connections for one event loop: descriptors accepted and not
/// yet all the way through the loop's `ConnectionInbox`. A stream socket may take part of a
/// write, even part of one descriptor's four bytes, so the queue remembers how much of its first
/// descriptor has gone. A pure value: `PlainAcceptor` does the sending.
struct ConnectionOutbox {
    /// In order; the first may be partly sent (`sentOfFirst` bytes).
    private(set) var descriptors: [CInt] = []
    private(set) var sentOfFirst = 0

    static let bytesPerDescriptor = MemoryLayout<CInt>.size

    var isEmpty: Bool { self.descriptors.isEmpty }
    var count: Int { self.descriptors.count }

    mutating func append(_ descriptor: CInt) {
        self.descriptors.append(descriptor)
    }

    /// The bytes still to send, at most `limit` descriptors' worth (host byte order, as the loop
    /// reads them).
    func pendingBytes(limit: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(self.descriptors.count, limit) * Self.bytesPerDescriptor)
        for descriptor in self.descriptors.prefix(limit) {
            withUnsafeBytes(of: descriptor) { bytes.append(contentsOf: $0) }
        }
        bytes.removeFirst(self.sentOfFirst)
        return bytes
    }

    /// `count` bytes of `pendingBytes` went out: the descriptors sent whole leave the queue.
    mutating func sent(_ count: Int) {
        let total = self.sentOfFirst + count
        let whole = min(total / Self.bytesPerDescriptor, self.descriptors.count)
        self.descriptors.removeFirst(whole)
        self.sentOfFirst = self.descriptors.isEmpty ? 0 : total - whole * Self.bytesPerDescriptor
    }

    /// Empties the queue, returning the descriptors that are still the sender's to close: all of
    /// them, a partly sent one too (the loop drops a descriptor's first bytes at end of input).
    mutating func takeAll() -> [CInt] {
        defer {
            self.descriptors = []
            self.sentOfFirst = 0
        }
        return self.descriptors
    }
}
