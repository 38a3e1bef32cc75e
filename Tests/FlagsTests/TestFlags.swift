import Flags

/// A small set of flags like the ones Lifeline declares, shared by the tests.
enum TestFlags {
    enum LogFormat: String, CaseIterable, Sendable { case text, json }

    struct Route: Sendable, Equatable {
        var prefix: String
        var origin: String
    }

    static let route = FlagValueParser<Route>.custom(valueName: "PREFIX=URL") { text in
        guard let equals = text.firstIndex(of: "=") else {
            throw FlagValueError("expected PREFIX=URL, got \"\(text)\"")
        }
        let prefix = String(text[..<equals])
        guard prefix.hasPrefix("/") else { throw FlagValueError("prefix must start with \"/\"") }
        return Route(prefix: prefix, origin: String(text[text.index(after: equals)...]))
    }

    static let listen = Flag("listen", .listenAddress, default: ":8080", section: "Listeners",
                             help: "Address for client connections.")
    static let adminListen = Flag("admin-listen", .listenAddress, default: "127.0.0.1:9090", section: "Listeners",
                                  help: "Address for /metrics, /healthz and the status page.")
    static let heartbeat = Flag("heartbeat", .duration, default: "15s", section: "Streams",
                                help: "Send a comment line to idle clients this often.")
    static let clientRetry = Flag("client-retry", .duration, default: "2s", section: "Streams",
                                  help: "The retry: value sent to clients.")
    static let clientRetryJitter = Flag("client-retry-jitter", .duration, default: "500ms", section: "Streams",
                                        help: "Random spread added to client retry.")
    static let replayBytes = Flag("replay-bytes", .byteSize, default: "4MiB", section: "Streams",
                                  help: "Replay buffer size per stream.")
    static let threads = OptionalFlag("threads", .integer(in: 1...256), section: "General",
                                      help: "Event loop threads; one per core when not set.")
    static let check = Flag(boolean: "check", section: "General", help: "Validate the flags and exit.")
    static let verbose = Flag(boolean: "verbose", default: true, section: "General", help: "Say more.")
    static let logFormat = Flag("log-format", .oneOf(LogFormat.self), default: "text", section: "General",
                                help: "Log line format.")
    static let name = Flag("name", .string, default: "", section: "General", help: "Instance name.")
    static let routes = RepeatedFlag("route", route, section: "Routing",
                                     help: "Serve PREFIX from the origin URL.")

    static let all: [any FlagDeclaration] = [
        listen, adminListen, heartbeat, clientRetry, clientRetryJitter, replayBytes,
        threads, check, verbose, logFormat, name, routes,
    ]

    static let set = FlagSet(all)
}

/// An in-memory file system for the `readFile` parameter.
struct FakeFiles {
    var files: [String: String]

    struct Missing: Error, CustomStringConvertible {
        var description: String { "No such file or directory" }
    }

    /// Like a real file system, `./` components name the same file.
    func read(_ path: String) throws -> String {
        var key = path.replacingAll("/./", with: "/")
        while key.hasPrefix("./") { key.removeFirst(2) }
        guard let contents = self.files[key] else { throw Missing() }
        return contents
    }
}

extension FlagSet {
    /// Parses and returns the error lines, or an empty list on success.
    func errorLines(_ arguments: [String], files: [String: String] = [:]) -> [String] {
        switch self.parse(arguments: arguments, readFile: FakeFiles(files: files).read) {
        case .success: return []
        case .failure(let errors): return errors.errors.map(\.description)
        }
    }

    func parsed(_ arguments: [String], files: [String: String] = [:]) throws -> ParsedFlags {
        try self.parse(arguments: arguments, readFile: FakeFiles(files: files).read).get()
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        var result = self
        while let range = result.firstRange(of: target) {
            result.replaceSubrange(range, with: replacement)
        }
        return result
    }
}
