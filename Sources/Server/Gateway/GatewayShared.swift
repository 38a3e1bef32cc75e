import LifelineCore
import Logging
import NIOCore
import TLS
import Upstream

/// What every connection handler of a gateway shares: configuration, routes, the stream hub and
/// the connection limits. Immutable or internally synchronized. A configuration reload makes a
/// new one that keeps the hub, the limiter (with the new limits), the counters and the loggers,
/// and gives it to each loop (`LoopContext.shared`): new connections and requests take it, what
/// runs keeps the one it started with.
final class GatewayShared: Sendable {
    let configuration: GatewayConfiguration
    let router: Router
    let hub: StreamHub
    let limiter: ConnectionLimiter
    let logger: Logger
    let accessLogger: Logger
    let metrics: GatewayMetrics
    let tlsMetrics: TLSMetrics
    /// Private generations that can be resumed, by token.
    let generations: GenerationRegistry
    /// Requests sent under an `Idempotency-Key`, and their generations.
    let idempotency: IdempotencyRegistry

    init(configuration: GatewayConfiguration, hub: StreamHub, eventLoops: [EventLoop], logger: Logger) {
        self.configuration = configuration
        self.router = Router(routes: configuration.routes)
        self.hub = hub
        self.limiter = ConnectionLimiter(
            maxClients: configuration.maxClients,
            maxPerAddress: configuration.maxClientsPerIP
        )
        self.logger = logger
        var accessLogger = logger
        accessLogger[metadataKey: "log"] = "access"
        self.accessLogger = accessLogger
        self.metrics = GatewayMetrics(eventLoops: eventLoops)
        self.tlsMetrics = TLSMetrics()
        self.generations = GenerationRegistry()
        self.idempotency = IdempotencyRegistry()
    }

    /// The same gateway with `configuration`.
    init(reloading previous: GatewayShared, configuration: GatewayConfiguration) {
        self.configuration = configuration
        self.router = Router(routes: configuration.routes)
        self.hub = previous.hub
        self.limiter = previous.limiter
        self.limiter.updateLimits(maxClients: configuration.maxClients, maxPerAddress: configuration.maxClientsPerIP)
        self.logger = previous.logger
        self.accessLogger = previous.accessLogger
        self.metrics = previous.metrics
        self.tlsMetrics = previous.tlsMetrics
        self.generations = previous.generations
        self.idempotency = previous.idempotency
    }
}
