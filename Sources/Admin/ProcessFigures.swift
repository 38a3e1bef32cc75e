#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's own figures, read from `/proc` (Linux) at scrape time: what Prometheus'
/// `process_*` metrics mean in every client library.
struct ProcessFigures: Sendable, Equatable {
    var residentBytes = 0
    var virtualBytes = 0
    var cpuSeconds = 0.0
    var threads = 0
    /// Seconds since the Unix epoch.
    var startTime = 0.0
    var openFiles = 0
    var maxFiles = 0

    /// - Parameter countingOpenFiles: whether to count the open descriptors, which means listing
    ///   `/proc/self/fd`: one entry per connection, a few milliseconds at 20,000 (the once-a-second
    ///   status sample skips it while no status page is open; see `StatusFeed.tick`).
    static func read(countingOpenFiles: Bool = true) -> ProcessFigures {
        var figures = ProcessFigures()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        if let stat = Self.file("/proc/self/stat"), let fields = Self.statFields(stat), fields.count > 21 {
            // Numbered as in proc(5), from field 3 (state), the first after the command name.
            func field(_ number: Int) -> Double { Double(fields[number - 3]) ?? 0 }
            figures.cpuSeconds = (field(14) + field(15)) / ticks
            figures.threads = Int(field(20))
            figures.virtualBytes = Int(field(23))
            figures.residentBytes = Int(field(24)) * pageSize
            if let boot = Self.bootTime() {
                figures.startTime = boot + field(22) / ticks
            }
        }
        if countingOpenFiles {
            figures.openFiles = Self.countOpenFiles()
        }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            figures.maxFiles = limit.rlim_cur > UInt64(Int.max) ? Int.max : Int(limit.rlim_cur)
        }
        return figures
    }

    /// The fields of `/proc/self/stat` after the command name, which is in parentheses and may
    /// itself hold spaces and parentheses.
    static func statFields(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    private static func bootTime() -> Double? {
        guard let stat = Self.file("/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingSpaces)
        }
        return nil
    }

    private static func countOpenFiles() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        return max(0, count - 1)  // the directory's own descriptor
    }

    /// A small `/proc` file (their size reads as 0, so read until the end).
    private static func file(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
            if bytes.count > 1 << 20 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " || text.last == "\n" { text = text.dropLast() }
        return text
    }
}
