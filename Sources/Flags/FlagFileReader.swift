#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads flag files from disk with plain POSIX calls, so `Flags` needs no Foundation.
public enum FlagFileReader {
    /// Why a file could not be read; its description is the system's message, e.g.
    /// `No such file or directory`.
    public struct ReadError: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public var description: String { self.reason }
    }

    /// Flag files are small; anything this large is almost certainly the wrong file.
    static let maximumSize = 16 << 20

    /// Returns the contents of the file at `path` as UTF-8 (invalid bytes become U+FFFD).
    public static func readFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ReadError(reason: systemMessage(errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: systemMessage(errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maximumSize {
                throw ReadError(reason: "larger than \(maximumSize >> 20) MiB")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func systemMessage(_ code: Int32) -> String {
        guard let message = strerror(code) else { return "error \(code)" }
        return String(cString: message)
    }
}

/// `path` as seen from the file at `including`: absolute paths stay, relative ones are joined to
/// that file's directory (so a flag file can sit next to the files it includes).
func resolve(_ path: String, relativeToFileAt including: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let slash = including.lastIndex(of: "/") else { return path }
    return String(including[...slash]) + path
}

/// A spelling of `path` without `.`, `..` and repeated slashes, so that `a/../b.flags` and
/// `./b.flags` are seen as the same file when looking for include cycles.
func normalizedPath(_ path: String) -> String {
    let absolute = path.hasPrefix("/")
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
        switch part {
        case ".":
            continue
        case "..":
            if let last = parts.last, last != ".." {
                parts.removeLast()
            } else if !absolute {
                parts.append(part)
            }
        default:
            parts.append(part)
        }
    }
    let joined = parts.joined(separator: "/")
    return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
}
