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
            let port = try Self.freePort()
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

    // MARK: - Sockets

    /// A port the kernel just gave out for 127.0.0.1, released again.
    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.didNotStart("socket: errno \(errno)") }
        defer { close(fd) }
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw Failure.didNotStart("bind: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw Failure.didNotStart("getsockname: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }

    /// Polls with a plain blocking socket until `PING` gets any reply (`+PONG`, or `-NOAUTH`
    /// with a password), for up to 10 s.
    private static func waitUntilAnswering(port: Int, process: Process) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard process.isRunning else { throw Failure.didNotStart("exited with \(process.terminationStatus) (port \(port) taken?)") }
            if Self.ping(port: port) { return }
            usleep(20_000)
        }
        throw Failure.didNotStart("no answer on port \(port)")
    }

    private static func ping(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = Self.loopback(port: UInt16(port))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        let request = Array("PING\r\n".utf8)
        guard write(fd, request, request.count) == request.count else { return false }
        var reply = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &reply, reply.count)
        return count > 0 && (reply[0] == UInt8(ascii: "+") || reply[0] == UInt8(ascii: "-"))
    }
}
