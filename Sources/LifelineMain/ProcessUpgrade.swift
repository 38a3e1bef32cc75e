import CSpawn
import Dispatch
import Logging
import Server

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGUSR2: starts a new Lifeline from the binary installed at the path this one was started
/// from, with the same arguments (so flag files are read again), and hands it the listening
/// sockets (`InheritedListeners`). The new process says it is ready over a pipe once it listens;
/// then this one stops accepting and drains. If it exits or stays silent, this one goes on.
enum ProcessUpgrade {
    static let readyVariable = "LIFELINE_READY_FD"
    /// How long the new process has to say it is ready.
    static let readyTimeoutSeconds: Int32 = 30

    /// The binary's path, read once at start: an upgrade runs whatever is installed there then
    /// (`/proc/self/exe` itself would point at the old, replaced file).
    nonisolated(unsafe) private(set) static var executablePath: String?

    static func rememberExecutable() {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if count > 0 {
            buffer[count] = 0
            self.executablePath = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        } else {
            self.executablePath = CommandLine.arguments.first
        }
    }

    /// Starts the new process; its outcome arrives on `events` (`upgradeReady`, `upgradeFailed`).
    static func start(listeners: [(role: String, fd: CInt)], events: LifecycleEvents, logger: Logger) {
        guard let path = self.executablePath else {
            return events.send(.upgradeFailed("the path of the running binary is unknown"))
        }
        // Copies under numbers of our own (≥ 100), moved to 3, 4, … in the new process.
        var copies: [CInt] = []
        defer { for fd in copies { close(fd) } }
        var handOver: [(role: String, fd: CInt)] = []
        for (index, listener) in listeners.enumerated() {
            guard let copy = ListeningSocket.duplicate(listener.fd) else {
                return events.send(.upgradeFailed("cannot copy listening socket \(listener.fd): \(String(cString: strerror(errno)))"))
            }
            copies.append(copy)
            handOver.append((listener.role, CInt(3 + index)))
        }
        var pipeEnds: [CInt] = [-1, -1]
        guard pipe(&pipeEnds) == 0 else {
            return events.send(.upgradeFailed("pipe: \(String(cString: strerror(errno)))"))
        }
        // Close-on-exec: only the copy moved to `readyFD` reaches the new process.
        _ = fcntl(pipeEnds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(pipeEnds[1], F_SETFD, FD_CLOEXEC)
        let readyFD = CInt(3 + listeners.count)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, copy) in copies.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, copy, CInt(3 + index))
        }
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], readyFD)
        // Nothing else: not the clients' connections (NIO's accepted sockets are not
        // close-on-exec), which must close when this process exits.
        guard lifeline_spawn_close_from(&actions, readyFD + 1) == 0 else {
            close(pipeEnds[0])
            close(pipeEnds[1])
            return events.send(.upgradeFailed("this C library cannot close descriptors for the new process (glibc 2.34+ needed)"))
        }

        var environment = Self.environment().filter {
            !$0.hasPrefix(InheritedListeners.handOverVariable + "=") && !$0.hasPrefix(Self.readyVariable + "=")
        }
        environment.append("\(InheritedListeners.handOverVariable)=\(InheritedListeners.handOverValue(handOver))")
        environment.append("\(Self.readyVariable)=\(readyFD)")
        let arguments = [path] + CommandLine.arguments.dropFirst()

        var pid: pid_t = 0
        let spawned = Self.withCStrings(arguments) { argv in
            Self.withCStrings(environment) { envp in
                posix_spawn(&pid, path, &actions, nil, argv, envp)
            }
        }
        close(pipeEnds[1])
        guard spawned == 0 else {
            close(pipeEnds[0])
            return events.send(.upgradeFailed("cannot start \(path): \(String(cString: strerror(spawned)))"))
        }
        logger.notice("upgrade: new process started", metadata: ["pid": "\(pid)", "binary": "\(path)"])
        let readEnd = pipeEnds[0]
        let child = pid
        // Off the event loops and the cooperative pool: it blocks on the pipe, then reaps a
        // process that failed.
        DispatchQueue(label: "lifeline.upgrade").async {
            let ready = Self.waitForReady(readEnd)
            close(readEnd)
            if ready {
                events.send(.upgradeReady(pid: child))
            } else {
                kill(child, SIGTERM)
                var status: CInt = 0
                waitpid(child, &status, 0)
                events.send(.upgradeFailed("the new process (pid \(child)) exited or did not get ready within \(Self.readyTimeoutSeconds) s"))
            }
        }
    }

    /// True once the pipe says `ready`; false on end of file or timeout.
    private static func waitForReady(_ fd: CInt) -> Bool {
        var received: [UInt8] = []
        let deadline = time(nil) + time_t(Self.readyTimeoutSeconds)
        while time(nil) < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let waited = poll(&poller, 1, 1000)
            if waited < 0 && errno != EINTR { return false }
            guard waited > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 64)
            let count = read(fd, &chunk, chunk.count)
            if count <= 0 { return false }
            received += chunk[..<count]
            if String(decoding: received, as: UTF8.self).contains("ready") { return true }
        }
        return false
    }

    /// In a process started by an upgrade: tells the old one that this one listens.
    static func tellOldProcessReady() {
        guard let text = getenv(Self.readyVariable).map({ String(cString: $0) }), let fd = CInt(text) else { return }
        unsetenv(Self.readyVariable)
        let message = Array("ready\n".utf8)
        _ = message.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    private static func environment() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }

    private static func withCStrings<T>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> T) -> T {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
        pointers.append(nil)
        defer { for pointer in pointers { free(pointer) } }
        return body(pointers)
    }
}
