import NIOHTTP1

/// Whether an origin's response head opens an event stream the gateway can read: the one test
/// the stream opener, the plain proxy (a GET answered with a stream) and the upstream session
/// (each reconnect) all make.
public enum EventStreamHead {
    /// `Content-Type: text/event-stream` (parameters and case ignored).
    public static func hasEventStreamType(_ head: HTTPResponseHead) -> Bool {
        head.headers.first(name: "content-type").map(Self.isEventStream) ?? false
    }

    /// A `Content-Encoding` other than `identity`: the origin ignored `Accept-Encoding: identity`
    /// and its events cannot be read.
    public static func isEncoded(_ head: HTTPResponseHead) -> Bool {
        head.headers["content-encoding"].contains { $0.lowercased() != "identity" }
    }

    /// `200`, an event stream, readable: a stream the gateway can serve.
    public static func isUsable(_ head: HTTPResponseHead) -> Bool {
        head.status == .ok && Self.hasEventStreamType(head) && !Self.isEncoded(head)
    }

    public static func isEventStream(_ contentType: String) -> Bool {
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first ?? ""
        return mediaType.trimmingCharacters(in: " \t").lowercased() == "text/event-stream"
    }
}
