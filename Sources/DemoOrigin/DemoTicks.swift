#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Tick numbering and the wire form of a tick event.
///
/// Tick `N` is the `N`-th tick interval since the Unix epoch (`unixTimeMillis / tickMillis`). Because
/// the number comes from the wall clock rather than a counter, a restarted demo origin continues
/// the id sequence where the previous process left off, which is what lets a gateway resume with
/// `Last-Event-ID` across an origin restart. The event for tick `N` is a pure function of `N`, so
/// every process (and a replay) produces byte-identical events for the same id.
enum DemoTicks {
    /// Milliseconds since the Unix epoch, from the real-time clock. (NIODeadline is monotonic and
    /// says nothing about calendar time, so it cannot number ticks across processes.)
    static func wallClockMillis() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    /// The number of the latest tick that has begun at `millis`.
    static func tick(atMillis millis: Int64, tickMillis: Int64) -> Int64 {
        millis / tickMillis
    }

    /// One complete SSE event (terminated by a blank line) for tick `tick`; its time is the
    /// tick's boundary, not the moment it happens to be sent.
    static func eventText(tick: Int64, tickMillis: Int64) -> String {
        let time = isoTimestamp(millis: tick * tickMillis)
        return "id: \(tick)\ndata: {\"tick\":\(tick),\"time\":\"\(time)\"}\n\n"
    }

    /// `millis` as ISO-8601 UTC with milliseconds, e.g. `2024-05-01T12:34:56.789Z`.
    ///
    /// Done by hand to keep Foundation out of the module: the date comes from the days-since-epoch
    /// count with the usual era arithmetic for the proleptic Gregorian calendar (400-year eras of
    /// 146097 days, years starting in March so that the leap day falls at the end).
    static func isoTimestamp(millis: Int64) -> String {
        let totalSeconds = floorDivide(millis, 1000)
        let milliseconds = millis - totalSeconds * 1000
        let days = floorDivide(totalSeconds, 86_400)
        let secondOfDay = totalSeconds - days * 86_400

        let shifted = days + 719_468  // days from 0000-03-01 to 1970-01-01
        let era = floorDivide(shifted, 146_097)
        let dayOfEra = shifted - era * 146_097  // 0...146096
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)  // from March 1
        let marchBasedMonth = (5 * dayOfYear + 2) / 153  // 0 = March ... 11 = February
        let day = dayOfYear - (153 * marchBasedMonth + 2) / 5 + 1
        let month = marchBasedMonth < 10 ? marchBasedMonth + 3 : marchBasedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T"
            + "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
            + ".\(pad(milliseconds, 3))Z"
    }

    private static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        let quotient = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? quotient - 1 : quotient
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
