/// A flag with a default, so reading it always yields a value: `flags[Options.heartbeat]`.
///
///     static let heartbeat = Flag("heartbeat", .duration, default: "15s", section: "Streams",
///                                 help: "Send a comment to idle clients this often.")
public struct Flag<Value: Sendable>: FlagDeclaration {
    public let spec: FlagSpec

    public init(
        _ name: String,
        _ parser: FlagValueParser<Value>,
        default defaultValue: String,
        valueName: String? = nil,
        section: String,
        help: String
    ) {
        self.spec = FlagSpec(
            name: name, parser: parser, default: defaultValue, valueName: valueName,
            section: section, help: help)
    }

    public var name: String { self.spec.name }
}

extension Flag where Value == Bool {
    /// A boolean flag: `--name` or `--name=true` turns it on, `--name=false` off.
    public init(boolean name: String, default defaultValue: Bool = false, section: String, help: String) {
        self.init(name, .boolean, default: defaultValue ? "true" : "false", section: section, help: help)
    }
}
