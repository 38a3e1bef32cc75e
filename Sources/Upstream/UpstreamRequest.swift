import NIOHTTP1

/// Builds the request a gateway sends to an origin from the request a client sent to it.
public enum UpstreamRequest {
    /// - Parameters:
    ///   - path: the upstream path (route base path + the client's suffix).
    ///   - query: the upstream query, already without the resume parameter.
    ///   - clientAddress: the client's IP, appended to `X-Forwarded-For`.
    ///   - forStream: an SSE stream request: ask for an unencoded body, and leave
    ///     `Last-Event-ID` to the session.
    public static func head(
        from client: HTTPRequestHead,
        target: OriginTarget,
        path: String,
        query: String?,
        clientAddress: String?,
        clientScheme: String = "http",
        forStream: Bool
    ) -> HTTPRequestHead {
        var headers = HopByHopHeaders.removing(from: client.headers)
        if let host = client.headers.first(name: "host") {
            headers.replaceOrAdd(name: "X-Forwarded-Host", value: host)
        }
        headers.replaceOrAdd(name: "Host", value: target.hostHeader)
        if let clientAddress {
            let existing = client.headers["x-forwarded-for"].filter { !$0.isEmpty }.joined(separator: ", ")
            if !existing.isEmpty {
                headers.replaceOrAdd(name: "X-Forwarded-For", value: "\(existing), \(clientAddress)")
            } else {
                headers.replaceOrAdd(name: "X-Forwarded-For", value: clientAddress)
            }
        }
        headers.replaceOrAdd(name: "X-Forwarded-Proto", value: clientScheme)
        if forStream {
            headers.replaceOrAdd(name: "Accept-Encoding", value: "identity")
            headers.remove(name: "Last-Event-ID")
            headers.remove(name: "Content-Length")
        } else if client.headers.first(name: "content-length") == nil,
            client.headers["transfer-encoding"].contains(where: { $0.lowercased().contains("chunked") })
        {
            // The body is re-framed by the encoder; keep it chunked.
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        var uri = path.isEmpty ? "/" : path
        if let query, !query.isEmpty {
            uri += "?" + query
        }
        return HTTPRequestHead(version: .http1_1, method: client.method, uri: uri, headers: headers)
    }
}
