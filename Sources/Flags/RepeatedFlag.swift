/// A flag that may be given many times; reading it yields every value in order, flag files
/// first, then the command line: `flags[Options.routes]`.
///
/// With a default, the default is the whole list when the flag is never given, and is replaced
/// (not extended) as soon as it is.
public struct RepeatedFlag<Value: Sendable>: FlagDeclaration {
    public let spec: FlagSpec

    public init(
        _ name: String,
        _ parser: FlagValueParser<Value>,
        default defaultValue: String? = nil,
        valueName: String? = nil,
        section: String,
        help: String
    ) {
        self.spec = FlagSpec(
            name: name, parser: parser, default: defaultValue, valueName: valueName, repeatable: true,
            section: section, help: help)
    }

    public var name: String { self.spec.name }
}
