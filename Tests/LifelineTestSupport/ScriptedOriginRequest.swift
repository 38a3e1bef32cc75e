import NIOCore
import NIOHTTP1

extension ScriptedOrigin {
    /// A request as the origin received it.
    public struct Request: Sendable, CustomStringConvertible {
        public var method: String
        /// The request target as sent, path and query (e.g. `/events?topic=a`).
        public var uri: String
        public var version: HTTPVersion
        /// The headers in the order received; lookups by name are case-insensitive.
        public var headers: HTTPHeaders
        /// The request body, decoded as UTF-8 (empty for most requests).
        public var body: String
        /// Whether the connection may carry another request after this one's response.
        public var isKeepAlive: Bool

        public init(
            method: String,
            uri: String,
            version: HTTPVersion = .http1_1,
            headers: HTTPHeaders = [:],
            body: String = "",
            isKeepAlive: Bool = true
        ) {
            self.method = method
            self.uri = uri
            self.version = version
            self.headers = headers
            self.body = body
            self.isKeepAlive = isKeepAlive
        }

        /// The first value of the header `name` (case-insensitive), or `nil`.
        public func header(_ name: String) -> String? {
            self.headers.first(name: name)
        }

        /// The `Last-Event-ID` header, or `nil`.
        public var lastEventID: String? {
            self.header("Last-Event-ID")
        }

        /// The URI without its query.
        public var path: String {
            String(self.uri.prefix(while: { $0 != "?" }))
        }

        /// The URI's query (after `?`), or `nil` if there is none.
        public var query: String? {
            guard let mark = self.uri.firstIndex(of: "?") else { return nil }
            return String(self.uri[self.uri.index(after: mark)...])
        }

        public var description: String {
            let headers = self.headers.map { "\($0.name): \($0.value)" }.joined(separator: ", ")
            return "\(self.method) \(self.uri) [\(headers)]"
        }
    }
}
