/// Which requests a stream's repeated response head fits. An origin that names request headers in
/// `Vary` (CORS origins echo `Origin` in `Access-Control-Allow-Origin`) made its head for the
/// values of the request that opened the stream; a client whose values differ must not be sent
/// that head, so it does not join the stream.
public struct StreamVariant: Sendable, Equatable {
    /// Lowercased header names the origin varies on, and the opening request's values of them.
    public let names: [String]
    public let values: [String?]
    /// `Vary: *`: the head fits no other request.
    public let fitsNoOther: Bool

    /// Fits every request (no `Vary`, or none that matters).
    public static let any = StreamVariant(names: [], values: [], fitsNoOther: false)

    /// Header names whose values do not shape an event stream's head as Lifeline repeats it: the
    /// gateway sets the encoding and the media type itself, and resumes by its own buffer.
    static let ignored: Set<String> = ["accept-encoding", "accept", "last-event-id"]

    private init(names: [String], values: [String?], fitsNoOther: Bool) {
        self.names = names
        self.values = values
        self.fitsNoOther = fitsNoOther
    }

    /// - Parameters:
    ///   - vary: the values of the origin's `Vary` header lines.
    ///   - value: the opening request's value of a header (all its lines joined), nil if absent.
    public init(vary: [String], value: (String) -> String?) {
        var names: [String] = []
        var fitsNoOther = false
        for line in vary {
            for item in line.split(separator: ",") {
                let name = item.trimmingASCIISpaces().lowercased()
                if name == "*" {
                    fitsNoOther = true
                } else if !name.isEmpty, !Self.ignored.contains(name), !names.contains(name) {
                    names.append(name)
                }
            }
        }
        self.init(names: names, values: names.map(value), fitsNoOther: fitsNoOther)
    }

    /// Whether a request with these header values may be sent the stream's head.
    public func fits(_ value: (String) -> String?) -> Bool {
        if self.fitsNoOther { return false }
        for (name, expected) in zip(self.names, self.values) where value(name) != expected {
            return false
        }
        return true
    }
}
