import NIOCore
import NIOHTTP1
import NIOPosix

/// The benchmark origin's listener: one `OriginLoop` per event loop, made up front so that the
/// table child channels look theirs up in never changes (and needs no lock).
enum OriginServer {
    static func start(
        host: String, port: Int, schedule: OriginSchedule, stats: OriginStats = OriginStats(),
        group: MultiThreadedEventLoopGroup
    ) async throws -> Channel {
        try await self.bootstrap(schedule: schedule, stats: stats, group: group).bind(host: host, port: port).get()
    }

    private static func bootstrap(schedule: OriginSchedule, stats: OriginStats, group: MultiThreadedEventLoopGroup)
        -> ServerBootstrap
    {
        var loops: [ObjectIdentifier: OriginLoop] = [:]
        for eventLoop in group.makeIterator() {
            let loop = OriginLoop(eventLoop: eventLoop, schedule: schedule, stats: stats)
            loops[ObjectIdentifier(eventLoop)] = loop
            loop.start()
        }
        let table = loops
        let streamHead = OriginEventEncoder.streamHead(
            retryMilliseconds: schedule.retryMilliseconds, allocator: ByteBufferAllocator())

        return ServerBootstrap(group: group)
            // A restarted origin must get its port back at once, with the old connections in TIME_WAIT.
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // A direct run connects thousands of clients within a second or two.
            .serverChannelOption(.backlog, value: 4096)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // A reader more than this far behind is closed (see OriginStreamHandler.deliver).
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))
            .childChannelInitializer { channel in
                guard let loop = table[ObjectIdentifier(channel.eventLoop)] else {
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)))
                    try channel.pipeline.syncOperations.addHandler(
                        OriginStreamHandler(loop: loop, streamHead: streamHead))
                }
            }
    }

    /// `start` for tests, which run outside an async context: 127.0.0.1, a free port.
    static func startForTests(schedule: OriginSchedule, stats: OriginStats, group: MultiThreadedEventLoopGroup) throws
        -> Channel
    {
        try self.bootstrap(schedule: schedule, stats: stats, group: group).bind(host: "127.0.0.1", port: 0).wait()
    }
}
