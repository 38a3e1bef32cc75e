#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Listening sockets this process was given at start instead of binding its own:
/// - by an older Lifeline handing over on SIGUSR2: `LIFELINE_LISTEN_FDS=listen:3,tls-listen:4,admin-listen:5`,
///   in each role's order of addresses;
/// - by systemd socket activation: `LISTEN_FDS=N` (descriptors 3 … 3+N-1) when `LISTEN_PID` is this
///   process; each is used for the configured address it is bound to.
/// The variables are removed once read, so that they do not leak into a process started later.
public final class InheritedListeners: @unchecked Sendable {  // used at start-up, by one task
    /// Descriptors by role (`listen`, `tls-listen`, `admin-listen`), in order.
    public private(set) var byRole: [String: [CInt]]
    /// Descriptors matched by the address they are bound to (systemd).
    public private(set) var byAddress: [CInt]

    public init(byRole: [String: [CInt]] = [:], byAddress: [CInt] = []) {
        self.byRole = byRole
        self.byAddress = byAddress
    }

    public var isEmpty: Bool { self.byRole.values.allSatisfy(\.isEmpty) && self.byAddress.isEmpty }

    public static let handOverVariable = "LIFELINE_LISTEN_FDS"

    /// Reads (and removes) what the environment says this process inherited.
    public static func fromEnvironment() -> InheritedListeners {
        let inherited = InheritedListeners()
        if let text = getenv(Self.handOverVariable).map({ String(cString: $0) }) {
            unsetenv(Self.handOverVariable)
            inherited.byRole = Self.parseHandOver(text)
        }
        if let count = getenv("LISTEN_FDS").flatMap({ Int32(String(cString: $0)) }),
            let pid = getenv("LISTEN_PID").flatMap({ Int32(String(cString: $0)) }), pid == getpid(), count > 0
        {
            inherited.byAddress = (0..<count).map { 3 + $0 }
            for fd in inherited.byAddress {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
        }
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDNAMES")
        return inherited
    }

    /// `role:fd,role:fd,…`; malformed items are skipped.
    public static func parseHandOver(_ text: String) -> [String: [CInt]] {
        var byRole: [String: [CInt]] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: ":")
            guard parts.count == 2, let fd = CInt(parts[1]), fd >= 0 else { continue }
            byRole[String(parts[0]), default: []].append(fd)
        }
        return byRole
    }

    public static func handOverValue(_ byRole: [(role: String, fd: CInt)]) -> String {
        byRole.map { "\($0.role):\($0.fd)" }.joined(separator: ",")
    }

    /// The descriptor to use for the `index`-th address of `role` (`host:port`), if one was
    /// inherited: by role and position first, else a systemd socket bound to that address.
    public func take(role: String, index: Int, host: String, port: Int) -> CInt? {
        if var fds = self.byRole[role], index < fds.count, fds[index] >= 0 {
            let fd = fds[index]
            fds[index] = -1
            self.byRole[role] = fds
            if ListeningSocket.isListening(fd) { return fd }
        }
        for (position, fd) in self.byAddress.enumerated() {
            guard let address = ListeningSocket.localAddress(fd), address.port == port || port == 0 else { continue }
            let anyHost = host == "0.0.0.0" || host == "::" || host.isEmpty
            guard anyHost || address.ipAddress == host else { continue }
            self.byAddress.remove(at: position)
            return fd
        }
        return nil
    }

    /// Descriptors inherited but not used by any configured address: closed, so that the socket
    /// stops accepting when the old process lets go of it.
    public func closeUnused() -> Int {
        let unused = self.byRole.values.flatMap { $0 }.filter { $0 >= 0 } + self.byAddress
        for fd in unused { close(fd) }
        self.byRole = [:]
        self.byAddress = []
        return unused.count
    }
}
