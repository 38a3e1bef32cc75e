import Dispatch
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What moves the process's `GatewayLifecycle`, as one stream that the main task reads in order:
/// signals (installed at once, so that an early one is not lost or fatal) and what the process's
/// own tasks report (the drain is over, the upgrade's new process is ready or failed).
final class LifecycleEvents: @unchecked Sendable {  // sources: behind their lock
    enum Event: Sendable, Equatable {
        case signal(Int32)
        case drainFinished
        case upgradeReady(pid: Int32)
        case upgradeFailed(String)
    }

    let stream: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let sources: NIOLockedValueBox<[DispatchSourceSignal]>

    init(signals: [Int32]) {
        (self.stream, self.continuation) = AsyncStream<Event>.makeStream()
        let continuation = self.continuation
        let queue = DispatchQueue(label: "lifeline.signals")
        var sources: [DispatchSourceSignal] = []
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { continuation.yield(.signal(number)) }
            source.resume()
            sources.append(source)
        }
        self.sources = NIOLockedValueBox(sources)
    }

    func send(_ event: Event) {
        self.continuation.yield(event)
    }

    func finish() {
        self.sources.withLockedValue { sources in
            for source in sources { source.cancel() }
            sources.removeAll()
        }
        self.continuation.finish()
    }

    static func name(_ number: Int32) -> String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGUSR2: return "SIGUSR2"
        default: return "signal \(number)"
        }
    }
}
