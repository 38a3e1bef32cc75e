import Flags
import FuzzSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Fuzz target `flag-file`: the flag-file reader and parser on arbitrary file contents.
//
// Input layout: the contents of up to four flag files, separated by lines that are exactly
// `%%%` (the bytes LF % % % LF). The first is `conf/main.flags`, given on the command line as
// `--flagfile=conf/main.flags`; the others are `conf/b.flags`, `conf/sub/c.flags` and
// `/etc/lifeline/abs.flags`, which the first may include (`--flagfile=b.flags`, ...). Any other
// path cannot be read. The first file also goes through FlagFileReader.readFile from a real file.
//
// Properties: nothing traps; the real reader returns the bytes decoded as UTF-8; a failed parse
// names FILE:LINE for every error, with FILE a file that was read and LINE one of its lines; a
// successful parse gives a value for every flag, sources at real lines, and an effective
// configuration (`effectiveFlags()`) that reads back to the same values.

enum LogFormat: String, CaseIterable, Sendable { case text, json }

struct Route: Sendable, Hashable {
    var prefix: String
    var origin: String
}

/// A small flag table in the style of LifelineFlags: every kind of value, defaults, optional
/// and repeated flags, and parsers with their own checks.
enum FuzzFlags {
    static let route = FlagValueParser<Route>.custom(valueName: "PREFIX=URL") { text in
        guard let equals = text.firstIndex(of: "=") else { throw FlagValueError("expected PREFIX=URL") }
        let prefix = String(text[..<equals])
        guard prefix.hasPrefix("/") else { throw FlagValueError("prefix must start with \"/\"") }
        return Route(prefix: prefix, origin: String(text[text.index(after: equals)...]))
    }

    static let listen = RepeatedFlag("listen", .listenAddress, default: "127.0.0.1:8080", section: "L", help: "")
    static let route_ = RepeatedFlag("route", route, section: "L", help: "")
    static let upstream = OptionalFlag("upstream", .string, section: "L", help: "")
    static let heartbeat = Flag("heartbeat", .duration, default: "15s", section: "H", help: "")
    static let heartbeatComment = Flag(
        "heartbeat-comment", .string.validate { $0.contains(where: { $0 == "\r" || $0 == "\n" }) ? "must be a single line" : nil },
        default: "heartbeat", section: "H", help: "")
    static let clientRetry = OptionalFlag("client-retry", .duration, section: "H", help: "")
    static let headTimeout = Flag(
        "upstream-head-timeout", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "30s",
        section: "U", help: "")
    static let maxEventSize = Flag("max-event-size", .byteSize, default: "1MiB", section: "U", help: "")
    static let maxRequestHead = Flag(
        "max-request-head", .byteSize.validate { $0 >= 1024 ? nil : "must be at least 1KiB" }, default: "32KiB",
        section: "C", help: "")
    static let replayEvents = Flag("replay-events", .integer(in: 0...), default: "1000", section: "R", help: "")
    static let h2MaxStreams = Flag("h2-max-streams", .integer(in: 1...100_000), default: "128", section: "T", help: "")
    static let offset = Flag("offset", .integer, default: "-5", section: "T", help: "")
    static let logFormat = Flag("log-format", .oneOf(LogFormat.self), default: "text", section: "O", help: "")
    static let logLevel = Flag("log-level", .oneOf(["debug", "info", "error"]), default: "info", section: "O", help: "")
    static let check = Flag<Bool>(boolean: "check", section: "O", help: "")
    static let verbose = Flag(boolean: "verbose", default: true, section: "O", help: "")
    static let delays = RepeatedFlag("delay", .duration, default: "1s", section: "O", help: "")
    static let sizes = RepeatedFlag("size", .byteSize, section: "O", help: "")

    static let set = FlagSet([
        listen, route_, upstream, heartbeat, heartbeatComment, clientRetry, headTimeout, maxEventSize,
        maxRequestHead, replayEvents, h2MaxStreams, offset, logFormat, logLevel, check, verbose, delays, sizes,
    ])

    /// Every flag's values, typed, as something comparable.
    static func values(_ flags: ParsedFlags) -> [String] {
        [
            "\(flags[listen])", "\(flags[route_])", "\(String(describing: flags[upstream]))", "\(flags[heartbeat])",
            flags[heartbeatComment], "\(String(describing: flags[clientRetry]))", "\(flags[headTimeout])",
            "\(flags[maxEventSize])", "\(flags[maxRequestHead])", "\(flags[replayEvents])", "\(flags[h2MaxStreams])",
            "\(flags[offset])", "\(flags[logFormat])", flags[logLevel], "\(flags[check])", "\(flags[verbose])",
            "\(flags[delays])", "\(flags[sizes])",
        ]
    }
}

let filePaths = ["conf/main.flags", "conf/b.flags", "conf/sub/c.flags", "/etc/lifeline/abs.flags"]

/// `path` without `.` and `..` components and repeated slashes (what a file system would open).
func canonical(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
        if part == "." { continue }
        if part == ".." {
            if let last = parts.last, last != ".." { parts.removeLast() } else if !path.hasPrefix("/") { parts.append(part) }
            continue
        }
        parts.append(part)
    }
    return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
}

/// The lines the parser sees in a file: after a leading BOM, split at LF, CRLF and CR.
func lineCount(_ contents: String) -> Int {
    var text = Substring(contents)
    if text.hasPrefix("\u{FEFF}") { text = text.dropFirst() }
    return text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).count
}

struct NoSuchFile: Error, CustomStringConvertible {
    var description: String { "No such file or directory" }
}

struct TooManyReads: Error, CustomStringConvertible {
    var description: String { "the fuzz harness reads at most 200 files per input" }
}

/// Splits the input at `\n%%%\n` into at most four files.
func files(_ input: UnsafeRawBufferPointer) -> [[UInt8]] {
    let separator: [UInt8] = Array("\n%%%\n".utf8)
    var result: [[UInt8]] = []
    var start = 0
    var index = 0
    while index + separator.count <= input.count, result.count < filePaths.count - 1 {
        if input[index] == separator[0], input[index..<(index + separator.count)].elementsEqual(separator) {
            result.append(Array(input[start..<index]))
            index += separator.count
            start = index
        } else {
            index += 1
        }
    }
    result.append(Array(input[start...]))
    return result
}

/// A scratch file for the real reader, one per process: unlinked at once and reached through
/// /proc/self/fd, so that nothing is left in /tmp however the process ends (libFuzzer's
/// interrupt and crash paths skip atexit).
let scratchFD: CInt = {
    var template = Array("/tmp/lifeline-fuzz-flags-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { fuzzFail("mkstemp failed") }
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    return fd
}()
let scratchPath = "/proc/self/fd/\(scratchFD)"

func readThroughRealReader(_ bytes: [UInt8]) -> String {
    guard ftruncate(scratchFD, 0) == 0 else { fuzzFail("cannot truncate \(scratchPath)") }
    let written = bytes.withUnsafeBytes { pwrite(scratchFD, $0.baseAddress, $0.count, 0) }
    fuzzCheck(written == bytes.count, "short write to \(scratchPath)")
    do {
        return try FlagFileReader.readFile(scratchPath)
    } catch {
        fuzzFail("FlagFileReader.readFile failed on a readable file: \(error)")
    }
}

/// Checks that `location` is `FILE:LINE` for a file that was read and a line it has.
/// `read` maps each path as asked for to its number of lines.
func checkLocation(_ location: String?, read: [String: Int], what: String) {
    guard let location else { fuzzFail("\(what) has no location") }
    guard let colon = location.lastIndex(of: ":"), let line = Int(location[location.index(after: colon)...]) else {
        fuzzFail("\(what): location \(location.debugDescription) is not FILE:LINE")
    }
    let file = String(location[..<colon])
    guard let lines = read[file] else {
        fuzzFail("\(what): location \(location.debugDescription) names a file that was not read (read: \(read.keys.sorted()))")
    }
    fuzzCheck(line >= 1 && line <= lines, "\(what): \(location.debugDescription) is past the file's \(lines) lines")
}

@main
struct FuzzFlagFile {
    static func main() {
        FuzzMain.run { input in
            let contents = files(input)
            var table: [String: String] = [:]
            for (index, bytes) in contents.enumerated() {
                table[filePaths[index]] = String(decoding: bytes, as: UTF8.self)
            }
            let real = readThroughRealReader(contents[0])
            fuzzCheck(real == table[filePaths[0]], "FlagFileReader.readFile differs from the bytes decoded as UTF-8")

            // Files as read, by the path the parser asked for (which is what locations show),
            // with their number of lines.
            var lines: [String: Int] = [:]
            for (path, text) in table { lines[path] = lineCount(text) }
            var read: [String: Int] = [:]
            var reads = 0
            let readFile: (String) throws -> String = { path in
                reads += 1
                // Diamond includes multiply (a file that includes another twice, which includes a
                // third twice, ...); that is the operator's own doing, not a parser fault.
                guard reads <= 200 else { throw TooManyReads() }
                guard let text = table[canonical(path)] else { throw NoSuchFile() }
                read[path] = lines[canonical(path)]
                return text
            }

            let result = FuzzFlags.set.parse(arguments: ["--flagfile=\(filePaths[0])"], readFile: readFile)
            if FuzzMain.verbose {
                switch result {
                case .success(let flags): print("\(FuzzMain.currentInput ?? "input"): ok, files \(flags.flagFiles)")
                case .failure(let errors): print("\(FuzzMain.currentInput ?? "input"):\n\(errors)")
                }
            }
            switch result {
            case .failure(let errors):
                fuzzCheck(!errors.errors.isEmpty, "failure without errors")
                for error in errors.errors {
                    checkLocation(error.location, read: read, what: "error \(error.description.debugDescription)")
                    fuzzCheck(error.description.hasPrefix(error.location ?? ""), "error \(error.description.debugDescription) does not start with its location")
                }
            case .success(let flags):
                let values = FuzzFlags.values(flags)
                for spec in FuzzFlags.set.specs where spec.name != FlagSet.flagfileName {
                    for source in flags.sources(of: spec.name) {
                        checkLocation(source.description, read: read, what: "--\(spec.name)'s source")
                    }
                    _ = flags.text(of: spec.name)
                    _ = flags.source(of: spec.name)
                }
                fuzzCheck(flags.flagFiles.first == filePaths[0], "flagFiles: \(flags.flagFiles)")

                // The effective configuration is itself a flag file that gives the same values.
                let effective = flags.effectiveFlags()
                let reparsed = FuzzFlags.set.parse(arguments: ["--flagfile=effective.flags"]) { path in
                    guard path == "effective.flags" else { throw NoSuchFile() }
                    return effective
                }
                switch reparsed {
                case .failure(let errors):
                    fuzzFail("effectiveFlags() does not parse back: \(errors)\n\(effective)")
                case .success(let again):
                    fuzzCheck(FuzzFlags.values(again) == values,
                              "effectiveFlags() reads back differently:\n  \(values)\n  \(FuzzFlags.values(again))\n\(effective)")
                    for spec in FuzzFlags.set.specs where spec.name != FlagSet.flagfileName && !spec.isRepeatable {
                        fuzzCheck(again.text(of: spec.name) == flags.text(of: spec.name),
                                  "--\(spec.name): text \(String(describing: flags.text(of: spec.name)).debugDescription) reads back as \(String(describing: again.text(of: spec.name)).debugDescription)")
                    }
                }
            }
        }
    }
}
