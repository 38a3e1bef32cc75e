import Foundation
import Redis

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `redis-server` for tests: on 127.0.0.1, on a free port, without persistence, logging to
/// a file in a temporary directory. Redis cannot be told to pick a port itself (`--port 0` turns
/// TCP off), so a port is found by binding a socket to port 0 and closing it; when another
/// process takes it meanwhile, the server exits and another port is tried.
public final class RedisServerProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; tests start and stop it from one thread at a time.

    /// The `redis-server` on the PATH, or nil.
    public static let executablePath: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    public let port: Int
    public let directory: URL
    private let process: Process

    public var address: RedisAddress { RedisAddress(host: "127.0.0.1", port: self.port) }
    public var pid: Int32 { self.process.processIdentifier }
    public var logFile: URL { self.directory.appendingPathComponent("redis.log") }

    /// Starts a server with extra configuration (`["--requirepass", "secret"]`) and waits until
    /// it answers. Throws when there is no `redis-server` or it does not come up.
    public init(arguments: [String] = [], attempts: Int = 5) throws {
        guard let executable = Self.executablePath else { throw Failure.notInstalled }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        var lastError: any Error = Failure.didNotStart("no attempt")
        for _ in 0..<attempts {
            guard let port = LoopbackSockets.freePort() else { throw Failure.didNotStart("no free port") }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", directory.path, "--logfile", directory.appendingPathComponent("redis.log").path,
            ] + arguments
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            do {
                try process.run()
                try Self.waitUntilAnswering(port: port, process: process)
                self.port = port
                self.process = process
                return
            } catch {
                lastError = error
                if process.isRunning {
                    _ = Foundation.kill(process.processIdentifier, SIGKILL)
                    process.waitUntilExit()
                }
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError
    }

    deinit {
        self.stop()
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Sends `signal` (SIGKILL: the server dies at once, its connections reset).
    public func kill(_ signal: Int32 = SIGKILL) {
        guard self.process.isRunning else { return }
        _ = Foundation.kill(self.process.processIdentifier, signal)
        self.process.waitUntilExit()
    }

    /// Stops the server and waits for it. With SIGKILL: the child inherits the test process's
    /// signal mask, in which SIGTERM may be blocked (it is under XCTest on Linux), and a server
    /// without persistence has nothing to save.
    public func stop() {
        self.kill(SIGKILL)
    }

    public enum Failure: Error, CustomStringConvertible {
        case notInstalled
        case didNotStart(String)

        public var description: String {
            switch self {
            case .notInstalled: return "redis-server is not on the PATH"
            case .didNotStart(let why): return "redis-server did not start: \(why)"
            }
        }
    }

    /// Polls with a plain blocking socket until `PING` gets any reply (`+PONG`, or `-NOAUTH`
    /// with a password), for up to 10 s.
    private static func waitUntilAnswering(port: Int, process: Process) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard process.isRunning else { throw Failure.didNotStart("exited with \(process.terminationStatus) (port \(port) taken?)") }
            if LoopbackSockets.redisAnswers(port: port) { return }
            usleep(20_000)
        }
        throw Failure.didNotStart("no answer on port \(port)")
    }
}
