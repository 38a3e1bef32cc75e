/// A non-negative length of time parsed from a flag such as `--heartbeat=15s`.
///
/// A plain value type so that `Flags` needs no dependencies; callers convert it, e.g.
/// `TimeAmount.nanoseconds(d.nanoseconds)` for SwiftNIO.
public struct FlagDuration: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static let zero = FlagDuration(nanoseconds: 0)

    public static func nanoseconds(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n) }
    public static func microseconds(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n * 1_000) }
    public static func milliseconds(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n * 1_000_000) }
    public static func seconds(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n * 1_000_000_000) }
    public static func minutes(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n * 60_000_000_000) }
    public static func hours(_ n: Int64) -> FlagDuration { FlagDuration(nanoseconds: n * 3_600_000_000_000) }

    public static func < (lhs: FlagDuration, rhs: FlagDuration) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    /// The duration in seconds, for display and for APIs that take a floating-point interval.
    public var seconds: Double { Double(self.nanoseconds) / 1e9 }

    /// The shortest spelling that `parse` reads back to the same value: `0s`, `500ms`, `1m30s`, `1.5s`.
    public var description: String {
        let ns = self.nanoseconds
        if ns == 0 { return "0s" }
        if ns < 0 { return "-" + FlagDuration(nanoseconds: ns == .min ? .max : -ns).description }
        if ns < 1_000_000_000 {
            if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
            if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
            return "\(ns)ns"
        }
        var result = ""
        let hours = ns / 3_600_000_000_000
        let minutes = (ns / 60_000_000_000) % 60
        let wholeSeconds = (ns / 1_000_000_000) % 60
        let fraction = ns % 1_000_000_000
        if hours > 0 { result += "\(hours)h" }
        if minutes > 0 { result += "\(minutes)m" }
        if fraction > 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: 9 - digits.count) + digits
            while digits.last == "0" { digits.removeLast() }
            result += "\(wholeSeconds).\(digits)s"
        } else if wholeSeconds > 0 {
            result += "\(wholeSeconds)s"
        }
        return result
    }

    /// Units accepted by `parse`, in nanoseconds. `m` is minutes; `ms` is milliseconds.
    static let units: [(name: String, nanoseconds: Int64)] = [
        ("ns", 1), ("us", 1_000), ("\u{B5}s", 1_000), ("\u{3BC}s", 1_000), ("ms", 1_000_000),
        ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
    ]

    static let unitList = "ns, us, ms, s, m, h"

    /// Parses `500ms`, `15s`, `2m`, `1h`, `1.5s`, compounds such as `1h30m` and `1m30s`, and a bare `0`.
    ///
    /// A number without a unit is rejected (except 0): `--drain=30` could mean seconds or
    /// milliseconds, and guessing wrong is worse than asking.
    public static func parse(_ text: String) -> Result<FlagDuration, FlagValueError> {
        if text.isEmpty {
            return .failure(FlagValueError("empty duration; expected e.g. 500ms, 15s, 2m or 1m30s"))
        }
        if text == "0" { return .success(.zero) }
        if text.hasPrefix("-") {
            return .failure(FlagValueError("invalid duration \(quoted(text)): must not be negative"))
        }
        let invalid = FlagValueError(
            "invalid duration \(quoted(text)): expected a number and a unit (\(unitList)), e.g. 500ms, 15s or 1m30s")
        let tooLarge = FlagValueError("invalid duration \(quoted(text)): too large")

        let scalars = Array(text.unicodeScalars)
        var index = 0
        var total: Int64 = 0
        func isDigit(_ s: Unicode.Scalar) -> Bool { s >= "0" && s <= "9" }
        func isUnitLetter(_ s: Unicode.Scalar) -> Bool { (s >= "a" && s <= "z") || (s >= "A" && s <= "Z") || s == "\u{B5}" || s == "\u{3BC}" }

        while index < scalars.count {
            var whole = ""
            while index < scalars.count, isDigit(scalars[index]) {
                whole.unicodeScalars.append(scalars[index])
                index += 1
            }
            var fraction = ""
            if index < scalars.count, scalars[index] == "." {
                index += 1
                while index < scalars.count, isDigit(scalars[index]) {
                    fraction.unicodeScalars.append(scalars[index])
                    index += 1
                }
                if fraction.isEmpty { return .failure(invalid) }
            }
            if whole.isEmpty && fraction.isEmpty { return .failure(invalid) }

            var unit = ""
            while index < scalars.count, isUnitLetter(scalars[index]) {
                unit.unicodeScalars.append(scalars[index])
                index += 1
            }
            if unit.isEmpty {
                if index == scalars.count {
                    return .failure(FlagValueError(
                        "invalid duration \(quoted(text)): missing unit (\(unitList)), e.g. \(text)s; only 0 may omit it"))
                }
                return .failure(invalid)
            }
            guard let perUnit = units.first(where: { $0.name == unit })?.nanoseconds else {
                return .failure(FlagValueError(
                    "invalid duration \(quoted(text)): unknown unit \(quoted(unit)) (use \(unitList))"))
            }

            guard let wholeValue = whole.isEmpty ? 0 : Int64(whole) else { return .failure(tooLarge) }
            let (scaled, overflow) = wholeValue.multipliedReportingOverflow(by: perUnit)
            if overflow { return .failure(tooLarge) }
            let fractionNanos = Self.fractionalPart(fraction, perUnit: perUnit)
            let (component, overflow2) = scaled.addingReportingOverflow(fractionNanos)
            if overflow2 { return .failure(tooLarge) }
            let (sum, overflow3) = total.addingReportingOverflow(component)
            if overflow3 { return .failure(tooLarge) }
            total = sum
        }
        return .success(FlagDuration(nanoseconds: total))
    }

    /// `0.DIGITS` of one unit, in nanoseconds, truncated to whole nanoseconds. Eighteen digits
    /// keep an hour's fraction below a nanosecond of error while the arithmetic stays in 64 bits.
    private static func fractionalPart(_ digits: String, perUnit: Int64) -> Int64 {
        if digits.isEmpty { return 0 }
        let kept = String(digits.prefix(18))
        var scale: UInt64 = 1
        for _ in 0..<kept.count { scale *= 10 }
        let numerator = UInt64(kept)!  // at most eighteen ASCII digits
        // numerator < scale, so the quotient is below perUnit and fits.
        let product = numerator.multipliedFullWidth(by: UInt64(perUnit))
        let (quotient, _) = scale.dividingFullWidth(product)
        return Int64(quotient)
    }
}

extension FlagValueParser where Value == FlagDuration {
    /// A duration such as `500ms`, `15s`, `1m30s` or `0`; see `FlagDuration.parse`.
    public static var duration: FlagValueParser<FlagDuration> {
        FlagValueParser(valueName: "DURATION", parse: FlagDuration.parse)
    }
}
