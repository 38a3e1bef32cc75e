import Flags
import NIOCore
import NIOPosix

/// `lifeline-bench origin`: serves the benchmark streams until killed.
enum OriginCommand {
    static func run(arguments: [String]) async -> Int32 {
        let flags: ParsedFlags
        switch parseSubcommand(
            arguments, flags: OriginFlags.set, programName: "lifeline-bench origin",
            usage: "Usage: lifeline-bench origin --listen=127.0.0.1:PORT --streams=N --rate=R [--payload=BYTES] [--flag=value ...]")
        {
        case .success(let parsed): flags = parsed
        case .failure(let exit): return exit.status
        }
        let rate = flags[OriginFlags.rate]
        let schedule = OriginSchedule(
            periodNanoseconds: rate > 0 ? max(1, Int64((1e9 / rate).rounded())) : 0,
            streams: flags[OriginFlags.streams],
            payload: flags[OriginFlags.payload],
            replay: flags[OriginFlags.replay],
            retryMilliseconds: flags[OriginFlags.retry].map { $0.nanoseconds / 1_000_000 },
            dropEveryNanoseconds: flags[OriginFlags.dropEvery].nanoseconds)
        let listen = flags[OriginFlags.listen]
        let threads = flags[OriginFlags.threads] > 0 ? flags[OriginFlags.threads] : System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            let host = listen.isAnyHost ? "0.0.0.0" : listen.host
            let channel = try await OriginServer.start(host: host, port: listen.port, schedule: schedule, group: group)
            let port = channel.localAddress?.port ?? listen.port
            let shown = host.contains(":") ? "[\(host)]" : host
            printFlushed("bench-origin listening on http://\(shown):\(port)")
            printError(
                "bench-origin: \(schedule.streams) streams at /s/0../s/\(schedule.streams - 1), \(rate) events/s each, "
                    + "payload \(schedule.payload) B, replay \(schedule.replay) events, \(threads) threads; "
                    + "GET /stats counts the stream requests served")
            // Runs until the process is killed (the benchmarks kill and restart it on purpose).
            try await channel.closeFuture.get()
            return 0
        } catch {
            printError("lifeline-bench origin: cannot listen on \(listen): \(error)")
            return 1
        }
    }
}
