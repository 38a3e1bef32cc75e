import DemoOrigin
import Dispatch
import Flags
import LifelineCore
import Logging
import NIOCore
import NIOPosix
import Server

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `lifeline` command: parses flags, then runs the gateway, the demo origin, or a check.
public enum Lifeline {
    /// Runs with the process's arguments (without the program name) and returns the exit status.
    public static func main(arguments: [String]) async -> Int32 {
        if arguments.first == "demo-origin" {
            return await Self.demoOrigin(arguments: Array(arguments.dropFirst()))
        }
        if arguments.contains("--help") || arguments.contains("-h") {
            print(LifelineFlags.set.help(
                programName: "lifeline",
                usage: "lifeline [--flagfile=FILE] [--FLAG=VALUE ...]\n       lifeline demo-origin [--listen=HOST:PORT] [--tick=DURATION] [--drop-every=DURATION]"
            ))
            return 0
        }
        let flags: ParsedFlags
        switch LifelineFlags.set.parse(arguments: arguments) {
        case .success(let parsed):
            flags = parsed
        case .failure(let errors):
            Self.printError("\(errors)")
            return 2
        }
        if let extra = flags.positional.first {
            Self.printError("lifeline: unexpected argument \"\(extra)\" (flags are written --flag=value)")
            return 2
        }
        let settings: LifelineSettings
        switch LifelineSettings.from(flags) {
        case .success(let value):
            settings = value
        case .failure(let errors):
            Self.printError("\(errors)")
            return flags[LifelineFlags.check] ? 1 : 2
        }
        if flags[LifelineFlags.check] {
            print("# configuration is valid; effective flags:")
            print(flags.effectiveFlags(), terminator: "")
            return 0
        }
        Self.bootstrapLogging(level: settings.logLevel, format: settings.logFormat)
        return await Self.run(settings)
    }

    static func bootstrapLogging(level: String, format: String) {
        let level = Logger.Level(rawValue: level) ?? .info
        let format: LifelineLogHandler.Format = format == "json" ? .json : .text
        LoggingSystem.bootstrap { label in
            LifelineLogHandler(label: label, format: format, logLevel: level)
        }
    }

    static func run(_ settings: LifelineSettings) async -> Int32 {
        let logger = Logger(label: "lifeline")
        // One loop per core; the process exits rather than shutting the group down.
        let group = MultiThreadedEventLoopGroup.singleton
        var configuration = settings.gateway
        var demoServer: DemoOriginServer?
        do {
            if let demo = settings.demo {
                let server = try await DemoOriginServer.start(
                    host: "127.0.0.1",
                    port: 0,
                    configuration: DemoOriginConfiguration(tick: demo.tick, dropEvery: demo.dropEvery),
                    group: group
                )
                demoServer = server
                configuration.routes.insert(
                    try Route.parse("/=http://127.0.0.1:\(server.port)").get(),
                    at: 0
                )
                logger.notice("demo origin running", metadata: ["origin": "http://127.0.0.1:\(server.port)"])
            }
            let server = try await GatewayServer.start(configuration: configuration, group: group, logger: logger)
            for address in server.localAddresses {
                Self.announce("lifeline listening on http://\(Self.display(address))")
            }
            for route in configuration.routes {
                logger.info("route", metadata: ["prefix": "\(route.prefix)", "origin": "\(route.origin)"])
            }
            let signal = await Self.waitForTerminationSignal()
            logger.notice("shutting down", metadata: ["signal": "\(signal)"])
            await server.shutdown()
            try? await demoServer?.stop()
            return 0
        } catch {
            logger.critical("cannot start: \(error)")
            try? await demoServer?.stop()
            return 1
        }
    }

    static func demoOrigin(arguments: [String]) async -> Int32 {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(DemoOriginFlags.set.help(programName: "lifeline demo-origin"))
            return 0
        }
        let flags: ParsedFlags
        switch DemoOriginFlags.set.parse(arguments: arguments) {
        case .success(let parsed):
            flags = parsed
        case .failure(let errors):
            Self.printError("\(errors)")
            return 2
        }
        let listen = flags[DemoOriginFlags.listen]
        let dropEvery = flags[DemoOriginFlags.dropEvery]
        let group = MultiThreadedEventLoopGroup.singleton
        do {
            let server = try await DemoOriginServer.start(
                host: listen.isAnyHost ? "0.0.0.0" : listen.host,
                port: listen.port,
                configuration: DemoOriginConfiguration(
                    tick: .nanoseconds(flags[DemoOriginFlags.tick].nanoseconds),
                    dropEvery: dropEvery > .zero ? .nanoseconds(dropEvery.nanoseconds) : nil
                ),
                group: group
            )
            Self.announce("demo-origin listening on http://\(Self.display(server.localAddress))")
            _ = await Self.waitForTerminationSignal()
            try? await server.stop()
            return 0
        } catch {
            Self.printError("demo-origin: cannot start: \(error)")
            return 1
        }
    }

    /// A line on stdout that scripts and tests wait for, flushed at once.
    static func announce(_ line: String) {
        var bytes = Array((line + "\n").utf8)
        bytes.withUnsafeMutableBytes { _ = write(1, $0.baseAddress, $0.count) }
    }

    static func printError(_ text: String) {
        var bytes = Array((text.hasSuffix("\n") ? text : text + "\n").utf8)
        bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    static func display(_ address: SocketAddress) -> String {
        let host = address.ipAddress ?? "?"
        let port = address.port ?? 0
        if case .v6 = address { return "[\(host)]:\(port)" }
        return "\(host):\(port)"
    }

    /// Waits for SIGTERM or SIGINT.
    static func waitForTerminationSignal() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let queue = DispatchQueue(label: "lifeline.signals")
            let fired = SignalLatch(continuation)
            for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { fired.fire(name) }
                source.resume()
                fired.keep(source)
            }
        }
    }
}

/// Resumes a continuation once, from whichever signal comes first; keeps the sources alive.
private final class SignalLatch: @unchecked Sendable {  // used only on the signal queue
    private var continuation: CheckedContinuation<String, Never>?
    private var sources: [DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<String, Never>) {
        self.continuation = continuation
    }

    func keep(_ source: DispatchSourceSignal) {
        self.sources.append(source)
    }

    func fire(_ name: String) {
        self.continuation?.resume(returning: name)
        self.continuation = nil
    }
}
