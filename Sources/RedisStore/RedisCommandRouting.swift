import NIOCore
import Redis

/// Where one event loop's commands go: the one server (`RedisClient`), or, in a Redis Cluster,
/// the node that holds each key's slot (`RedisClusterClient`). Confined to `eventLoop`; every
/// future it returns completes there.
protocol RedisCommandRouting: AnyObject {
    var eventLoop: EventLoop { get }
    /// Whether the last thing tried worked.
    var isUp: Bool { get }
    /// Sends one command about `key` (nil: any node will do). Fails with `RedisUnavailable` when
    /// Redis cannot be reached or does not answer in time, with `RedisServerError` for an error
    /// reply.
    func send(_ command: RESPCommand, key: String?) -> EventLoopFuture<RESPToken>
    /// Runs a server-side script on the node of `keys` (which share a slot) by its digest,
    /// loading it when the server does not have it.
    func run(_ script: RedisScript, keys: [String], arguments: [RESPArgument]) -> EventLoopFuture<RESPToken>
    /// Where to open a connection of its own (a follower's blocking reads) for `key`.
    func address(forKey key: String) -> EventLoopFuture<RedisAddress>
    func close()
}
