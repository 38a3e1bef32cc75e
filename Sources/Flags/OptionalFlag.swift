/// A flag without a default; reading it yields nil unless it was given: `flags[Options.tlsCert]`.
public struct OptionalFlag<Value: Sendable>: FlagDeclaration {
    public let spec: FlagSpec

    public init(
        _ name: String,
        _ parser: FlagValueParser<Value>,
        valueName: String? = nil,
        section: String,
        help: String
    ) {
        self.spec = FlagSpec(
            name: name, parser: parser, default: nil, valueName: valueName,
            section: section, help: help)
    }

    public var name: String { self.spec.name }
}
