import Foundation
import NIOCore
import NIOHTTP1

/// What the admin listener answers, by path. Every answer is computed from a fresh look at the
/// gateway (exact values), except the feed, which the ticker serves.
struct AdminRoutes: Sendable {
    enum Answer {
        case now(Response)
        case later(EventLoopFuture<Response>)
        /// An SSE response: the handler writes the head and hands the channel to the feed.
        case feed(StatusFeed.View)
    }

    struct Response: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: ByteBuffer
        var extraHeaders: [(String, String)] = []
    }

    let sampler: StatusSampler
    let feed: StatusFeed
    let configReloads: @Sendable () -> (success: Int, failure: Int)?

    static let defaultTop = 50
    static let maxTop = 1000

    func answer(_ head: HTTPRequestHead, on eventLoop: EventLoop) -> Answer {
        guard head.method == .GET || head.method == .HEAD else {
            return .now(Self.text(.methodNotAllowed, "method not allowed\n", extraHeaders: [("Allow", "GET, HEAD")]))
        }
        let (path, query) = Self.split(head.uri)
        switch path {
        case "/metrics":
            let sampler = self.sampler
            let extras = MetricsExposition.Extras(configReloads: self.configReloads())
            let promise = eventLoop.makePromise(of: Response.self)
            promise.completeWithTask {
                let text = MetricsExposition.render(await sampler.gather(), extras: extras)
                return Response(status: .ok, contentType: MetricsExposition.contentType, body: ByteBuffer(string: text))
            }
            return .later(promise.futureResult)
        case "/healthz":
            return .now(Self.text(.ok, "ok\n"))
        case "/readyz":
            let state = self.sampler.currentState
            guard state == "ready" else { return .now(Self.text(.serviceUnavailable, "\(state)\n")) }
            // Degraded still serves (each stream reads its origin itself), so it stays ready;
            // the body says so for people and probes that read it.
            if let store = self.sampler.sharedStore, !store.reachable {
                return .now(Self.text(.ok, "ready (degraded: redis unreachable; streams read their origins directly)\n"))
            }
            return .now(Self.text(.ok, "ready\n"))
        case "/status.json":
            let view = Self.view(query)
            let sampler = self.sampler
            let promise = eventLoop.makePromise(of: Response.self)
            promise.completeWithTask {
                let report = sampler.report(await sampler.gather(), top: view.top, filter: view.filter)
                var body = ByteBuffer()
                body.writeBytes(StatusFeed.json(report))
                body.writeString("\n")
                return Response(status: .ok, contentType: "application/json", body: body)
            }
            return .later(promise.futureResult)
        case "/status/events":
            return .feed(Self.view(query))
        case "/", "/status":
            return .now(Response(
                status: .ok,
                contentType: "text/html; charset=utf-8",
                body: ByteBuffer(string: statusPageSource),
                extraHeaders: [("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:")]
            ))
        default:
            return .now(Self.text(.notFound, "not found; try /metrics, /healthz, /readyz, /status.json or /\n"))
        }
    }

    static func text(_ status: HTTPResponseStatus, _ body: String, extraHeaders: [(String, String)] = []) -> Response {
        Response(status: status, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: body), extraHeaders: extraHeaders)
    }

    static func split(_ uri: String) -> (path: Substring, query: Substring) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri[...], "") }
        return (uri[..<mark], uri[uri.index(after: mark)...])
    }

    /// `top` (1...1000, default 50) and `filter` (a substring of the stream path) from the query.
    static func view(_ query: Substring) -> StatusFeed.View {
        var view = StatusFeed.View(top: Self.defaultTop, filter: "")
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count == 2 ? Self.percentDecoded(parts[1]) : ""
            switch parts[0] {
            case "top":
                if let top = Int(value) { view.top = min(max(top, 1), Self.maxTop) }
            case "filter":
                view.filter = String(value.prefix(200))
            default:
                break
            }
        }
        return view
    }

    /// `application/x-www-form-urlencoded` decoding; a value with an invalid escape stays as it is.
    static func percentDecoded(_ text: Substring) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}
