extension FlagValueParser where Value == Int {
    /// A number of bytes: `1024`, `64KiB`, `4MiB`, `1GiB`, `1TiB` (powers of 1024), `KB`, `MB`,
    /// `GB`, `TB` (powers of 1000) or `B`. Whole numbers only; units are case-sensitive, since
    /// `kb` versus `Kb` versus `KiB` is exactly the ambiguity worth refusing.
    public static var byteSize: FlagValueParser<Int> {
        FlagValueParser(valueName: "SIZE", parse: parseByteSize)
    }
}

private let byteUnits: [(name: String, bytes: Int)] = [
    ("B", 1),
    ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
]

private let byteUnitList = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"

private func parseByteSize(_ text: String) -> Result<Int, FlagValueError> {
    if text.isEmpty {
        return .failure(FlagValueError("empty size; expected e.g. 1024, 64KiB or 4MiB"))
    }
    if text.hasPrefix("-") {
        return .failure(FlagValueError("invalid size \(quoted(text)): must not be negative"))
    }
    let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
    let unit = text[digits.endIndex...]
    if digits.isEmpty {
        return .failure(FlagValueError(
            "invalid size \(quoted(text)): expected a whole number of bytes with an optional unit (\(byteUnitList)), e.g. 64KiB"))
    }
    if unit.hasPrefix(".") {
        return .failure(FlagValueError("invalid size \(quoted(text)): must be a whole number (e.g. 1536KiB, not 1.5MiB)"))
    }
    let multiplier: Int
    if unit.isEmpty {
        multiplier = 1
    } else if let known = byteUnits.first(where: { $0.name == unit }) {
        multiplier = known.bytes
    } else {
        return .failure(FlagValueError(
            "invalid size \(quoted(text)): unknown unit \(quoted(unit)) (use \(byteUnitList))"))
    }
    guard let count = Int(digits) else {
        return .failure(FlagValueError("invalid size \(quoted(text)): too large"))
    }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: multiplier)
    if overflow {
        return .failure(FlagValueError("invalid size \(quoted(text)): too large"))
    }
    return .success(bytes)
}
