/// Turns the text of a flag value into a typed value, or explains why it cannot.
///
/// Every value, defaults included, goes through one of these, so a value that reached
/// `ParsedFlags` has already been checked and typed access cannot fail later.
public struct FlagValueParser<Value: Sendable>: Sendable {
    /// The placeholder shown in help, e.g. `DURATION` in `--heartbeat=DURATION`.
    public var valueName: String
    public let parse: @Sendable (String) -> Result<Value, FlagValueError>

    /// Boolean flags may be written without a value (`--check`); only `.boolean` sets this.
    internal var isBoolean: Bool = false
    /// How a value as written is shown by `effectiveFlags()` (`--check`); nil: as written.
    internal var display: (@Sendable (String) -> String)?

    public init(valueName: String, parse: @escaping @Sendable (String) -> Result<Value, FlagValueError>) {
        self.valueName = valueName
        self.parse = parse
    }

    /// A parser written as a throwing function. A thrown `FlagValueError` is reported as is; any
    /// other error is reported through its description, so callers can reuse their own parsers.
    public static func custom(
        valueName: String,
        _ parse: @escaping @Sendable (String) throws -> Value
    ) -> FlagValueParser<Value> {
        FlagValueParser(valueName: valueName) { text in
            do {
                return .success(try parse(text))
            } catch {
                return .failure(FlagValueError(describing: error))
            }
        }
    }

    /// Parses with `self`, then converts or checks the result; `transform` may throw to reject it.
    public func map<Target: Sendable>(
        valueName: String? = nil,
        _ transform: @escaping @Sendable (Value) throws -> Target
    ) -> FlagValueParser<Target> {
        let parse = self.parse
        return FlagValueParser<Target>(valueName: valueName ?? self.valueName) { text in
            parse(text).flatMap { value in
                do {
                    return .success(try transform(value))
                } catch {
                    return .failure(FlagValueError(describing: error))
                }
            }
        }
    }

    /// Shows values through `display` in `effectiveFlags()` (`--check`): for values that may hold
    /// a credential, such as a URL with a password.
    public func displayed(as display: @escaping @Sendable (String) -> String) -> FlagValueParser<Value> {
        var copy = self
        copy.display = display
        return copy
    }

    /// Adds a check on the parsed value: `check` returns nil when fine, or the complaint.
    ///
    ///     .duration.validate { $0 >= .seconds(1) ? nil : "must be at least 1s" }
    public func validate(_ check: @escaping @Sendable (Value) -> String?) -> FlagValueParser<Value> {
        var checked = self.map { value throws -> Value in
            if let complaint = check(value) { throw FlagValueError(complaint) }
            return value
        }
        checked.isBoolean = self.isBoolean
        checked.display = self.display
        return checked
    }
}

extension FlagValueError {
    init(describing error: any Error) {
        if let error = error as? FlagValueError {
            self = error
        } else {
            self.init(String(describing: error))
        }
    }
}

// MARK: - Simple value types

extension FlagValueParser where Value == String {
    /// Any text, taken literally (no quote processing; an empty value is allowed).
    public static var string: FlagValueParser<String> {
        FlagValueParser(valueName: "STRING") { .success($0) }
    }

    /// One of a fixed list of words; the error lists the choices.
    public static func oneOf(_ choices: [String]) -> FlagValueParser<String> {
        precondition(!choices.isEmpty, "oneOf needs at least one choice")
        return FlagValueParser(valueName: choices.joined(separator: "|")) { text in
            if choices.contains(text) { return .success(text) }
            return .failure(FlagValueError.notOneOf(text, choices))
        }
    }
}

extension FlagValueParser {
    /// One case of a string-backed enum, e.g. `enum LogFormat: String, CaseIterable { case text, json }`.
    public static func oneOf(_ type: Value.Type) -> FlagValueParser<Value>
    where Value: CaseIterable & RawRepresentable, Value.RawValue == String {
        let choices = Value.allCases.map(\.rawValue)
        precondition(!choices.isEmpty, "oneOf needs at least one case")
        return FlagValueParser(valueName: choices.joined(separator: "|")) { text in
            if let value = Value(rawValue: text) { return .success(value) }
            return .failure(FlagValueError.notOneOf(text, choices))
        }
    }
}

extension FlagValueError {
    static func notOneOf(_ text: String, _ choices: [String]) -> FlagValueError {
        FlagValueError("must be one of \(choices.joined(separator: ", ")); got \(quoted(text))")
    }
}

extension FlagValueParser where Value == Bool {
    /// `true` or `false`. Only these two spellings: a flag file is easier to review when every
    /// boolean reads the same.
    public static var boolean: FlagValueParser<Bool> {
        var parser = FlagValueParser(valueName: "true|false") { text in
            switch text {
            case "true": return .success(true)
            case "false": return .success(false)
            default: return .failure(FlagValueError("expected true or false, got \(quoted(text))"))
            }
        }
        parser.isBoolean = true
        return parser
    }
}

extension FlagValueParser where Value == Int {
    /// A decimal integer with an optional sign.
    public static var integer: FlagValueParser<Int> {
        FlagValueParser(valueName: "N") { parseInteger($0) }
    }

    /// A decimal integer within `range`.
    public static func integer(in range: ClosedRange<Int>) -> FlagValueParser<Int> {
        FlagValueParser(valueName: "N") { text in
            parseInteger(text).flatMap { value in
                if range.contains(value) { return .success(value) }
                return .failure(
                    FlagValueError("must be between \(range.lowerBound) and \(range.upperBound), got \(value)"))
            }
        }
    }

    /// A decimal integer of at least `range.lowerBound`, e.g. `.integer(in: 1...)`.
    public static func integer(in range: PartialRangeFrom<Int>) -> FlagValueParser<Int> {
        FlagValueParser(valueName: "N") { text in
            parseInteger(text).flatMap { value in
                if value >= range.lowerBound { return .success(value) }
                return .failure(FlagValueError("must be at least \(range.lowerBound), got \(value)"))
            }
        }
    }

    private static func parseInteger(_ text: String) -> Result<Int, FlagValueError> {
        if let value = Int(text) { return .success(value) }
        let digits = text.drop(while: { $0 == "-" || $0 == "+" })
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return .failure(FlagValueError("\(quoted(text)) is too large"))
        }
        return .failure(FlagValueError("expected an integer, got \(quoted(text))"))
    }
}

/// Values in messages are quoted so that empty values and stray spaces are visible.
func quoted(_ text: some StringProtocol) -> String {
    var result = "\""
    for character in text {
        switch character {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\t": result += "\\t"
        default: result.append(character)
        }
    }
    return result + "\""
}
