import COpenSSL
import NIOCore

/// A BIO that moves ciphertext between OpenSSL and NIO `ByteBuffer`s.
///
/// Why not `BIO_s_mem`: a memory BIO's buffer grows to the largest burst it ever held and keeps
/// that allocation, and it copies every byte once more. Here the inbound side holds the buffer NIO
/// read (no copy until OpenSSL pulls from it) and drops it as soon as it is consumed; the outbound
/// side collects everything OpenSSL writes during one operation into a buffer that is handed to
/// the channel whole and forgotten. An idle connection holds no ciphertext buffer at all.
///
/// Confined to the channel's event loop, like the `SSL` that uses it.
final class ByteBufferBIO {
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

    /// Our reference to the BIO. The `SSL` holds another one (see `retainedBIO`).
    let bio: OpaquePointer
    private let allocator: ByteBufferAllocator
    private var inbound: ByteBuffer?
    private var outbound: ByteBuffer?

    init?(allocator: ByteBufferAllocator) {
        guard let bio = BIO_new(Self.method) else { return nil }
        self.bio = bio
        self.allocator = allocator
        // Unretained: this object owns the BIO reference, and `deinit` detaches the pointer, so
        // a BIO that outlives us (held by an SSL) can never reach a dead object.
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
    }

    deinit {
        BIO_set_data(bio, nil)
        BIO_free(bio)
    }

    /// A reference for `SSL_set_bio`, which takes ownership of one reference even when the same
    /// BIO is passed as both read and write BIO.
    func retainedBIO() -> OpaquePointer {
        BIO_up_ref(bio)
        return bio
    }

    /// Ciphertext from the network, for OpenSSL to read.
    func receive(_ buffer: ByteBuffer) {
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

    /// Everything OpenSSL wrote since the last call, or nil.
    func takeOutbound() -> ByteBuffer? {
        defer { outbound = nil }
        return outbound
    }

    /// Drops unread ciphertext (after the connection is closed: nothing will read it).
    func discardInbound() {
        inbound = nil
    }

    fileprivate func read(into destination: UnsafeMutableRawBufferPointer) -> CInt {
        guard var buffer = inbound, buffer.readableBytes > 0 else {
            // No EOF here: with a memory transport OpenSSL learns of the end of the stream only
            // if told, and the handler decides about EOF itself on channelInactive.
            lifeline_BIO_set_retry_read(bio)
            return -1
        }
        inbound = nil  // so that `buffer` is uniquely referenced while we move its reader index
        let count = min(destination.count, buffer.readableBytes, Int(CInt.max))
        buffer.readWithUnsafeReadableBytes { source in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source.prefix(count)))
            return count
        }
        if buffer.readableBytes > 0 {
            inbound = buffer
        }
        return CInt(count)
    }

    fileprivate func write(_ source: UnsafeRawBufferPointer) -> CInt {
        if outbound == nil {
            // Sized for what is being written now; ByteBuffer doubles if more records follow.
            // A buffer sized for a full record per write would cost 16 KiB for each small SSE
            // event queued on a slow connection.
            outbound = allocator.buffer(capacity: source.count)
        }
        outbound!.writeBytes(source)
        return CInt(source.count)
    }

    fileprivate var outboundBytes: Int { outbound?.readableBytes ?? 0 }
}

private func swiftBIO(_ bio: OpaquePointer?) -> ByteBufferBIO? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<ByteBufferBIO>.fromOpaque(data).takeUnretainedValue()
}

private func byteBufferBIOWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let swiftBIO = swiftBIO(bio) else { return -1 }
    lifeline_BIO_clear_retry_flags(bio)
    guard let data, length > 0 else { return 0 }
    return swiftBIO.write(UnsafeRawBufferPointer(start: data, count: Int(length)))
}

private func byteBufferBIORead(_ bio: OpaquePointer?, _ data: UnsafeMutablePointer<CChar>?, _ length: CInt) -> CInt {
    guard let bio, let swiftBIO = swiftBIO(bio) else { return -1 }
    lifeline_BIO_clear_retry_flags(bio)
    guard let data, length > 0 else { return 0 }
    return swiftBIO.read(into: UnsafeMutableRawBufferPointer(start: data, count: Int(length)))
}

private func byteBufferBIOCtrl(
    _ bio: OpaquePointer?, _ command: CInt, _ larg: CLong, _ parg: UnsafeMutableRawPointer?
) -> CLong {
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_PENDING:
        return CLong(swiftBIO(bio)?.inboundBytes ?? 0)
    case BIO_CTRL_WPENDING:
        return CLong(swiftBIO(bio)?.outboundBytes ?? 0)
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
