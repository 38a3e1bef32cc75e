import LifelineCore
import Prometheus
import Server

/// `/metrics`: one look at the gateway in the Prometheus text format (version 0.0.4).
///
/// The hot path counts in per-loop plain integers (`LoopCounters`), not in swift-metrics'
/// shared counters; at scrape time their sums are written through a fresh swift-prometheus
/// registry, which owns the format (names, HELP/TYPE lines, label escaping).
enum MetricsExposition {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Values the gateway keeps outside its counters (issue-specific extras go here).
    struct Extras: Sendable {
        var configReloads: (success: Int, failure: Int)?
    }

    /// The whole name as `metricName`: the descriptor joins its non-empty parts with `_`.
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    static func render(_ gathered: StatusSampler.Gathered, extras: Extras = Extras()) -> String {
        let registry = PrometheusCollectorRegistry()
        let counters = gathered.counters

        func gauge(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
            registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels).set(Double(value))
        }
        func counter(_ name: String, _ help: String, _ value: Int, labels: [(String, String)] = []) {
            registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels).increment(by: Int64(value))
        }

        let connectionsHelp = "Open client connections."
        for clientProtocol in ClientProtocol.allCases {
            for tls in [false, true] {
                gauge(
                    "lifeline_connections", connectionsHelp, counters.connectionsOpen[clientProtocol, tls: tls],
                    labels: [("protocol", clientProtocol.rawValue), ("tls", tls ? "true" : "false")]
                )
            }
        }
        gauge("lifeline_subscribers", "Clients currently receiving a stream.", counters.subscribers)
        gauge("lifeline_streams", "Open streams, shared and private.", gathered.streams.count)
        gauge(
            "lifeline_upstream_connected", "Streams whose origin connection is up (with --redis: this instance's, or the owner's for a stream it follows).",
            gathered.streams.count { $0.upstreamState == "connected" || $0.upstreamState == "following" }
        )
        gauge(
            "lifeline_replay_buffered_events", "Events held in replay buffers, over all streams.",
            gathered.streams.reduce(0) { $0 + $1.replayEvents }
        )
        gauge(
            "lifeline_replay_buffered_bytes", "Bytes of events held in replay buffers, over all streams.",
            gathered.streams.reduce(0) { $0 + $1.replayBytes }
        )
        counter("lifeline_events_received_total", "Events received from origins.", counters.eventsReceived)
        counter(
            "lifeline_events_sent_total", "Event deliveries to clients (one per client per event, replays included).",
            counters.eventsSent
        )
        counter("lifeline_heartbeats_sent_total", "Heartbeats written to idle clients.", counters.heartbeatsSent)
        counter(
            "lifeline_sent_bytes_total",
            "Bytes written to clients (HTTP/1.1 as on the wire, HTTP/2 the DATA payloads).", counters.bytesSent
        )
        let replayHelp = "Clients that resumed with a Last-Event-ID, by whether the replay buffer had their place."
        counter("lifeline_replay_requests_total", replayHelp, counters.replayHits, labels: [("result", "hit")])
        counter("lifeline_replay_requests_total", replayHelp, counters.replayMisses, labels: [("result", "miss")])
        counter(
            "lifeline_catch_up_joins_total",
            "Clients that missed, caught up from the origin on a connection of their own, then joined the shared stream.",
            counters.catchUpsJoined
        )
        for reason in UpstreamDisconnect.allCases {
            counter(
                "lifeline_upstream_reconnects_total", "Origin connections that ended and were reconnected, by why they ended.",
                counters.upstreamReconnects[reason], labels: [("reason", reason.rawValue)]
            )
        }
        counter(
            "lifeline_slow_client_disconnects_total", "Clients disconnected for falling more than --client-buffer behind.",
            counters.slowClientDisconnects
        )
        for party in EndingParty.allCases {
            counter(
                "lifeline_exchanges_ended_total",
                "Requests that ended, by whose doing: none (complete), client, origin or lifeline.",
                counters.exchangesEnded[party], labels: [("by", party.rawValue)]
            )
        }
        for reason in RefusalReason.allCases {
            counter(
                "lifeline_requests_refused_total", "Requests and connections answered by the gateway itself, by reason.",
                counters.refused[reason], labels: [("reason", reason.rawValue)]
            )
        }
        counter("lifeline_connections_accepted_total", "Client connections admitted.", counters.connectionsAccepted)
        counter("lifeline_stream_requests_total", "Requests served as event streams.", counters.streamRequests)
        counter("lifeline_proxied_requests_total", "Requests proxied to origins as plain requests.", counters.proxiedRequests)
        counter(
            "lifeline_last_event_ids_rejected_total", "Last-Event-IDs refused (control characters, over 1024 bytes) and treated as absent.",
            counters.lastEventIDsRejected
        )
        counter("lifeline_tls_handshake_failures_total", "Failed TLS handshakes.", gathered.tlsHandshakeFailures)
        if let reloads = extras.configReloads {
            let help = "Flag file reloads (SIGHUP), by result."
            counter("lifeline_config_reloads_total", help, reloads.success, labels: [("result", "success")])
            counter("lifeline_config_reloads_total", help, reloads.failure, labels: [("result", "failure")])
        }
        if let store = gathered.sharedStore {
            gauge("lifeline_redis_up", "1 when Redis (--redis) answered the latest probe, 0 when streams read their origins directly.",
                  store.reachable ? 1 : 0)
            for role in SharedRole.allCases where role != .standalone {
                gauge("lifeline_shared_streams", "Streams by this instance's part in them: owner, follower, fallback (Redis unreachable), deciding.",
                      gathered.streams.count { $0.role == role }, labels: [("role", role.rawValue)])
            }
            let appendsHelp = "Batches of events an owner wrote to the shared history, by result (failed: fenced or Redis unreachable)."
            counter("lifeline_history_appends_total", appendsHelp, counters.historyAppendsStored, labels: [("result", "stored")])
            counter("lifeline_history_appends_total", appendsHelp, counters.historyAppendsFailed, labels: [("result", "failed")])
            counter("lifeline_history_fallbacks_total", "Times a stream fell back to its own origin connection because Redis could not be used.",
                    counters.historyFallbacks)
            counter("lifeline_history_resume_hits_total", "Resumes served from the shared history after this instance's buffer missed.",
                    counters.historyResumeHits)
        }
        gauge("lifeline_build_info", "Always 1; the labels say which build runs.", 1, labels: [("version", LifelineVersion.current)])

        let process = gathered.process
        registry.makeGauge(descriptor: Self.descriptor("process_resident_memory_bytes", "Resident memory size in bytes."))
            .set(Double(process.residentBytes))
        registry.makeGauge(descriptor: Self.descriptor("process_virtual_memory_bytes", "Virtual memory size in bytes."))
            .set(Double(process.virtualBytes))
        registry.makeGauge(descriptor: Self.descriptor("process_open_fds", "Number of open file descriptors."))
            .set(Double(process.openFiles))
        registry.makeGauge(descriptor: Self.descriptor("process_max_fds", "Maximum number of open file descriptors."))
            .set(Double(process.maxFiles))
        registry.makeCounter(descriptor: Self.descriptor("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."))
            .increment(by: process.cpuSeconds)
        registry.makeGauge(descriptor: Self.descriptor("process_start_time_seconds", "Start time of the process since unix epoch in seconds."))
            .set(process.startTime)
        registry.makeGauge(descriptor: Self.descriptor("process_threads", "Number of OS threads in the process."))
            .set(Double(process.threads))
        return Self.sortedByFamily(registry.emitToString())
    }

    /// The registry emits families in hash order; sorted, scrapes can be compared by eye and diff.
    static func sortedByFamily(_ text: String) -> String {
        var families: [(name: Substring, lines: [Substring])] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || (line.hasPrefix("# TYPE ") && families.last.map({ !$0.lines.last!.hasPrefix("# HELP ") }) ?? true) {
                let name = line.dropFirst(7).prefix { $0 != " " }
                families.append((name, [line]))
            } else if !families.isEmpty {
                families[families.count - 1].lines.append(line)
            }
        }
        return families.sorted { $0.name < $1.name }
            .map { family in
                let header = family.lines.prefix { $0.hasPrefix("#") }
                let samples = family.lines.dropFirst(header.count).sorted()
                return (header + samples).joined(separator: "\n") + "\n"
            }
            .joined()
    }
}
