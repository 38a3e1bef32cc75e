import NIOCore

/// Reads the descriptors of accepted connections from a loop's `ConnectionInbox` and starts each
/// on the loop. It reads as any other channel does, a bounded amount per pass of the loop, so
/// a flood of new connections takes turns with the loop's established ones instead of filling
/// its task queue (SwiftNIO runs every queued task before it looks at a socket again).
final class ConnectionInboxReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private enum State {
        case reading
        /// Part of a descriptor came in one read; the rest comes in the next.
        case partial(ByteBuffer)
    }

    private var state = State.reading
    private let start: (CInt) -> Void

    /// - Parameter start: builds a connection's channel on this loop from its descriptor (and
    ///   owns the descriptor from then on).
    init(start: @escaping (CInt) -> Void) {
        self.start = start
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        if case .partial(var held) = self.state {
            held.writeBuffer(&bytes)
            bytes = held
        }
        while let descriptor = bytes.readInteger(endianness: .host, as: CInt.self) {
            self.start(descriptor)
        }
        self.state = bytes.readableBytes > 0 ? .partial(bytes) : .reading
    }

    /// The accepting side closed its end: what it sent whole was read first; a part of a
    /// descriptor left over is dropped (the acceptor closed that connection itself).
    func channelInactive(context: ChannelHandlerContext) {
        self.state = .reading
        context.fireChannelInactive()
    }
}
