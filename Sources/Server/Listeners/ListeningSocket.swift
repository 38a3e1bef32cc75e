import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Listening TCP sockets made by hand rather than by `ServerBootstrap.bind`, so that the gateway
/// knows their descriptors: an in-place upgrade hands them to the new process, which takes them
/// with `ServerBootstrap.withBoundSocket` instead of binding (binding again would fail or, with
/// SO_REUSEPORT, refuse connections in between).
public enum ListeningSocket {
    /// The accept queue's length asked for (see `bind`).
    public static let backlog: Int32 = 65535

    /// Sets the accept queue of a socket NIO has taken (`ServerBootstrap.withBoundSocket`) back to
    /// `backlog`: NIO calls `listen` again with its own default (128), which a reconnect storm
    /// overflows. `listen` on a listening socket only changes its backlog.
    public static func restoreBacklog(_ fd: CInt, backlog: Int32 = Self.backlog) throws {
        guard listen(fd, backlog) == 0 else {
            throw Failure(description: "listen again: \(Self.errorText())")
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A socket bound to `host:port` and listening, close-on-exec (an upgrade passes copies).
    ///
    /// The backlog is large because of reconnect storms: after a network blip every client comes
    /// back at once, and a full accept queue drops the handshake's last ACK, so the client's
    /// connect waits a SYN-ACK retransmission (1 s, then 2 s more). The kernel caps it at
    /// `net.core.somaxconn` (4096 by default), as it does nginx's and HAProxy's.
    public static func bind(host: String, port: Int, backlog: Int32 = Self.backlog) throws -> CInt {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let family = address.protocol.rawValue
        #if canImport(Glibc)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(family, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket(): \(Self.errorText())") }
        var one: CInt = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        let bound = address.withSockAddr { pointer, size in Glibc.bind(fd, pointer, socklen_t(size)) }
        guard bound == 0 else {
            let text = Self.errorText()
            close(fd)
            throw Failure(description: "bind \(host):\(port): \(text)")
        }
        guard listen(fd, backlog) == 0 else {
            let text = Self.errorText()
            close(fd)
            throw Failure(description: "listen \(host):\(port): \(text)")
        }
        return fd
    }

    /// The address `fd` is bound to, if it is a socket.
    public static func localAddress(_ fd: CInt) -> SocketAddress? {
        var storage = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in.self), host: "")
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                SocketAddress(raw.load(as: sockaddr_in6.self), host: "")
            }
        default:
            return nil
        }
    }

    /// Whether `fd` is a listening stream socket (what an inherited descriptor must be).
    public static func isListening(_ fd: CInt) -> Bool {
        var value: CInt = 0
        var size = socklen_t(MemoryLayout<CInt>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &size) == 0 && value != 0
    }

    /// A close-on-exec copy of `fd` numbered at least `minimum` (for handing it to a new process
    /// under a number of its own).
    public static func duplicate(_ fd: CInt, atLeast minimum: CInt = 100) -> CInt? {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, minimum)
        return copy >= 0 ? copy : nil
    }

    static func errorText() -> String {
        String(cString: strerror(errno))
    }
}
