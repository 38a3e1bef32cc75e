/// All the flags a program accepts, and the parser for its command line and flag files.
///
///     let set = FlagSet([Options.heartbeat, Options.check, Options.routes])
///     switch set.parse(arguments: Array(CommandLine.arguments.dropFirst())) {
///     case .success(let flags): run(heartbeat: flags[Options.heartbeat])
///     case .failure(let errors): print(errors)  // one `PLACE: --flag: problem` per line
///     }
///
/// `--flagfile=PATH` is built in. See `parse` for the rules.
public struct FlagSet: Sendable {
    /// The name of the built-in flag that loads a flag file.
    public static let flagfileName = "flagfile"

    /// Every flag in declaration order, ending with the built-in `--flagfile`.
    public let specs: [FlagSpec]
    let specsByName: [String: FlagSpec]

    /// - Parameters:
    ///   - declarations: the program's flags; names must be unique and not `flagfile`.
    ///   - flagfileSection: the help section that lists `--flagfile`.
    public init(_ declarations: [any FlagDeclaration], flagfileSection: String = "Flag files") {
        var specs = declarations.map(\.spec)
        specs.append(
            FlagSpec(
                name: Self.flagfileName, parser: .string, default: nil, valueName: "PATH", repeatable: true,
                section: flagfileSection,
                help: """
                    Read flags from PATH: one --flag=value per line; blank lines and lines starting with # \
                    are ignored (a # later in a line is part of the value). Flags given later win; flags on \
                    the command line win over flag files; repeatable flags collect values from the files \
                    first, then the command line. A flag file may load others with --flagfile=, resolved \
                    against its own directory.
                    """))
        var byName: [String: FlagSpec] = [:]
        for spec in specs {
            precondition(byName[spec.name] == nil, "flag --\(spec.name) is declared twice")
            byName[spec.name] = spec
        }
        self.specs = specs
        self.specsByName = byName
    }

    /// Parses a command line (without the program name) and the flag files it names.
    ///
    /// - Command line: `--flag=value`; `--flag value` for flags that are not boolean; `--flag`
    ///   alone for booleans (which never take the next argument, so `--check false` is `--check`
    ///   and a positional `false`). Anything not starting with `-` is positional, returned in
    ///   order in `ParsedFlags.positional`; after `--`, everything is positional.
    /// - Flag files: see `--flagfile` in `help`. No quoting: the text after the first `=` is the
    ///   value, exactly. Nested files are resolved against the including file's directory.
    /// - Every value is parsed, and every problem collected, before returning.
    ///
    /// - Parameter readFile: returns a file's contents or throws; the thrown error's description
    ///   is shown as the reason. Tests pass an in-memory table here.
    public func parse(
        arguments: [String],
        readFile: (String) throws -> String = FlagFileReader.readFile
    ) -> Result<ParsedFlags, FlagErrors> {
        // The run lives only inside this closure, so the reader never actually escapes.
        withoutActuallyEscaping(readFile) { readFile in
            var run = FlagParseRun(set: self, readFile: readFile)
            run.parseCommandLine(arguments)
            if !run.errors.isEmpty {
                return .failure(FlagErrors(run.errors))
            }
            var occurrences = run.fileOccurrences
            for (name, list) in run.commandLineOccurrences {
                occurrences[name, default: []].append(contentsOf: list)
            }
            return .success(
                ParsedFlags(
                    specs: self.specs, specsByName: self.specsByName, occurrences: occurrences,
                    positional: run.positional, flagFiles: run.loadedFiles))
        }
    }

    /// The message for a flag nobody declared, with the nearest declared name when one is close.
    func unknownFlagMessage(_ name: String) -> String {
        if name.hasPrefix("no-"), let spec = self.specsByName[String(name.dropFirst(3))], spec.isBoolean {
            return "unknown flag; to turn off --\(spec.name), write --\(spec.name)=false"
        }
        if let suggestion = nearestName(to: name, among: self.specs.map(\.name)) {
            return "unknown flag; did you mean --\(suggestion)?"
        }
        return "unknown flag"
    }
}
