/// Where a flag's value came from, so errors and `--check` output can point at it.
public enum FlagSource: Sendable, Hashable, CustomStringConvertible {
    /// The declared default; the flag was not given.
    case defaultValue
    case commandLine
    /// A line of a flag file; `path` is as given, or resolved against the including file.
    case file(path: String, line: Int)

    /// The prefix used in error messages: `command line`, `FILE:LINE` or `default`.
    public var description: String {
        switch self {
        case .defaultValue: return "default"
        case .commandLine: return "command line"
        case .file(let path, let line): return "\(path):\(line)"
        }
    }
}
