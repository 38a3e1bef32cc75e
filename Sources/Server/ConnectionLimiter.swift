import NIOConcurrencyHelpers

/// Counts client connections, in total and per client address (`--max-clients`,
/// `--max-clients-per-ip`). Shared by every event loop.
final class ConnectionLimiter: Sendable {
    enum Refusal: Error {
        /// Over `--max-clients`: 503.
        case tooManyClients
        /// Over `--max-clients-per-ip`: 429.
        case tooManyFromAddress
    }

    private struct Counts {
        var total = 0
        var byAddress: [String: Int] = [:]
        var maxClients: Int?
        var maxPerAddress: Int?
    }

    private let counts: NIOLockedValueBox<Counts>

    init(maxClients: Int?, maxPerAddress: Int?) {
        self.counts = NIOLockedValueBox(Counts(maxClients: maxClients, maxPerAddress: maxPerAddress))
    }

    /// New limits (a configuration reload); connections already admitted stay.
    func updateLimits(maxClients: Int?, maxPerAddress: Int?) {
        self.counts.withLockedValue {
            $0.maxClients = maxClients
            $0.maxPerAddress = maxPerAddress
        }
    }

    var total: Int { self.counts.withLockedValue { $0.total } }

    /// Admits a connection, which must later be released with the same address.
    func admit(address: String) -> Refusal? {
        self.counts.withLockedValue { counts in
            if let max = counts.maxClients, counts.total >= max {
                return .tooManyClients
            }
            let fromAddress = counts.byAddress[address, default: 0]
            if let max = counts.maxPerAddress, fromAddress >= max {
                return .tooManyFromAddress
            }
            counts.total += 1
            counts.byAddress[address] = fromAddress + 1
            return nil
        }
    }

    func release(address: String) {
        self.counts.withLockedValue { counts in
            counts.total -= 1
            let left = counts.byAddress[address, default: 1] - 1
            counts.byAddress[address] = left > 0 ? left : nil
        }
    }
}
