import NIOCore
import NIOPosix
import TLS

/// One connection to a Redis server (6 or later), speaking RESP3, pipelined: commands are written
/// as soon as they are sent, without waiting for earlier replies, and replies are matched with
/// commands in order.
///
/// Thread safety: every method can be called from any thread; the work hops to the connection's
/// event loop, and returned futures belong to that loop. State lives in the channel's handler,
/// which the connection reaches only on the loop (through `NIOLoopBound`), so the class holds
/// nothing mutable of its own and is `Sendable` without `@unchecked`. The properties that read
/// that state (`isOpen`, `pendingCount`, the getter of `onPush`) must be called on the loop.
///
/// No reconnecting, no retries, no bound on pending commands: those are the caller's, which can
/// read `pendingCount` and `closeFuture`.
public final class RedisConnection: Sendable {
    /// How to open a connection.
    public struct Configuration: Sendable {
        /// The ACL user; "default" when nil and a password is set.
        public var username: String?
        /// When set, the handshake authenticates (`HELLO 3 AUTH username password`).
        public var password: String?
        /// The database to `SELECT` after the handshake (when not 0).
        public var database: Int
        /// TLS (`rediss://`) when set.
        public var tls: TLSClientContext?
        /// The name the server's certificate must carry, and the SNI sent (unless it is an IP
        /// address); the address's host when nil.
        public var serverName: String?
        /// How long TCP connect, TLS and the handshake may take, each.
        public var connectTimeout: TimeAmount
        /// Bounds on what the server's replies can make the parser accept.
        public var parserLimits: RESPTokenParser.Limits
        /// `CLIENT SETNAME` (sent in HELLO), shown by `CLIENT LIST`.
        public var clientName: String?

        public init(
            username: String? = nil,
            password: String? = nil,
            database: Int = 0,
            tls: TLSClientContext? = nil,
            serverName: String? = nil,
            connectTimeout: TimeAmount = .seconds(10),
            parserLimits: RESPTokenParser.Limits = .init(),
            clientName: String? = nil
        ) {
            self.username = username
            self.password = password
            self.database = database
            self.tls = tls
            self.serverName = serverName
            self.connectTimeout = connectTimeout
            self.parserLimits = parserLimits
            self.clientName = clientName
        }
    }

    /// The loop the connection's channel, handler and futures are on.
    public let eventLoop: any EventLoop
    private let channel: any Channel
    private let handler: NIOLoopBound<RedisConnectionHandler>

    private init(channel: any Channel, handler: RedisConnectionHandler) {
        self.eventLoop = channel.eventLoop
        self.channel = channel
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
    }

    /// Connects (TCP, then TLS when `configuration.tls` is set) and runs the handshake: `HELLO 3`
    /// with `AUTH` when a password is set and `SETNAME` when a client name is, then `SELECT`
    /// when the database is not 0, pipelined. Succeeds once all of them did.
    ///
    /// Fails with the connect error (`NIOConnectionError`, `ChannelError.connectTimeout`, a
    /// `TLSError`), `RedisConnectionError.handshakeRejected` (WRONGPASS, NOPERM, a server without
    /// HELLO), `.unexpectedHandshakeReply`, `.protocolError` or `.closed`. The channel is closed
    /// when it fails.
    public static func connect(
        to address: RedisAddress,
        configuration: Configuration,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<RedisConnection> {
        let tls = configuration.tls
        let serverName = configuration.serverName ?? address.host
        let limits = configuration.parserLimits
        let handshake = RedisHandshake(configuration: configuration)
        let timeout = configuration.connectTimeout
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    if let tls {
                        try operations.addHandler(OpenSSLHandler.client(context: tls, serverName: serverName))
                    }
                    try operations.addHandler(ByteToMessageHandler(RESPTokenDecoder(limits: limits)))
                    try operations.addHandler(RedisConnectionHandler())
                }
            }
            .connect(host: address.host, port: address.port)
            .flatMap { channel in
                // On the channel's loop (a ClientBootstrap's futures are).
                let handler: RedisConnectionHandler
                do {
                    handler = try channel.pipeline.syncOperations.handler(type: RedisConnectionHandler.self)
                } catch {
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(error)
                }
                let connection = RedisConnection(channel: channel, handler: handler)
                let promise = channel.eventLoop.makePromise(of: Void.self)
                handler.startHandshake(handshake, timeout: timeout, promise: promise)
                return promise.futureResult.map { connection }
            }
    }

    /// Sends one command; the future gets its reply. An error reply fails it with
    /// `RedisServerError`; a closed connection with `RedisConnectionError`.
    public func send(_ command: RESPCommand) -> EventLoopFuture<RESPToken> {
        let promise = self.eventLoop.makePromise(of: RESPToken.self)
        self.onLoop { $0.send(command, promise: promise) }
        return promise.futureResult
    }

    /// Sends the commands in one write and one flush; the future gets their replies, in order.
    /// Error replies are returned in place as tokens (`errorMessage` reads them), not thrown, so
    /// that the caller sees which command failed and still gets the others' replies. A closed
    /// connection fails the whole batch with `RedisConnectionError`.
    public func send(_ commands: [RESPCommand]) -> EventLoopFuture<[RESPToken]> {
        let promise = self.eventLoop.makePromise(of: [RESPToken].self)
        self.onLoop { $0.send(commands, promise: promise) }
        return promise.futureResult
    }

    /// Receives every RESP3 push message (pub/sub messages, subscription confirmations,
    /// client-side caching invalidations) in order, on the event loop. Pushes are never taken as
    /// replies. Set and read on the event loop (the closure need not be `Sendable`, so it cannot
    /// cross threads); from elsewhere, use `setOnPush(_:)`.
    public var onPush: ((RESPToken) -> Void)? {
        get { self.handler.value.onPush }
        set { self.handler.value.onPush = newValue }
    }

    /// Sets `onPush` from any thread: it takes effect on the loop, before any command sent
    /// afterwards from the same thread.
    public func setOnPush(_ onPush: (@Sendable (RESPToken) -> Void)?) {
        self.onLoop { $0.onPush = onPush }
    }

    /// Whether the connection can take commands (false once it closed or started closing).
    /// On the event loop.
    public var isOpen: Bool { self.handler.value.isOpen }

    /// Commands sent whose replies have not come yet. On the event loop.
    public var pendingCount: Int { self.handler.value.pendingCount }

    /// Succeeds when the connection has closed, whatever closed it.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    /// Closes the connection; pending commands fail with `RedisConnectionError.closed`.
    public func close() {
        self.channel.close(promise: nil)
    }

    private func onLoop(_ body: @escaping @Sendable (RedisConnectionHandler) -> Void) {
        if self.eventLoop.inEventLoop {
            body(self.handler.value)
        } else {
            let handler = self.handler
            self.eventLoop.execute { body(handler.value) }
        }
    }
}
