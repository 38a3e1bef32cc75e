import Foundation
import LifelineCore
import Logging
import NIOCore
import Redis
import RedisStore
import Server
import TLS

/// Builds the shared store from `--redis` and its companions.
enum SharedGatewaySetup {
    static func make(_ settings: LifelineSettings, eventLoops: [EventLoop], logger: Logger) throws -> SharedGateway? {
        guard let redis = settings.redis else { return nil }
        var tls: TLSClientContext?
        if redis.url.usesTLS {
            tls = try TLSClientContext(additionalCAPath: redis.caPath, alpn: [])
        }
        let endpoint = RedisEndpoint(
            topology: redis.url.isCluster ? .cluster(seeds: redis.url.addresses) : .standalone(redis.url.addresses[0]),
            username: redis.url.username,
            password: redis.password,
            database: redis.url.database,
            tls: tls,
            connectTimeout: redis.timeout,
            commandTimeout: redis.timeout
        )
        let limits = settings.gateway.stream.replayLimits
        let store = RedisHistoryStore(
            configuration: .init(endpoint: endpoint, lease: redis.lease, maxEvents: max(1, limits.events), maxAge: limits.age),
            instanceName: redis.instanceName,
            eventLoops: eventLoops,
            logger: logger
        )
        let secret = redis.keySecret
        let namer = SharedStreamNamer { message in Digest.hmacSHA256(key: secret, message: message) }
        logger.info("shared store", metadata: [
            "redis": "\(redis.url.addresses.map { "\($0.host):\($0.port)" }.joined(separator: ","))",
            "cluster": "\(redis.url.isCluster)", "tls": "\(redis.url.usesTLS)", "instance": "\(redis.instanceName)",
        ])
        // Kept generations: a running one's keys live three leases past its recorder's last
        // renewal (an instance that died leaves its resumers a break within that).
        let archive = RedisGenerationArchive(
            store: store, namer: namer,
            configuration: .init(liveness: redis.lease * 3, resumeWindow: settings.gateway.stream.resumeWindow,
                                 maxPendingBytes: settings.gateway.stream.privateStreamBytes),
            eventLoops: eventLoops, logger: logger)
        return SharedGateway(store: store, namer: namer, lease: redis.lease, archive: archive)
    }
}

/// Reading small files named by flags (passwords, secrets).
enum FileContents {
    static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(description: FileManager.default.fileExists(atPath: path) ? "not readable" : "no such file")
        }
        guard data.count <= 64 << 10 else { throw FileError(description: "larger than 64 KiB") }
        return [UInt8](data)
    }

    struct FileError: Error, CustomStringConvertible {
        var description: String
    }
}

/// This instance's default name in leases: host name and process id.
enum InstanceName {
    static func `default`() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(getpid())"
    }
}
