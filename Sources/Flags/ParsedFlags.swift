/// The flags after a successful parse: every value already checked and typed.
///
/// Read through the typed handles (`flags[Options.heartbeat]`), which cannot fail for a flag
/// declared in the same `FlagSet`, or by name (`flags.value("heartbeat", as: FlagDuration.self)`).
/// Asking for a flag that was never declared, or by name with the wrong type, is a programming
/// error and stops the program.
public struct ParsedFlags: Sendable {
    struct Occurrence: Sendable {
        var value: any Sendable
        /// The text as written, for `effectiveFlags()` and diagnostics.
        var text: String
        var source: FlagSource
    }

    /// Arguments that are not flags, in order (e.g. a subcommand such as `demo-origin`).
    public let positional: [String]
    /// The flag files that were read, in the order they were read.
    public let flagFiles: [String]

    let specs: [FlagSpec]
    let specsByName: [String: FlagSpec]
    /// Per flag, values from files in order, then values from the command line in order.
    let occurrences: [String: [Occurrence]]

    init(
        specs: [FlagSpec], specsByName: [String: FlagSpec], occurrences: [String: [Occurrence]],
        positional: [String], flagFiles: [String]
    ) {
        self.specs = specs
        self.specsByName = specsByName
        self.occurrences = occurrences
        self.positional = positional
        self.flagFiles = flagFiles
    }

    // MARK: Typed access

    public subscript<Value>(flag: Flag<Value>) -> Value {
        // A Flag always has a default, so there is always a value.
        self.value(flag.name, as: Value.self)!
    }

    public subscript<Value>(flag: OptionalFlag<Value>) -> Value? {
        self.value(flag.name, as: Value.self)
    }

    public subscript<Value>(flag: RepeatedFlag<Value>) -> [Value] {
        self.values(flag.name, as: Value.self)
    }

    // MARK: Access by name

    /// The last value given, or the default, or nil when the flag has neither.
    public func value<T>(_ name: String, as type: T.Type = T.self) -> T? {
        let spec = self.declared(name)
        if let last = self.occurrences[name]?.last {
            return Self.cast(last.value, to: type, flag: name)
        }
        return spec.parsedDefault.map { Self.cast($0, to: type, flag: name) }
    }

    /// Every value given, in order (files first, then the command line); the default alone when
    /// none was given; empty when there is no default either.
    public func values<T>(_ name: String, as type: T.Type = T.self) -> [T] {
        let spec = self.declared(name)
        if let list = self.occurrences[name], !list.isEmpty {
            return list.map { Self.cast($0.value, to: type, flag: name) }
        }
        return spec.parsedDefault.map { [Self.cast($0, to: type, flag: name)] } ?? []
    }

    /// The text of the value `value(_:)` returns, as written.
    public func text(of name: String) -> String? {
        let spec = self.declared(name)
        return self.occurrences[name]?.last?.text ?? spec.defaultValue
    }

    /// True when the flag was given in a file or on the command line (not left at its default).
    public func isSet(_ name: String) -> Bool {
        _ = self.declared(name)
        return !(self.occurrences[name] ?? []).isEmpty
    }

    /// Where the value `value(_:)` returns came from; nil for a flag with no value and no default.
    public func source(of name: String) -> FlagSource? {
        let spec = self.declared(name)
        if let last = self.occurrences[name]?.last { return last.source }
        return spec.defaultValue == nil ? nil : .defaultValue
    }

    /// Where each of `values(_:)` came from.
    public func sources(of name: String) -> [FlagSource] {
        _ = self.declared(name)
        return (self.occurrences[name] ?? []).map(\.source)
    }

    // MARK: Errors found by the caller

    /// An error about a flag's value that only the caller can judge (usually because it involves
    /// another flag), placed where that value was set:
    /// `flags.error(at: "client-retry-jitter", "must be less than --client-retry")` gives
    /// `FILE:LINE: --client-retry-jitter: must be less than --client-retry`.
    public func error(at name: String, _ message: String) -> FlagError {
        FlagError(source: self.source(of: name) ?? .defaultValue, flag: name, message: message)
    }

    public func error(at flag: some FlagDeclaration, _ message: String) -> FlagError {
        self.error(at: flag.spec.name, message)
    }

    /// For a repeatable flag: an error about its `index`th value (as returned by `values`).
    public func error(at name: String, index: Int, _ message: String) -> FlagError {
        let sources = self.sources(of: name)
        let source = sources.indices.contains(index) ? sources[index] : .defaultValue
        return FlagError(source: source, flag: name, message: message)
    }

    // MARK: Effective configuration

    /// Every flag's value as a flag file, in declaration order, each line preceded by a comment
    /// saying where it came from; for `--check` and for a status page. The result can be read
    /// back with `--flagfile=` (comments are whole lines because a value may contain `#`).
    public func effectiveFlags() -> String {
        var lines: [String] = []
        for spec in self.specs where spec.name != FlagSet.flagfileName {
            let list = self.occurrences[spec.name] ?? []
            if list.isEmpty {
                if let defaultValue = spec.defaultValue {
                    lines.append("# default")
                    lines.append("--\(spec.name)=\(defaultValue)")
                } else {
                    lines.append("# --\(spec.name) is not set")
                }
            } else {
                let kept = spec.isRepeatable ? list[...] : list.suffix(1)
                for occurrence in kept {
                    lines.append("# \(occurrence.source)")
                    lines.append("--\(spec.name)=\(spec.display?(occurrence.text) ?? occurrence.text)")
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: Helpers

    private func declared(_ name: String) -> FlagSpec {
        guard let spec = self.specsByName[name] else {
            preconditionFailure("flag --\(name) is not declared in this FlagSet")
        }
        return spec
    }

    private static func cast<T>(_ value: any Sendable, to type: T.Type, flag: String) -> T {
        guard let typed = value as? T else {
            preconditionFailure("flag --\(flag) holds \(Swift.type(of: value)), not \(T.self)")
        }
        return typed
    }
}
