import Atomics
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes log records to stderr as text or as one JSON object per line (`--log-format`).
struct LifelineLogHandler: LogHandler {
    enum Format: Sendable {
        case text
        case json
    }

    let label: String
    let format: Format
    /// Set on this handler's logger (`logger.logLevel = …`), else `--log-level`.
    private var ownLevel: Logger.Level?

    /// `--log-level`, shared by every handler so that a reload (SIGHUP) changes it everywhere;
    /// an atomic, since every log statement reads it.
    static let configuredLevel = ManagedAtomic<Int>(Self.index(of: .info))

    /// Every log statement reads the level: from a table made once, not `allCases` (an array
    /// built on each call).
    private static let levels = Logger.Level.allCases

    static func index(of level: Logger.Level) -> Int {
        Self.levels.firstIndex(of: level) ?? 2
    }

    var logLevel: Logger.Level {
        get { self.ownLevel ?? Self.levels[Self.configuredLevel.load(ordering: .relaxed)] }
        set { self.ownLevel = newValue }
    }

    init(label: String, format: Format) {
        self.label = label
        self.format = format
    }
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata {
            merged.merge(extra) { $1 }
        }
        let line = Self.line(format: self.format, time: Self.timestamp(), level: event.level, message: "\(event.message)", metadata: merged)
        var bytes = Array((line + "\n").utf8)
        bytes.withUnsafeMutableBytes { buffer in
            _ = write(2, buffer.baseAddress, buffer.count)
        }
    }

    /// One log line. In JSON, numbers logged as numbers (`.stringConvertible(Int)`) stay numbers,
    /// so that a log pipeline can sum and compare them.
    static func line(format: Format, time: String, level: Logger.Level, message: String, metadata: Logger.Metadata) -> String {
        switch format {
        case .text:
            var text = "\(time) \(level) \(message)"
            for key in metadata.keys.sorted() {
                text += " \(key)=\(metadata[key]!)"
            }
            return text
        case .json:
            var fields = [
                "\"time\":\(Self.quoted(time))",
                "\"level\":\(Self.quoted("\(level)"))",
                "\"msg\":\(Self.quoted(message))",
            ]
            for key in metadata.keys.sorted() {
                let value: String
                switch metadata[key]! {
                case .stringConvertible(let number as Int): value = String(number)
                case let other: value = Self.quoted("\(other)")
                }
                fields.append("\(Self.quoted(key)):\(value)")
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                result += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = time_t(now.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
