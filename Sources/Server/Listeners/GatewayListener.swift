import NIOCore

/// One of the gateway's listeners: a SwiftNIO server channel, or (plaintext with `--io-uring`) a
/// socket accepted by the gateway itself (`PlainAcceptor`).
enum GatewayListener: Sendable {
    case channel(Channel)
    case acceptor(PlainAcceptor)

    var localAddress: SocketAddress? {
        switch self {
        case .channel(let channel): return channel.localAddress
        case .acceptor(let acceptor): return acceptor.localAddress
        }
    }

    /// Stops accepting here; idempotent.
    func close() async {
        switch self {
        case .channel(let channel): try? await channel.close()
        case .acceptor(let acceptor): await acceptor.close()
        }
    }
}
