#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two clocks of the benchmark.
///
/// Delivery latency is measured across processes (origin → gateway → load tool), so the stamp an
/// event carries must be read from a clock every process on the machine shares: CLOCK_REALTIME.
/// It can step (NTP), which would show as one odd latency sample; durations inside one process
/// (time to first byte, the ramp, progress) use CLOCK_MONOTONIC, which cannot.
enum BenchClock {
    /// Nanoseconds since the Unix epoch.
    @inline(__always)
    static func wallNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) &* 1_000_000_000 &+ Int64(now.tv_nsec)
    }

    /// Nanoseconds on the monotonic clock (the one `NIODeadline` uses).
    @inline(__always)
    static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) &* 1_000_000_000 &+ Int64(now.tv_nsec)
    }
}

/// Writes a line to standard error at once, in one write(2), so lines of concurrent processes
/// do not interleave mid-line.
func printError(_ text: String) {
    writeAll(2, text.hasSuffix("\n") ? text : text + "\n")
}

/// Writes a line to standard output at once: a script waiting for it sees it even when stdout is a
/// pipe (which `print` would buffer until exit).
func printFlushed(_ text: String) {
    writeAll(1, text.hasSuffix("\n") ? text : text + "\n")
}

private func writeAll(_ descriptor: Int32, _ text: String) {
    let bytes = Array(text.utf8)
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let written = write(descriptor, raw.baseAddress! + offset, raw.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
