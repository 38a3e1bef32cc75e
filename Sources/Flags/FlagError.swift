/// One problem with the flags, rendered as `PLACE: --flag: what is wrong`.
///
/// The place is `command line`, `FILE:LINE`, or `FILE` for a file that cannot be read; it is nil
/// for a cross-flag complaint about a flag that was left at its default.
public struct FlagError: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: String?
    /// The flag name without dashes, when the problem concerns one flag.
    public var flag: String?
    public var message: String

    public init(location: String?, flag: String?, message: String) {
        self.location = location
        self.flag = flag
        self.message = message
    }

    public init(source: FlagSource, flag: String?, message: String) {
        self.init(location: source == .defaultValue ? nil : source.description, flag: flag, message: message)
    }

    public var description: String {
        var parts: [String] = []
        if let location { parts.append(location) }
        if let flag { parts.append("--" + flag) }
        parts.append(self.message)
        return parts.joined(separator: ": ")
    }
}
