import Flags
import Histogram
import NIOCore
import NIOPosix
import Synchronization
import TLS

#if canImport(Glibc)
import Glibc
#endif

/// `lifeline-bench load`: opens the connections, prints progress, then the JSON summary.
enum LoadCommand {
    static func run(arguments: [String]) async -> Int32 {
        let flags: ParsedFlags
        switch parseSubcommand(
            arguments, flags: LoadFlags.set, programName: "lifeline-bench load",
            usage: "Usage: lifeline-bench load --url=http://127.0.0.1:PORT/s/{k} --connections=N --streams=S [--flag=value ...]")
        {
        case .success(let parsed): flags = parsed
        case .failure(let exit): return exit.status
        }
        let plan: LoadPlan
        do {
            plan = try Self.plan(from: flags)
            try Self.checkFileLimit(plan)
        } catch {
            printError("lifeline-bench load: \(error)")
            return 2
        }
        let setup: LoadLoop.PipelineSetup
        switch plan.proto {
        case .http1 where plan.target.isTLS:
            // ALPN offers http/1.1 only, so a server that also speaks h2 still answers in HTTP/1.1.
            guard let tlsSetup = Self.overTLS(plan: plan, alpn: "http/1.1", then: HTTP1SubscriptionHandler.init) else {
                return 1
            }
            setup = tlsSetup
        case .http1:
            setup = { channel, connection, loop in
                try channel.pipeline.syncOperations.addHandler(
                    HTTP1SubscriptionHandler(loop: loop, connection: connection, tls: nil))
            }
        case .h2c:
            setup = { channel, connection, loop in
                try channel.pipeline.syncOperations.addHandler(
                    HTTP2SubscriptionHandler(loop: loop, connection: connection, tls: nil))
            }
        case .h2:
            guard let tlsSetup = Self.overTLS(plan: plan, alpn: "h2", then: HTTP2SubscriptionHandler.init) else {
                return 1
            }
            setup = tlsSetup
        }

        let threads = flags[LoadFlags.threads] > 0 ? flags[LoadFlags.threads] : System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let loops = group.makeIterator().map { LoadLoop(eventLoop: $0, plan: plan, setupPipeline: setup) }
        Self.assign(plan: plan, to: loops)

        let quiet = flags[LoadFlags.quiet]
        let url = flags[LoadFlags.url] ?? ""
        if !quiet {
            printError(
                "lifeline-bench load: \(plan.shardConnectionCount) connections (shard \(plan.shard)) × \(plan.multiplex) to \(url), "
                    + "\(plan.protocolDescription), \(threads) threads, ramp \(Double(plan.rampNanoseconds) / 1e9)s, "
                    + "duration \(Double(plan.durationNanoseconds) / 1e9)s"
                    + (plan.stormAtWallNanoseconds.map {
                        ", storm in \(Double(($0 - BenchClock.wallNanoseconds()) / 1_000_000) / 1000)s"
                    } ?? ""))
        }
        let start = NIODeadline.now() + .milliseconds(10)
        let startMonotonic = BenchClock.monotonicNanoseconds() + 10_000_000
        for loop in loops {
            loop.start(at: start)
        }

        // Progress once a second until the end; each loop is asked for a copy of its counters.
        // SIGINT or SIGTERM ends the run early, with the summary as usual (a second one kills).
        installStopSignals()
        let end = startMonotonic + plan.durationNanoseconds
        var second = 1
        var lastEvents = 0
        while true {
            let now = BenchClock.monotonicNanoseconds()
            let nextProgress = startMonotonic + Int64(second) * 1_000_000_000
            if now >= end || stopRequested.load(ordering: .relaxed) { break }
            if now >= nextProgress {
                if !quiet, let counters = try? await Self.collect(loops.map { $0.snapshot() }) {
                    printError(Self.progressLine(second: second, plan: plan, counters: counters, lastEvents: lastEvents))
                    lastEvents = counters.events
                }
                second += 1
                continue
            }
            // Short naps, so that a signal is noticed within 100 ms.
            let wake = min(end, nextProgress, now + 100_000_000)
            try? await Task.sleep(nanoseconds: UInt64(max(0, wake - now)))
        }

        // The window the counts cover: from the start to the moment the loops take their final counts.
        let elapsed = Double(BenchClock.monotonicNanoseconds() - startMonotonic) / 1e9
        let final: LoadCounters
        do {
            final = try await Self.collect(loops.map { $0.finish() })
        } catch {
            printError("lifeline-bench load: could not collect results: \(error)")
            final = LoadCounters()
        }
        let summary = LoadSummary(plan: plan, url: url, counters: final, elapsedSeconds: elapsed)
        let json = summary.json()
        if let path = flags[LoadFlags.json] {
            do {
                try writeFile(path, json + "\n")
            } catch {
                printError("lifeline-bench load: cannot write \(path): \(error)")
                printFlushed(json)
            }
        } else {
            printFlushed(json)
        }
        if !quiet {
            printError(Self.finalLine(summary))
        }
        try? await group.shutdownGracefully()
        return 0
    }

    // MARK: Setup

    static func plan(from flags: ParsedFlags) throws -> LoadPlan {
        guard let url = flags[LoadFlags.url] else { throw UsageError("--url is required (see --help)") }
        let target = try LoadTarget.parse(url)
        guard let proto = LoadProtocol(rawValue: flags[LoadFlags.proto]) else { throw UsageError("--protocol: unknown") }
        // The URL's scheme says whether there is TLS; http1 runs over either.
        switch proto {
        case .h2 where !target.isTLS:
            throw UsageError("--protocol=h2 is HTTP/2 over TLS and needs an https:// URL (HTTP/2 over plain TCP: --protocol=h2c)")
        case .h2c where target.isTLS:
            throw UsageError("--protocol=h2c is HTTP/2 over plain TCP and needs an http:// URL (HTTP/2 over TLS: --protocol=h2)")
        default:
            break
        }
        let multiplex = flags[LoadFlags.multiplex]
        if multiplex > 1 && proto == .http1 {
            throw UsageError("--multiplex needs --protocol=h2c or h2 (HTTP/1.1 carries one request per connection)")
        }
        let duration = flags[LoadFlags.duration].nanoseconds
        let ramp = flags[LoadFlags.ramp].nanoseconds
        guard ramp < duration else {
            throw UsageError("--ramp (\(flags[LoadFlags.ramp])) must be shorter than --duration (\(flags[LoadFlags.duration]))")
        }
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(target.host, port: target.port)
        } catch {
            throw UsageError("--url: cannot resolve \(target.host): \(error)")
        }
        var sources: [SocketAddress] = []
        for source in flags[LoadFlags.sourceAddresses] {
            do {
                sources.append(try SocketAddress(ipAddress: source.description, port: 0))
            } catch {
                throw UsageError("--source-addresses: \(source): \(error)")
            }
        }
        if !sources.isEmpty, case .v6 = address {
            throw UsageError("--source-addresses are IPv4, but \(target.host) is IPv6")
        }
        let streams = flags[LoadFlags.streams]
        if streams > 1 && !target.hasStreamPlaceholder {
            printError("lifeline-bench load: note: --streams=\(streams) but the URL has no {k}; every connection gets the same path")
        }
        return LoadPlan(
            target: target, address: address, proto: proto,
            totalConnections: flags[LoadFlags.connections], streams: streams, multiplex: multiplex,
            shard: flags[LoadFlags.shard], durationNanoseconds: duration, rampNanoseconds: ramp,
            sourceAddresses: sources, reconnect: flags[LoadFlags.lastEventID],
            reconnectDelayNanoseconds: flags[LoadFlags.reconnectDelay].nanoseconds,
            connectTimeoutNanoseconds: flags[LoadFlags.connectTimeout].nanoseconds,
            stormAtWallNanoseconds: try Self.stormMoment(flags: flags, duration: duration))
    }

    /// The storm's wall-clock moment from `--storm-at` (after the start, which is about now) or
    /// `--storm-at-epoch`; it must fall inside the run.
    static func stormMoment(flags: ParsedFlags, duration: Int64) throws -> Int64? {
        let relative = flags[LoadFlags.stormAt]
        let epochMilliseconds = flags[LoadFlags.stormAtEpoch]
        let now = BenchClock.wallNanoseconds()
        let moment: Int64
        switch (relative, epochMilliseconds) {
        case (nil, nil):
            return nil
        case (.some, .some):
            throw UsageError("--storm-at and --storm-at-epoch: give one of them")
        case (.some(let after), nil):
            moment = now + after.nanoseconds
        case (nil, .some(let milliseconds)):
            moment = Int64(milliseconds) * 1_000_000
        }
        // A storm outside the run would silently measure nothing.
        guard moment > now, moment < now + duration else {
            throw UsageError(
                "the storm (\(moment / 1_000_000) ms since the epoch) must fall within the run: "
                    + "after now (\(now / 1_000_000)) and before the end (--duration)")
        }
        return moment
    }

    /// Every connection needs a file descriptor. Raise the soft limit to the hard one, and refuse
    /// to start a run that cannot fit rather than measure a pile of EMFILE errors.
    static func checkFileLimit(_ plan: LoadPlan) throws {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 {
                limit = raised
            }
        }
        // Event loops, the listener-less client's epoll and pipes, stdio: a few dozen spare.
        let needed = plan.shardConnectionCount + 64
        if limit.rlim_cur != rlim_t.max, UInt64(needed) > UInt64(limit.rlim_cur) {
            let perProcess = max(1, Int(limit.rlim_cur) - 64)
            let shards = (plan.totalConnections + perProcess - 1) / perProcess
            throw UsageError(
                "\(plan.shardConnectionCount) connections need about \(needed) open files, but this process may open "
                    + "\(limit.rlim_cur) (ulimit -n; hard limit \(limit.rlim_max)). Split the run over processes with "
                    + "--shard=I/N (N >= \(shards)) and merge their JSON with `lifeline-bench merge`.")
        }
    }

    /// Connections of this shard, round robin over the loops, each loop's list in opening order.
    /// A pipeline over TLS: `OpenSSLHandler`, then the subscription handler `makeHandler` makes.
    /// A benchmark talks to its own throwaway certificate, so nothing is verified; the rest of the
    /// ClientHello is a browser's: a server keeps the client's cipher, signature-algorithm and
    /// group lists per connection, so OpenSSL's longer client defaults would overstate what each
    /// connection costs it. Nil (after saying why) when TLS cannot be set up.
    private static func overTLS(
        plan: LoadPlan,
        alpn: String,
        then makeHandler: @escaping @Sendable (LoadLoop, LoadConnection, OpenSSLHandler?) -> ChannelHandler
    ) -> LoadLoop.PipelineSetup? {
        let tlsContext: TLSClientContext
        do {
            tlsContext = try TLSClientContext(verify: false, alpn: [alpn], offer: .browserLike)
        } catch {
            printError("lifeline-bench load: cannot set up TLS: \(error)")
            return nil
        }
        let serverName = plan.target.host
        return { channel, connection, loop in
            let tls = OpenSSLHandler.client(context: tlsContext, serverName: serverName)
            try channel.pipeline.syncOperations.addHandler(tls)
            try channel.pipeline.syncOperations.addHandler(makeHandler(loop, connection, tls))
        }
    }

    static func assign(plan: LoadPlan, to loops: [LoadLoop]) {
        var position = 0
        for index in plan.shardConnections {
            let source = plan.sourceAddresses.isEmpty ? nil : plan.sourceAddresses[index % plan.sourceAddresses.count]
            let subscriptions = (0..<plan.multiplex).map { request in
                let stream = plan.stream(connection: index, request: request)
                return Subscription(connectionIndex: index, stream: stream, path: plan.target.path(stream: stream))
            }
            let connection = LoadConnection(
                index: index, sourceAddress: source, openingOffset: plan.openingOffset(connection: index),
                subscriptions: subscriptions)
            loops[position % loops.count].add(connection)
            position += 1
        }
    }

    static func collect(_ futures: [EventLoopFuture<LoadCounters>]) async throws -> LoadCounters {
        var total = LoadCounters()
        for future in futures {
            total.merge(try await future.get())
        }
        return total
    }

    // MARK: Output

    static func progressLine(second: Int, plan: LoadPlan, counters: LoadCounters, lastEvents: Int) -> String {
        let subscriptions = plan.shardConnectionCount * plan.multiplex
        var line = "[\(pad(second, 4))s] held \(counters.held)/\(subscriptions)"
        let notHeld = counters.connectErrors + counters.badStatus.values.reduce(0, +) + counters.closedBeforeHead
            + counters.notEventStream
        if notHeld > 0 || counters.dropped > 0 {
            line += " (failed \(notHeld), dropped \(counters.dropped))"
        }
        line += " | \(counters.events - lastEvents) ev/s, \(counters.events) total"
        if counters.latency.totalCount > 0 {
            line += " | latency p50 \(micros(counters.latency.valueAtPercentile(50)))"
            line += " p99 \(micros(counters.latency.valueAtPercentile(99)))"
            line += " max \(micros(counters.latency.maxRecorded))"
        }
        line += " | gaps \(counters.gaps) dups \(counters.duplicates)"
        if counters.comments > 0 { line += " | comments \(counters.comments)" }
        if counters.stormDropped > 0 {
            line += " | storm: resumed \(counters.resumed)/\(counters.stormDropped)"
            if counters.resumeLatency.totalCount > 0 {
                line += " p50 \(micros(counters.resumeLatency.valueAtPercentile(50)))"
                line += " p99 \(micros(counters.resumeLatency.valueAtPercentile(99)))"
            }
        }
        return line
    }

    static func finalLine(_ summary: LoadSummary) -> String {
        var line = "done: held \(summary.held)/\(summary.subscriptions), failed \(summary.failed), dropped \(summary.dropped), "
            + "events \(summary.events) (\(summary.eventsPerS)/s), gaps \(summary.gaps), duplicates \(summary.duplicates), "
            + "latency p50/p99/p99.9/max \(summary.latencyUs.p50)/\(summary.latencyUs.p99)/\(summary.latencyUs.p999)/\(summary.latencyUs.max) µs"
        if let storm = summary.storm {
            line += "; storm: dropped \(storm.dropped) (spread \(storm.dropSpreadMs) ms), not streaming \(storm.notStreaming), "
                + "resumed \(storm.resumed), resume p50/p99/max \(storm.resumeUs.p50)/\(storm.resumeUs.p99)/\(storm.resumeUs.max) µs"
        }
        return line
    }

    private static func micros(_ value: UInt64) -> String {
        if value >= 10_000 { return "\((Double(value) / 100).rounded() / 10)ms" }
        return "\(value)µs"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}

/// Writes `text` to `path` (replacing it).
func writeFile(_ path: String, _ text: String) throws {
    guard let file = fopen(path, "w") else {
        throw UsageError(String(cString: strerror(errno)))
    }
    defer { fclose(file) }
    let written = text.utf8CString.withUnsafeBufferPointer { fputs($0.baseAddress!, file) }
    if written < 0 {
        throw UsageError(String(cString: strerror(errno)))
    }
}

/// The bytes of the file at `path`.
func readFile(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "r") else {
        throw UsageError("\(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if count <= 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return bytes
}

/// Set by SIGINT/SIGTERM: end the run now and report.
let stopRequested = Atomic<Bool>(false)

private func installStopSignals() {
    for signalNumber in [SIGINT, SIGTERM] {
        signal(signalNumber) { number in
            stopRequested.store(true, ordering: .relaxed)
            // A second signal gets the default action: the process ends at once.
            signal(number, SIG_DFL)
        }
    }
}
