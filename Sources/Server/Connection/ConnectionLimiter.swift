import Atomics
import NIOConcurrencyHelpers

/// Counts client connections, in total and per client address (`--max-clients`,
/// `--max-clients-per-ip`). Shared by every event loop.
///
/// Admission is on every connection's path, so it takes no process-wide lock: the total is an
/// atomic counter, and addresses are counted (only while `--max-clients-per-ip` is set) in 16
/// shards by address, each with its own lock.
final class ConnectionLimiter: Sendable {
    /// What ``admit(address:)`` counted, for the matching ``release(_:address:)``: a reload may
    /// turn the per-address limit on or off while the connection is open. (No copy of the
    /// address: the connection keeps it anyway, and this sits in every connection's record.)
    struct Admission: Sendable {
        let countedByAddress: Bool
    }

    /// Why ``admit(address:)`` refuses: one of the two limits. A type of its own (one byte) rather
    /// than a `RequestRefusal`, because it sits in every connection's record.
    enum Refusal: Error, Sendable {
        case tooManyClients
        case tooManyFromAddress

        var requestRefusal: RequestRefusal {
            switch self {
            case .tooManyClients: return .tooManyClients
            case .tooManyFromAddress: return .tooManyFromAddress
            }
        }
    }

    private static let unlimited = Int.max
    private static let shardCount = 16

    private let admitted = ManagedAtomic(0)
    private let maxClients: ManagedAtomic<Int>
    private let maxPerAddress: ManagedAtomic<Int>
    private let byAddress: [NIOLockedValueBox<[String: Int]>] = (0..<ConnectionLimiter.shardCount).map { _ in
        NIOLockedValueBox([:])
    }

    init(maxClients: Int?, maxPerAddress: Int?) {
        self.maxClients = ManagedAtomic(maxClients ?? Self.unlimited)
        self.maxPerAddress = ManagedAtomic(maxPerAddress ?? Self.unlimited)
    }

    /// New limits (a configuration reload); connections already admitted stay.
    func updateLimits(maxClients: Int?, maxPerAddress: Int?) {
        self.maxClients.store(maxClients ?? Self.unlimited, ordering: .relaxed)
        self.maxPerAddress.store(maxPerAddress ?? Self.unlimited, ordering: .relaxed)
    }

    var total: Int { self.admitted.load(ordering: .relaxed) }

    /// Admits a connection; it must later be released with what this returns.
    func admit(address: String) -> Result<Admission, Refusal> {
        let maxClients = self.maxClients.load(ordering: .relaxed)
        var current = self.admitted.load(ordering: .relaxed)
        while true {
            if current >= maxClients {
                return .failure(.tooManyClients)
            }
            let (exchanged, original) = self.admitted.weakCompareExchange(
                expected: current,
                desired: current + 1,
                ordering: .relaxed
            )
            if exchanged { break }
            current = original
        }
        let maxPerAddress = self.maxPerAddress.load(ordering: .relaxed)
        guard maxPerAddress != Self.unlimited else {
            return .success(Admission(countedByAddress: false))
        }
        let fits = self.shard(address).withLockedValue { counts -> Bool in
            let fromAddress = counts[address, default: 0]
            guard fromAddress < maxPerAddress else { return false }
            counts[address] = fromAddress + 1
            return true
        }
        guard fits else {
            self.admitted.wrappingDecrement(ordering: .relaxed)
            return .failure(.tooManyFromAddress)
        }
        return .success(Admission(countedByAddress: true))
    }

    /// Releases a connection admitted from `address`.
    func release(_ admission: Admission, address: String) {
        self.admitted.wrappingDecrement(ordering: .relaxed)
        guard admission.countedByAddress else { return }
        self.shard(address).withLockedValue { counts in
            let left = counts[address, default: 1] - 1
            counts[address] = left > 0 ? left : nil
        }
    }

    /// Connections counted for `address` (only while the per-address limit is set).
    func count(for address: String) -> Int {
        self.shard(address).withLockedValue { $0[address, default: 0] }
    }

    private func shard(_ address: String) -> NIOLockedValueBox<[String: Int]> {
        var hasher = Hasher()
        hasher.combine(address)
        return self.byAddress[Int(UInt(bitPattern: hasher.finalize()) % UInt(Self.shardCount))]
    }
}
