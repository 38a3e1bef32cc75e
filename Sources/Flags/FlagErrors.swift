/// Every problem found in one parse, in the order met, so `--check` can report them all at once.
public struct FlagErrors: Error, Sendable, Hashable, CustomStringConvertible {
    public var errors: [FlagError]

    public init(_ errors: [FlagError]) {
        self.errors = errors
    }

    /// One error per line, ready to print to standard error.
    public var description: String {
        self.errors.map(\.description).joined(separator: "\n")
    }
}
