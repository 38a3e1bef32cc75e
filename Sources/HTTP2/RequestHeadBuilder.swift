import NIOHTTP1

/// Collects one request's header fields as nghttp2 decodes them, counting the header list size.
final class RequestHeadBuilder {
    private let limit: Int
    private(set) var size = 0
    /// The header list went over the limit: the request is answered 431 and never delivered.
    private(set) var oversized = false

    private var method: String?
    private var path: String?
    private var scheme: String?
    private var authority: String?
    private var fields: [(String, String)] = []
    private var cookies: [String] = []

    init(limit: Int) {
        self.limit = limit
    }

    /// One decoded field (nghttp2 has already checked names, values and pseudo-header rules).
    func add(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard !self.oversized else { return }
        // RFC 9113 §6.5.2: the size of a field is its name and value lengths plus 32.
        self.size += name.count + value.count + 32
        if self.size > self.limit {
            self.oversized = true
            self.fields = []
            self.cookies = []
            return
        }
        let value = String(decoding: value, as: UTF8.self)
        if name.first == UInt8(ascii: ":") {
            switch String(decoding: name, as: UTF8.self) {
            case ":method": self.method = value
            case ":path": self.path = value
            case ":scheme": self.scheme = value
            case ":authority": self.authority = value
            default: break  // :protocol (extended CONNECT is not enabled), or unknown: ignored
            }
            return
        }
        let name = String(decoding: name, as: UTF8.self)
        if name == "cookie" {
            // HTTP/2 may split cookies into crumbs (RFC 9113 §8.2.3); HTTP/1 wants one field.
            self.cookies.append(value)
        } else {
            self.fields.append((name, value))
        }
    }

    /// The request as NIOHTTP1 sees it: uri = `:path`, `host` = `:authority` (when present, it
    /// replaces any `host` field), cookie crumbs joined with "; ", version 2.0.
    func build() -> (head: HTTPRequestHead, scheme: String) {
        var headers = HTTPHeaders()
        headers.reserveCapacity(self.fields.count + 2)
        if let authority = self.authority {
            headers.add(name: "host", value: authority)
        }
        for (name, value) in self.fields {
            if name == "host" && self.authority != nil { continue }
            headers.add(name: name, value: value)
        }
        if !self.cookies.isEmpty {
            headers.add(name: "cookie", value: self.cookies.joined(separator: "; "))
        }
        let method = HTTPMethod(rawValue: self.method ?? "GET")
        let uri = self.path ?? self.authority ?? "*"
        let head = HTTPRequestHead(version: HTTPVersion(major: 2, minor: 0), method: method, uri: uri, headers: headers)
        return (head, self.scheme ?? "")
    }
}
