import LifelineCore
import Logging
import NIOCore
import NIOHTTP1

/// What both front ends (HTTP/1.1 and HTTP/2) keep of one client connection: its admission under
/// the connection limits and what its access-log line says when it ends.
struct ClientConnectionRecord {
    enum Admission {
        case pending
        case admitted(ConnectionLimiter.Admission)
        case refused(ConnectionLimiter.Refusal)
    }

    let protocolName: String
    let connectedAt: NIODeadline
    private(set) var client: String?
    private(set) var admission = Admission.pending
    var requests = 0
    var eventsSent = 0
    var bytesSent = 0
    var lastTarget = "-"
    /// The last request's path, its query values masked (`StreamKey.displayPath`).
    var lastPath = "-"
    /// How the connection ended, for the access log; the last reason given wins.
    var endReason = "client closed"

    init(protocolName: String, connectedAt: NIODeadline) {
        self.protocolName = protocolName
        self.connectedAt = connectedAt
    }

    /// Admits the connection under `--max-clients` and `--max-clients-per-ip`; returns the refusal,
    /// if any (the connection is then answered `refusal.status` and closed). Once per connection.
    mutating func admit(address: String?, shared: GatewayShared, counters: LoopCounters) -> ConnectionLimiter.Refusal? {
        guard case .pending = self.admission else { return nil }
        self.client = address
        switch shared.limiter.admit(address: address ?? "unknown") {
        case .success(let admission):
            self.admission = .admitted(admission)
            counters.values.connectionsAccepted += 1
            return nil
        case .failure(let refusal):
            let reason: RefusalReason = refusal == .tooManyClients ? .tooManyClients : .tooManyFromAddress
            counters.values.refused[reason] += 1
            counters.note(.refused, "\(reason.status) \(reason.rawValue) from \(address ?? "unknown")")
            self.admission = .refused(refusal)
            self.endReason = refusal.endReason
            return refusal
        }
    }

    var isAdmitted: Bool {
        if case .admitted = self.admission { return true }
        return false
    }

    /// What a finished (or abandoned) exchange adds to the record.
    mutating func account(_ exchange: ClientExchange) {
        self.eventsSent += exchange.eventsSent
        self.lastTarget = exchange.target
        if let path = exchange.streamPath {
            self.lastPath = path
        }
        if exchange.endReason != "response complete" {
            self.endReason = exchange.endReason
        }
    }

    /// The connection is gone: releases its admission and writes its access-log line (once; not
    /// for a connection that never got as far as admission).
    mutating func close(shared: GatewayShared, now: NIODeadline) {
        switch self.admission {
        case .pending:
            return
        case .admitted(let admission):
            shared.limiter.release(admission, address: self.client ?? "unknown")
        case .refused:
            break
        }
        self.admission = .pending
        // Numbers as numbers: `--log-format=json` keeps them so for log pipelines.
        let metadata: Logger.Metadata = [
            "client": "\(self.client ?? "-")",
            "protocol": "\(self.protocolName)",
            "path": "\(self.lastPath)",
            "target": "\(self.lastTarget)",
            "requests": .stringConvertible(self.requests),
            "duration_ms": .stringConvertible(Int((now - self.connectedAt).nanoseconds / 1_000_000)),
            "events": .stringConvertible(self.eventsSent),
            "bytes": .stringConvertible(self.bytesSent),
            "end": "\(self.endReason)",
        ]
        shared.accessLogger.info("connection closed", metadata: metadata)
    }
}

extension ConnectionLimiter.Refusal {
    var status: HTTPResponseStatus {
        switch self {
        case .tooManyClients: return .serviceUnavailable
        case .tooManyFromAddress: return .tooManyRequests
        }
    }

    var body: String {
        switch self {
        case .tooManyClients: return "too many clients\n"
        case .tooManyFromAddress: return "too many connections from your address\n"
        }
    }

    var endReason: String { "refused (\(self.status.code))" }
}
