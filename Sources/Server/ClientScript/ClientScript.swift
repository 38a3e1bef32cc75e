import NIOCore
import NIOHTTP1

/// The browser client `LifelineEventSource` as the gateway serves it at `--client-script-path`
/// (default `/_lifeline/client.js`) on every listener: encoded once, with a strong ETag from its
/// content, so browsers revalidate it cheaply and pick up a new version after an upgrade.
///
/// The file is a classic script (it sets the global and `module.exports`); an ES module cannot be
/// one file with a classic script, since `export` is a syntax error there. So the module form, at
/// the same path with `.mjs`, is the same text followed by its exports.
struct ClientScript: Sendable {
    let body: ByteBuffer
    /// `"` + 16 hex digits of an FNV-1a hash of the content + `"`.
    let etag: String

    static let embedded = ClientScript(source: clientScriptSource)
    static let embeddedModule = ClientScript(source: clientScriptSource + moduleExports)

    static let moduleExports = """

        const LifelineEventSource = globalThis.LifelineEventSource;
        const lifelineFetchEvents = globalThis.lifelineFetchEvents;
        const lifelineFetch = globalThis.lifelineFetch;
        export { LifelineEventSource, lifelineFetchEvents, lifelineFetch };
        export default LifelineEventSource;

        """

    /// Where the module form is served, next to the classic script at `path`:
    /// `/_lifeline/client.js` → `/_lifeline/client.mjs`, any other path → path + `.mjs`.
    static func modulePath(forScriptPath path: String) -> String {
        (path.hasSuffix(".js") ? String(path.dropLast(3)) : path) + ".mjs"
    }

    init(source: String) {
        self.body = ByteBuffer(string: source)
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in source.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        self.etag = "\"" + String(repeating: "0", count: 16 - hex.count) + hex + "\""
    }

    /// The response to `request` (GET or HEAD; anything else gets 405).
    func response(to head: HTTPRequestHead) -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?) {
        var headers = HTTPHeaders([
            ("Content-Type", "text/javascript; charset=utf-8"),
            ("Cache-Control", "public, max-age=300, must-revalidate"),
            ("ETag", self.etag),
            // A module import from another site is a CORS request; the file is public.
            ("Access-Control-Allow-Origin", "*"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        guard head.method == .GET || head.method == .HEAD else {
            return (.methodNotAllowed, HTTPHeaders([("Allow", "GET, HEAD"), ("Content-Length", "0")]), nil)
        }
        // Weak comparison (RFC 9110 §13.1.2): a `W/` prefix does not matter.
        let tags = head.headers["if-none-match"].flatMap { $0.split(separator: ",") }.map { item -> Substring in
            var tag = item.drop { $0 == " " || $0 == "\t" }
            while tag.last == " " || tag.last == "\t" { tag = tag.dropLast() }
            return tag.hasPrefix("W/") ? tag.dropFirst(2) : tag
        }
        if tags.contains(where: { $0 == self.etag || $0 == "*" }) {
            return (.notModified, headers, nil)
        }
        headers.add(name: "Content-Length", value: String(self.body.readableBytes))
        return (.ok, headers, head.method == .HEAD ? nil : self.body)
    }
}
