/// Anything that declares one flag: a `FlagSpec` itself, or a typed handle such as `Flag<Value>`.
public protocol FlagDeclaration: Sendable {
    var spec: FlagSpec { get }
}

/// One declared flag, with its type erased so that flags of every type fit in one `FlagSet`.
///
/// Most callers declare flags through the typed handles (`Flag`, `OptionalFlag`, `RepeatedFlag`),
/// which build a `FlagSpec` and keep the value type for reading.
public struct FlagSpec: FlagDeclaration {
    /// The name without dashes: `heartbeat` for `--heartbeat`.
    public let name: String
    /// The placeholder in help, e.g. `DURATION`.
    public let valueName: String
    /// The default as written (and shown in help), or nil when the flag has none.
    public let defaultValue: String?
    public let help: String
    /// The heading this flag is listed under in help and in the reference.
    public let section: String
    /// Boolean flags may be written as `--flag` alone.
    public let isBoolean: Bool
    /// Repeatable flags keep every occurrence in order; others keep the last.
    public let isRepeatable: Bool

    let parse: @Sendable (String) -> Result<any Sendable, FlagValueError>
    /// How `effectiveFlags()` shows a value as written (nil: as it is).
    let display: (@Sendable (String) -> String)?
    /// The default after parsing, checked once here so that reading a flag never fails later.
    let parsedDefault: (any Sendable)?

    public var spec: FlagSpec { self }

    /// Declares a flag. A default that its own parser rejects is a programming error and stops
    /// the program at once, so it cannot go unnoticed until someone relies on it.
    public init<Value: Sendable>(
        name: String,
        parser: FlagValueParser<Value>,
        default defaultValue: String?,
        valueName: String? = nil,
        repeatable: Bool = false,
        section: String,
        help: String
    ) {
        precondition(Self.isValidName(name), "invalid flag name \(quoted(name)): use lowercase letters, digits and dashes")
        self.name = name
        self.valueName = valueName ?? parser.valueName
        self.defaultValue = defaultValue
        self.help = help
        self.section = section
        self.isBoolean = parser.isBoolean
        self.isRepeatable = repeatable
        self.display = parser.display
        let parse = parser.parse
        self.parse = { text in parse(text).map { $0 as any Sendable } }
        if let defaultValue {
            switch parser.parse(defaultValue) {
            case .success(let value):
                self.parsedDefault = value
            case .failure(let error):
                preconditionFailure("--\(name): bad default \(quoted(defaultValue)): \(error.message)")
            }
        } else {
            self.parsedDefault = nil
        }
    }

    /// Names are what operators type and grep for, so keep them to one plain spelling.
    static func isValidName(_ name: String) -> Bool {
        guard let first = name.first, first != "-", name.last != "-" else { return false }
        return name.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
    }
}
