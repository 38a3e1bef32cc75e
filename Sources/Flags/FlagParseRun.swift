/// The state of one `FlagSet.parse` call: values found so far, errors, and the chain of flag
/// files being read (to detect cycles).
struct FlagParseRun {
    let set: FlagSet
    let readFile: (String) throws -> String

    /// Kept apart so that, whatever the order on the command line, command-line values are
    /// applied after (and so win over) every value from a file.
    var fileOccurrences: [String: [ParsedFlags.Occurrence]] = [:]
    var commandLineOccurrences: [String: [ParsedFlags.Occurrence]] = [:]
    var errors: [FlagError] = []
    var positional: [String] = []
    var loadedFiles: [String] = []
    /// Files being read right now, outermost first: (path as shown, normalized path).
    var includeChain: [(shown: String, key: String)] = []

    /// A backstop for include loops that path normalization cannot see, such as symbolic links.
    static let maximumNesting = 32

    init(set: FlagSet, readFile: @escaping (String) throws -> String) {
        self.set = set
        self.readFile = readFile
    }

    // MARK: Command line

    mutating func parseCommandLine(_ arguments: [String]) {
        var index = 0
        var onlyPositional = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositional || argument == "-" || !argument.hasPrefix("-") {
                self.positional.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositional = true
                continue
            }
            guard argument.hasPrefix("--") else {
                let name = String(argument.dropFirst())
                var message = "unknown option; flags start with two dashes"
                if let spec = self.set.specsByName[name.split(separator: "=").first.map(String.init) ?? name] {
                    message += "; did you mean --\(spec.name)?"
                }
                self.errors.append(FlagError(location: "command line", flag: nil, message: "\(argument): \(message)"))
                continue
            }
            let (name, inlineValue) = splitFlag(argument.dropFirst(2))
            guard !name.isEmpty else {
                self.errors.append(FlagError(
                    location: "command line", flag: nil, message: "expected --flag=value, got \(quoted(argument))"))
                continue
            }
            guard let spec = self.set.specsByName[name] else {
                self.errors.append(FlagError(
                    location: "command line", flag: name, message: self.set.unknownFlagMessage(name)))
                continue
            }
            var value = inlineValue
            if value == nil {
                if spec.isBoolean {
                    value = "true"
                } else if index < arguments.count, !arguments[index].hasPrefix("--") {
                    // A following "--flag" is far more likely a forgotten value than a value.
                    value = arguments[index]
                    index += 1
                } else {
                    self.errors.append(FlagError(
                        location: "command line", flag: name,
                        message: "missing value (expected --\(name)=\(spec.valueName) or --\(name) \(spec.valueName))"))
                    continue
                }
            }
            if name == FlagSet.flagfileName {
                if value!.isEmpty {
                    self.errors.append(FlagError(
                        location: "command line", flag: name, message: "missing value (expected --\(name)=PATH)"))
                    continue
                }
                self.loadFile(value!, includedFrom: nil)
            } else {
                self.record(spec, value!, source: .commandLine, fromFile: false)
            }
        }
    }

    // MARK: Flag files

    mutating func loadFile(_ path: String, includedFrom includer: FlagSource?) {
        let key = normalizedPath(path)
        let includerLocation = includer?.description
        if let start = self.includeChain.firstIndex(where: { $0.key == key }) {
            let cycle = self.includeChain[start...].map(\.shown) + [path]
            self.errors.append(FlagError(
                location: includerLocation, flag: FlagSet.flagfileName,
                message: "flag files include each other: \(cycle.joined(separator: " -> "))"))
            return
        }
        if self.includeChain.count >= Self.maximumNesting {
            self.errors.append(FlagError(
                location: includerLocation, flag: FlagSet.flagfileName,
                message: "\(path): flag files nested more than \(Self.maximumNesting) deep (a loop through links?)"))
            return
        }
        let contents: String
        do {
            contents = try self.readFile(path)
        } catch {
            if let includerLocation {
                self.errors.append(FlagError(
                    location: includerLocation, flag: FlagSet.flagfileName,
                    message: "\(path): cannot read: \(error)"))
            } else {
                self.errors.append(FlagError(location: path, flag: nil, message: "cannot read: \(error)"))
            }
            return
        }
        self.loadedFiles.append(path)
        self.includeChain.append((path, key))
        defer { self.includeChain.removeLast() }

        var text = Substring(contents)
        if text.hasPrefix("\u{FEFF}") { text = text.dropFirst() }
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        for (offset, rawLine) in lines.enumerated() {
            self.parseFileLine(trimmed(rawLine), source: .file(path: path, line: offset + 1), filePath: path)
        }
    }

    private mutating func parseFileLine(_ line: Substring, source: FlagSource, filePath: String) {
        // Only whole-line comments: values such as URLs may contain "#".
        if line.isEmpty || line.hasPrefix("#") { return }
        let location = source.description
        let (name, value) = line.hasPrefix("--") ? splitFlag(line.dropFirst(2)) : ("", nil)
        guard !name.isEmpty, !name.hasPrefix("-") else {
            self.errors.append(FlagError(
                location: location, flag: nil, message: "expected --flag=value, got \(quoted(line))"))
            return
        }
        if name.contains(where: \.isWhitespace) {
            self.errors.append(FlagError(
                location: location, flag: nil,
                message: "expected --flag=value (no spaces around \"=\"), got \(quoted(line))"))
            return
        }
        guard let spec = self.set.specsByName[name] else {
            self.errors.append(FlagError(location: location, flag: name, message: self.set.unknownFlagMessage(name)))
            return
        }
        guard let text = value ?? (spec.isBoolean ? "true" : nil) else {
            self.errors.append(FlagError(
                location: location, flag: name, message: "missing value (expected --\(name)=\(spec.valueName))"))
            return
        }
        if name == FlagSet.flagfileName {
            if text.isEmpty {
                self.errors.append(FlagError(location: location, flag: name, message: "missing value (expected --\(name)=PATH)"))
                return
            }
            self.loadFile(resolve(text, relativeToFileAt: filePath), includedFrom: source)
        } else {
            self.record(spec, text, source: source, fromFile: true)
        }
    }

    // MARK: Values

    private mutating func record(_ spec: FlagSpec, _ text: String, source: FlagSource, fromFile: Bool) {
        switch spec.parse(text) {
        case .success(let value):
            let occurrence = ParsedFlags.Occurrence(value: value, text: text, source: source)
            if fromFile {
                self.fileOccurrences[spec.name, default: []].append(occurrence)
            } else {
                self.commandLineOccurrences[spec.name, default: []].append(occurrence)
            }
        case .failure(let error):
            self.errors.append(FlagError(source: source, flag: spec.name, message: error.message))
        }
    }
}

/// Splits `name=value` at the first `=`; the value is nil when there is no `=`.
private func splitFlag(_ body: Substring) -> (name: String, value: String?) {
    guard let equals = body.firstIndex(of: "=") else { return (String(body), nil) }
    return (String(body[..<equals]), String(body[body.index(after: equals)...]))
}

private func trimmed(_ line: Substring) -> Substring {
    let start = line.drop(while: \.isWhitespace)
    var end = start.endIndex
    while end > start.startIndex, start[start.index(before: end)].isWhitespace {
        end = start.index(before: end)
    }
    return start[..<end]
}
