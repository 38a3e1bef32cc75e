import Flags

/// Flags of `lifeline-bench origin`.
enum OriginFlags {
    static let section = "Benchmark origin"

    static let listen = Flag(
        "listen", .listenAddress, default: "127.0.0.1:0", valueName: "HOST:PORT", section: section,
        help: "Address to serve on (port 0 picks a free port; the real one is printed).")
    static let streams = Flag(
        "streams", .integer(in: 1...1_000_000), default: "1", section: section,
        help: "Number of streams, served as GET /s/0 .. /s/N-1.")
    static let rate = Flag(
        "rate", .eventRate, default: "1", valueName: "EVENTS_PER_S", section: section,
        help: "Events per second on every stream (decimals allowed; 0: no events, only held connections).")
    static let payload = Flag(
        "payload", .byteSize, default: "0", section: section,
        help: "Pad each event's data to this many bytes (the send stamp and stream number always fit).")
    static let replay = Flag(
        "replay", .integer(in: 0...1_000_000), default: "1000", valueName: "EVENTS", section: section,
        help: "How many events back a Last-Event-ID can resume from (per stream).")
    static let retry = OptionalFlag(
        "retry", .duration, section: section,
        help: "Send `retry:` with this delay at the start of each stream.")
    static let dropEvery = Flag(
        "drop-every", .duration, default: "0", section: section,
        help: "Close every stream connection this often, as a crashing origin would (0: never).")
    static let threads = Flag(
        "threads", .integer(in: 0...256), default: "0", section: section,
        help: "Event loop threads (0: one per core).")
    static let help = Flag<Bool>(boolean: "help", section: section, help: "Show this help and exit.")

    static let set = FlagSet([listen, streams, rate, payload, replay, retry, dropEvery, threads, help])
}

/// Flags of `lifeline-bench load`.
enum LoadFlags {
    static let section = "Load"

    static let url = OptionalFlag(
        "url", .string, valueName: "URL", section: section,
        help: "http://HOST:PORT/PATH or https://...; `{k}` in the path is replaced by the connection's stream number.")
    static let connections = Flag(
        "connections", .integer(in: 1...10_000_000), default: "1", section: section,
        help: "Connections in all, over all shards.")
    static let streams = Flag(
        "streams", .integer(in: 1...10_000_000), default: "1", section: section,
        help: "Stream numbers used for `{k}`: connection c gets k = c mod N.")
    static let multiplex = Flag(
        "multiplex", .integer(in: 1...100_000), default: "1", section: section,
        help: "h2c/h2 only: requests (SSE streams) per connection; each counts as one subscriber.")
    static let duration = Flag(
        "duration", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "30s", section: section,
        help: "Length of the whole run, ramp included; everything is closed after it.")
    static let ramp = Flag(
        "ramp", .duration, default: "5s", section: section,
        help: "Spread the opening of connections evenly over this long.")
    static let sourceAddresses = Flag(
        "source-addresses", .sourceAddresses, default: "", valueName: "IP[-IP][,...]", section: section,
        help: "Local IPv4 addresses to bind, round robin per connection, e.g. 127.0.0.2-127.0.0.20 (empty: let the system choose).")
    static let lastEventID = Flag<Bool>(
        boolean: "last-event-id", section: section,
        help: "Reconnect ended connections as EventSource does, with Last-Event-ID, so gaps and duplicates are counted across the reconnect. Without it an ended connection stays closed.")
    static let reconnectDelay = Flag(
        "reconnect-delay", .duration, default: "1s", section: section,
        help: "With --last-event-id: wait about this long (±50%) before reconnecting, unless the server sent `retry:`.")
    static let stormAt = OptionalFlag(
        "storm-at", .duration, section: section,
        help: "Reconnect storm this long after the start: every streaming subscription closes its connection (FIN) "
            + "and reconnects at once, without delay or jitter, with Last-Event-ID; the time from each drop to the "
            + "first event on the new connection goes into `storm.resume_us`.")
    static let stormAtEpoch = OptionalFlag(
        "storm-at-epoch", .integer(in: 1...),
        valueName: "UNIX_MS", section: section,
        help: "As --storm-at, at this wall-clock time (milliseconds since the Unix epoch), so that several "
            + "load processes (shards) storm at the same moment.")
    static let proto = Flag(
        "protocol", .oneOf(["http1", "h2c", "h2"]), default: "http1", section: section,
        help: "http1: HTTP/1.1, one request per connection, over TLS when the URL is https:// (ALPN http/1.1); "
            + "h2c: HTTP/2 with prior knowledge, http:// only; h2: HTTP/2 over TLS (ALPN h2), https:// only. "
            + "Over TLS the certificate is not verified, and the ClientHello offers what a current browser "
            + "offers (12 TLS 1.2 suites, 8 signature algorithms, X25519/P-256/P-384).")
    static let shard = Flag(
        "shard", .shard, default: "0/1", valueName: "I/N", section: section,
        help: "Run only connections c with c mod N = I, to split a run over N processes (merge their JSON with `lifeline-bench merge`).")
    static let threads = Flag(
        "threads", .integer(in: 0...256), default: "0", section: section,
        help: "Event loop threads (0: one per core).")
    static let connectTimeout = Flag(
        "connect-timeout", .duration.validate { $0 > .zero ? nil : "must be more than 0" }, default: "10s", section: section,
        help: "Give up on a TCP connect after this long.")
    static let json = OptionalFlag(
        "json", .string, valueName: "PATH", section: section,
        help: "Write the JSON summary to PATH instead of standard output.")
    static let quiet = Flag<Bool>(boolean: "quiet", section: section, help: "No progress lines on standard error.")
    static let help = Flag<Bool>(boolean: "help", section: section, help: "Show this help and exit.")

    static let set = FlagSet([
        url, connections, streams, multiplex, duration, ramp, sourceAddresses, lastEventID, reconnectDelay,
        stormAt, stormAtEpoch, proto, shard, threads, connectTimeout, json, quiet, help,
    ])
}

/// `I/N` from `--shard`.
struct Shard: Sendable, Hashable, CustomStringConvertible {
    var index: Int
    var count: Int
    var description: String { "\(self.index)/\(self.count)" }
}

extension FlagValueParser where Value == Shard {
    static var shard: FlagValueParser<Shard> {
        .custom(valueName: "I/N") { text in
            let parts = text.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, index >= 0,
                index < count
            else {
                throw FlagValueError("expected I/N with 0 <= I < N, e.g. 0/4; got \"\(text)\"")
            }
            return Shard(index: index, count: count)
        }
    }
}

extension FlagValueParser where Value == Double {
    /// A non-negative decimal number of events per second.
    static var eventRate: FlagValueParser<Double> {
        .custom(valueName: "EVENTS_PER_S") { text in
            guard let value = Double(text), value.isFinite, value >= 0, value <= 1_000_000 else {
                throw FlagValueError("expected a number of events per second between 0 and 1000000, got \"\(text)\"")
            }
            return value
        }
    }
}

extension FlagValueParser where Value == [IPv4Address] {
    /// `127.0.0.2-127.0.0.20`, `127.0.0.2-20`, `127.0.0.2,127.0.0.5`, or a mix; empty for none.
    static var sourceAddresses: FlagValueParser<[IPv4Address]> {
        .custom(valueName: "IP[-IP][,...]") { text in
            var result: [IPv4Address] = []
            for item in text.split(separator: ",") {
                let ends = item.split(separator: "-", omittingEmptySubsequences: false)
                guard ends.count <= 2, let first = IPv4Address(ends[0]) else {
                    throw FlagValueError("\"\(item)\" is not an IPv4 address or range (e.g. 127.0.0.2-127.0.0.20)")
                }
                var last = first
                if ends.count == 2 {
                    if let full = IPv4Address(ends[1]) {
                        last = full
                    } else if let octet = UInt8(ends[1]) {
                        // `127.0.0.2-20`: the last octet only.
                        last = IPv4Address(value: first.value & 0xFFFF_FF00 | UInt32(octet))
                    } else {
                        throw FlagValueError("\"\(item)\": \"\(ends[1])\" is not an IPv4 address or last octet")
                    }
                }
                guard last.value >= first.value, last.value - first.value < 65_536 else {
                    throw FlagValueError("\"\(item)\": the range must go upwards and hold at most 65536 addresses")
                }
                for value in first.value...last.value {
                    result.append(IPv4Address(value: value))
                }
            }
            return result
        }
    }
}

/// A dotted-quad IPv4 address (no host names: source addresses are bound as given).
struct IPv4Address: Sendable, Hashable, CustomStringConvertible {
    var value: UInt32

    init(value: UInt32) {
        self.value = value
    }

    init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let octet = UInt8(part)
            else { return nil }
            value = value << 8 | UInt32(octet)
        }
        self.value = value
    }

    var description: String {
        "\(self.value >> 24).\(self.value >> 16 & 0xFF).\(self.value >> 8 & 0xFF).\(self.value & 0xFF)"
    }
}

/// The command line of a `lifeline-bench` subcommand: `--help` prints the flags; a bad flag or a
/// stray argument says why. Returns the flags to run with, or the exit status to end with.
func parseSubcommand(
    _ arguments: [String], flags set: FlagSet, programName: String, usage: String
) -> Result<ParsedFlags, SubcommandExit> {
    if arguments.contains("--help") || arguments.contains("-h") {
        print(set.help(programName: programName, usage: usage))
        return .failure(SubcommandExit(status: 0))
    }
    switch set.parse(arguments: arguments) {
    case .success(let flags):
        if let extra = flags.positional.first {
            printError("\(programName): unexpected argument \"\(extra)\" (flags are written --flag=value)")
            return .failure(SubcommandExit(status: 2))
        }
        return .success(flags)
    case .failure(let errors):
        printError("\(programName): \(errors)")
        return .failure(SubcommandExit(status: 2))
    }
}

struct SubcommandExit: Error {
    var status: Int32
}
