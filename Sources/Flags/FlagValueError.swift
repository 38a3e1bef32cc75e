/// What is wrong with one flag value, in words for the operator.
///
/// Parsers return only the complaint ("invalid duration ..."); `FlagSet` adds the place and the
/// flag name, so every error reads `FILE:LINE: --flag: complaint` without each parser repeating it.
public struct FlagValueError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { self.message }
}
