import Foundation
import Redis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real Redis Cluster for tests: six `redis-server`s on 127.0.0.1 (three masters, one replica
/// each), made with `redis-cli --cluster create`, without persistence, in a temporary directory.
///
/// A cluster node also listens on its port + 10000 (the cluster bus), and Redis cannot be told to
/// pick a port itself, so each port is chosen at random and both it and its bus port are
/// bind-tested first; a node that still cannot start (the port taken meanwhile) is retried on
/// another.
public final class RedisClusterProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; tests use the cluster from one thread at a time.

    public static let serverPath = executable(named: "redis-server")
    public static let cliPath = executable(named: "redis-cli")

    /// Why a cluster cannot be had here, or nil.
    public static var unavailableReason: String? {
        if serverPath == nil { return "redis-server is not on the PATH" }
        if cliPath == nil { return "redis-cli is not on the PATH" }
        return nil
    }

    private static func executable(named name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: URL
    /// Every node's port, in the order given to `--cluster create` (its first three are usually
    /// the masters; ask `masterPorts()`).
    public private(set) var ports: [Int] = []
    private var processes: [Int: Process] = [:]

    public var seeds: [RedisAddress] { self.ports.map { RedisAddress(host: "127.0.0.1", port: $0) } }

    public init(nodes: Int = 6, nodeTimeoutMilliseconds: Int = 1500) throws {
        guard let server = Self.serverPath, let cli = Self.cliPath else {
            throw Failure(description: Self.unavailableReason ?? "no redis")
        }
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        do {
            for _ in 0..<nodes {
                try self.startNode(server: server, nodeTimeout: nodeTimeoutMilliseconds)
            }
            let create = try Self.run(cli, ["--cluster", "create"] + self.ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "1", "--cluster-yes"])
            guard create.status == 0 else { throw Failure(description: "redis-cli --cluster create failed: \(create.output)") }
            try self.waitUntil("every node says cluster_state:ok", timeout: 20) {
                try self.ports.allSatisfy { try self.cli($0, "CLUSTER", "INFO").contains("cluster_state:ok") }
            }
            // A replica that has not synced yet would not take over from a dead master (its data
            // counts as too old), so the cluster is ready once every replica's link is up.
            try self.waitUntil("every replica has synced", timeout: 20) {
                try self.ports.allSatisfy { port in
                    let replication = try self.cli(port, "INFO", "replication")
                    return replication.contains("role:master") || replication.contains("master_link_status:up")
                }
            }
        } catch {
            self.stop()
            try? FileManager.default.removeItem(at: self.directory)
            throw error
        }
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    // MARK: Nodes

    private func startNode(server: String, nodeTimeout: Int, attempts: Int = 10) throws {
        var lastError = "no attempt"
        for _ in 0..<attempts {
            guard let port = Self.portPair() else { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: server)
            process.arguments = [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf",
                "--cluster-node-timeout", String(nodeTimeout), "--port", String(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.directory.path,
                // Replicas sync at once, instead of waiting 5 s for others to share the transfer.
                "--repl-diskless-sync-delay", "0",
                "--logfile", self.directory.appendingPathComponent("redis-\(port).log").path,
            ]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do {
                try process.run()
                try self.waitUntil("redis-server on \(port) answers", timeout: 10) {
                    guard process.isRunning else { throw Failure(description: "redis-server on \(port) exited with \(process.terminationStatus)") }
                    return LoopbackSockets.redisAnswers(port: port)
                }
                self.ports.append(port)
                self.processes[port] = process
                return
            } catch {
                lastError = "\(error)"
                if process.isRunning {
                    _ = Foundation.kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                }
            }
        }
        throw Failure(description: "could not start a cluster node: \(lastError)")
    }

    /// Kills one node at once (SIGKILL: its connections reset; a replica takes over after the
    /// node timeout).
    public func kill(port: Int) {
        guard let process = self.processes[port], process.isRunning else { return }
        _ = Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Stops every node, with SIGKILL: the children inherit the test process's signal mask, in
    /// which SIGTERM is blocked under XCTest on Linux, and they have nothing to save.
    public func stop() {
        for port in self.processes.keys { self.kill(port: port) }
    }

    /// The ports of the nodes that are masters now (and not failed), from `CLUSTER NODES` as
    /// `port` sees it.
    public func masterPorts(askingPort port: Int? = nil) throws -> [Int] {
        let nodes = try self.cli(port ?? self.ports[0], "CLUSTER", "NODES")
        return nodes.split(separator: "\n").compactMap { line -> Int? in
            let fields = line.split(separator: " ")
            guard fields.count >= 8 else { return nil }
            let flags = fields[2].split(separator: ",")
            guard flags.contains("master"), !flags.contains("fail"), !flags.contains("fail?") else { return nil }
            // A master serves slots (fields from the 9th on). Right after the cluster is made, a
            // node that is becoming a replica can still be listed as a master with none.
            guard fields.count > 8 else { return nil }
            // `127.0.0.1:30001@40001`
            let address = fields[1].split(separator: "@")[0]
            return address.split(separator: ":").last.flatMap { Int($0) }
        }.sorted()
    }

    /// The node ID of the node on `port`.
    public func nodeID(port: Int) throws -> String {
        try self.cli(port, "CLUSTER", "MYID").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: redis-cli

    /// `redis-cli -p PORT ARGS…` without `-c` (no redirection is followed); its output as it is.
    /// Throws when it cannot run or exits with an error.
    @discardableResult
    public func cli(_ port: Int, _ arguments: String...) throws -> String {
        guard let cli = Self.cliPath else { throw Failure(description: "no redis-cli") }
        let result = try Self.run(cli, ["-h", "127.0.0.1", "-p", String(port)] + arguments)
        guard result.status == 0 else { throw Failure(description: "redis-cli \(arguments) on \(port): \(result.output)") }
        return result.output
    }

    private static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        // Read before waiting: a full pipe would block the child.
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    public func waitUntil(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError: (any Error)?
        while Date() < deadline {
            do {
                if try condition() { return }
            } catch {
                lastError = error
            }
            usleep(50_000)
        }
        throw Failure(description: "timed out waiting until \(what)" + (lastError.map { " (last: \($0))" } ?? ""))
    }

    // MARK: Sockets

    /// A random port P ≤ 55535 such that P and its bus port P + 10000 are free on 127.0.0.1 now.
    private static func portPair() -> Int? {
        for _ in 0..<100 {
            let port = Int.random(in: 20000...55535)
            if LoopbackSockets.canBind(port), LoopbackSockets.canBind(port + 10000) { return port }
        }
        return nil
    }
}
