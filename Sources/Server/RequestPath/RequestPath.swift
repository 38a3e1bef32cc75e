/// The request path as routes see it and origins get it: dot segments resolved (RFC 3986 §5.2.4),
/// in their plain and percent-encoded forms, so that `/events/../admin` cannot reach past a route's
/// base path at an origin that normalises; refused when it climbs above the root, or when an
/// encoded slash or backslash would hide a dot segment from this check.
enum RequestPath {
    static func normalize(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return nil }
        // The common case: nothing that could be a dot segment, an escape or a control character.
        if !path.utf8.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "%") || $0 < 0x20 || $0 == 0x7F }) {
            return path
        }
        var output: [Substring] = []
        let segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            guard let decoded = Self.decode(segment) else { return nil }
            if decoded.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return nil }
            let text = String(decoding: decoded, as: UTF8.self)
            // An encoded `/` or `\` makes one segment several at an origin that decodes it.
            let pieces = text.split(omittingEmptySubsequences: false) { $0 == "/" || $0 == "\\" }
            if pieces.count > 1, pieces.contains(where: { $0 == "." || $0 == ".." }) { return nil }
            switch text {
            case ".":
                if isLast { output.append("") }
            case "..":
                guard !output.isEmpty else { return nil }
                output.removeLast()
                if isLast { output.append("") }
            default:
                output.append(segment)
            }
        }
        return "/" + output.joined(separator: "/")
    }

    /// Percent-decodes one segment's bytes (`+` is a plus in a path); nil for a malformed escape.
    private static func decode(_ segment: Substring) -> [UInt8]? {
        PercentDecoding.bytes(of: segment, plusIsSpace: false)
    }
}
