import COpenSSL
import NIOCore

/// The ciphertext side of an `SSLConnection`: a BIO whose reads and writes go to NIO
/// `ByteBuffer`s.
///
/// Why not `BIO_s_mem`: a memory BIO's buffer grows to the largest burst it ever held and keeps
/// that allocation, and it copies every byte once more. Here the inbound side holds the buffer NIO
/// read (no copy until OpenSSL pulls from it) and drops it as soon as it is consumed; the outbound
/// side collects everything OpenSSL writes during one operation into a buffer that is handed to
/// the channel whole and forgotten. An idle connection holds no ciphertext buffer at all.
///
/// This is a value stored inside its `SSLConnection`, not an object of its own: an idle
/// connection pays for two empty optionals here, not for one more heap object. The BIO's
/// callbacks reach it through the connection (the BIO's data pointer, unretained; the `SSL` owns
/// the BIO and the connection owns the `SSL`, and `SSLConnection.deinit` detaches the pointer
/// before freeing them).
///
/// Confined to the channel's event loop, like the `SSL` that uses it.
struct ByteBufferBIO {
    /// One BIO_METHOD per process. Created on first use and never freed.
    nonisolated(unsafe) private static let method: OpaquePointer = {
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        guard let method = BIO_meth_new(type, "Lifeline ByteBuffer BIO") else {
            fatalError("OpenSSL cannot allocate a BIO_METHOD")
        }
        BIO_meth_set_write(method, byteBufferBIOWrite)
        BIO_meth_set_read(method, byteBufferBIORead)
        BIO_meth_set_ctrl(method, byteBufferBIOCtrl)
        BIO_meth_set_create(method, byteBufferBIOCreate)
        BIO_meth_set_destroy(method, byteBufferBIODestroy)
        return method
    }()

    /// Outbound ciphertext comes from the default allocator, which is what NIO channels use
    /// unless told otherwise. (Keeping the channel's allocator here would cost 32 bytes on every
    /// connection for nothing.)
    private static let allocator = ByteBufferAllocator()

    private var inbound: ByteBuffer?
    private var outbound: ByteBuffer?

    /// A new BIO of this kind, not yet attached to a connection: its callbacks fail until
    /// `SSLConnection` sets its data pointer. The caller owns the one reference.
    static func makeBIO() -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        BIO_set_init(bio, 1)
        return bio
    }

    /// Ciphertext from the network, for OpenSSL to read.
    mutating func receive(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        if var existing = inbound {
            // Only when OpenSSL stopped mid-buffer (e.g. the handshake finished and records
            // follow, or the peer keeps sending while we close): rare and small, so copy.
            inbound = nil
            existing.writeImmutableBuffer(buffer)
            inbound = existing
        } else {
            inbound = buffer
        }
    }

    /// Ciphertext received but not yet read by OpenSSL.
    var inboundBytes: Int { inbound?.readableBytes ?? 0 }

    /// Ciphertext written by OpenSSL and not yet taken.
    var outboundBytes: Int { outbound?.readableBytes ?? 0 }

    /// Whether a ciphertext buffer is held, in either direction (even an empty one).
    var holdsBuffers: Bool { inbound != nil || outbound != nil }

    /// Everything OpenSSL wrote since the last call, or nil.
    mutating func takeOutbound() -> ByteBuffer? {
        defer { outbound = nil }
        return outbound
    }

    /// Drops unread ciphertext (after the connection is closed: nothing will read it).
    mutating func discardInbound() {
        inbound = nil
    }

    /// Copies up to `destination.count` bytes of inbound ciphertext; 0 when there is none.
    fileprivate mutating func read(into destination: UnsafeMutableRawBufferPointer) -> Int {
        guard var buffer = inbound, buffer.readableBytes > 0 else { return 0 }
        inbound = nil  // so that `buffer` is uniquely referenced while we move its reader index
        let count = min(destination.count, buffer.readableBytes)
        buffer.readWithUnsafeReadableBytes { source in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source.prefix(count)))
            return count
        }
        if buffer.readableBytes > 0 {
            inbound = buffer
        }
        return count
    }

    fileprivate mutating func write(_ source: UnsafeRawBufferPointer) {
        if outbound == nil {
            // Sized for what is being written now; ByteBuffer doubles if more records follow.
            // A buffer sized for a full record per write would cost 16 KiB for each small SSE
            // event queued on a slow connection.
            outbound = Self.allocator.buffer(capacity: source.count)
        }
        outbound!.writeBytes(source)
    }
}

/// The connection a BIO belongs to; nil before it is attached and after it is gone.
private func owningConnection(_ bio: OpaquePointer?) -> SSLConnection? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<SSLConnection>.fromOpaque(data).takeUnretainedValue()
}

private func byteBufferBIOWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let connection = owningConnection(bio) else { return -1 }
    lifeline_BIO_clear_retry_flags(bio)
    guard let data, length > 0 else { return 0 }
    connection.transport.write(UnsafeRawBufferPointer(start: data, count: Int(length)))
    return length
}

private func byteBufferBIORead(_ bio: OpaquePointer?, _ data: UnsafeMutablePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let connection = owningConnection(bio) else { return -1 }
    lifeline_BIO_clear_retry_flags(bio)
    guard let data, length > 0 else { return 0 }
    let count = connection.transport.read(into: UnsafeMutableRawBufferPointer(start: data, count: Int(length)))
    if count == 0 {
        // No EOF here: with a memory transport OpenSSL learns of the end of the stream only
        // if told, and the handler decides about EOF itself on channelInactive.
        lifeline_BIO_set_retry_read(bio)
        return -1
    }
    return CInt(count)
}

private func byteBufferBIOCtrl(
    _ bio: OpaquePointer?, _ command: CInt, _ larg: CLong, _ parg: UnsafeMutableRawPointer?
) -> CLong {
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_PENDING:
        return CLong(owningConnection(bio)?.transport.inboundBytes ?? 0)
    case BIO_CTRL_WPENDING:
        return CLong(owningConnection(bio)?.transport.outboundBytes ?? 0)
    case BIO_CTRL_GET_CLOSE:
        return CLong(BIO_get_shutdown(bio))
    case BIO_CTRL_SET_CLOSE:
        BIO_set_shutdown(bio, CInt(truncatingIfNeeded: larg))
        return 1
    default:
        // Everything else (KTLS queries, push/pop, EOF, DGRAM...) is "not supported": 0.
        return 0
    }
}

private func byteBufferBIOCreate(_ bio: OpaquePointer?) -> CInt {
    1
}

private func byteBufferBIODestroy(_ bio: OpaquePointer?) -> CInt {
    // The data pointer is unretained: nothing to release.
    1
}
