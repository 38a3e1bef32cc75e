import NIOCore
import Redis
import TLS

/// Where the shared store is and how to talk to it, from `--redis=URL` and its companion flags.
public struct RedisEndpoint: Sendable {
    public enum Topology: Sendable, Equatable {
        /// One server (or a proxy in front of several).
        case standalone(RedisAddress)
        /// A Redis Cluster, found from these seed nodes.
        case cluster(seeds: [RedisAddress])
    }

    public var topology: Topology
    public var username: String?
    public var password: String?
    public var database: Int
    /// Set for `rediss://`.
    public var tls: TLSClientContext?
    public var connectTimeout: TimeAmount
    /// A command without an answer in this time counts as Redis being down.
    public var commandTimeout: TimeAmount

    public init(
        topology: Topology, username: String? = nil, password: String? = nil, database: Int = 0,
        tls: TLSClientContext? = nil, connectTimeout: TimeAmount = .seconds(2), commandTimeout: TimeAmount = .seconds(2)
    ) {
        self.topology = topology
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
    }

    /// The first address to connect to (the server, or the first seed).
    var primaryAddress: RedisAddress {
        switch self.topology {
        case .standalone(let address): return address
        case .cluster(let seeds): return seeds[0]
        }
    }

    func configuration(clientName: String? = nil) -> RedisConnection.Configuration {
        var configuration = RedisConnection.Configuration()
        configuration.username = self.username
        configuration.password = self.password
        configuration.database = self.database
        configuration.tls = self.tls
        configuration.connectTimeout = self.connectTimeout
        configuration.clientName = clientName
        return configuration
    }

    func connect(to address: RedisAddress? = nil, on eventLoop: EventLoop) -> EventLoopFuture<RedisConnection> {
        RedisConnection.connect(to: address ?? self.primaryAddress, configuration: self.configuration(clientName: "lifeline"), on: eventLoop)
    }

    /// Reconnect delays: 100 ms doubling to 5 s.
    static func backoff(attempt: Int) -> TimeAmount {
        .milliseconds(min(5000, 100 << Int64(min(attempt, 6))))
    }
}
