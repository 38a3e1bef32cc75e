import Foundation
import NIOCore

/// How many event loops the gateway runs.
///
/// NIO's `System.coreCount` counts the machine's cores and the cgroup's quota, but not the CPU
/// affinity mask, so a gateway started with `taskset -c 1` (or in a cpuset-pinned container that
/// NIO does not see) would run one loop per machine core on one core. Loops that share a core only
/// take turns, and every hop of a stream's events between them costs a thread switch. Like nginx's
/// `worker_processes auto`, count the CPUs this process may actually run on.
enum EventLoopCount {
    /// `requested` if positive, else one loop per CPU the process may run on.
    static func resolve(requested: Int) -> Int {
        if requested > 0 { return requested }
        return max(1, min(System.coreCount, Self.affinityCount() ?? Int.max))
    }

    /// CPUs in this process's affinity mask (`Cpus_allowed` in /proc/self/status), or nil when it
    /// cannot be read.
    static func affinityCount(status: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) -> Int? {
        guard let status else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            // A hexadecimal mask in comma-separated groups of 32 bits, e.g. "00000000,00000003".
            let mask = line.dropFirst("Cpus_allowed:".count)
            var count = 0
            for character in mask where character != "," && character != " " && character != "\t" {
                guard let nibble = character.hexDigitValue else { return nil }
                count += nibble.nonzeroBitCount
            }
            return count > 0 ? count : nil
        }
        return nil
    }
}
