import LifelineCore
import NIOCore
import NIOHTTP1

/// Writes one stream to one subscriber: the response head and the opening bytes, the replay, the
/// live events, heartbeats in pauses, the cut of a client that falls more than `--client-buffer`
/// behind, its moment in a drain, and the move from a catching-up stream to the shared one.
///
/// What it learns from the stream comes by value, on its own loop (`StreamAttachment`, chunks),
/// through its exchange: the exchange is the stream's `StreamSubscriber` and hands each call to
/// its writer, so that what may outlive the client (a stream's membership and attach task, the
/// drain clock) refers to one object per client: the exchange, held until the writer leaves. The writer lives
/// only inside its exchange: nothing else holds it (the exchange's state is private, and it is
/// never handed out), so it holds its exchange `unowned(unsafe)`, which costs no reference
/// counting on the per-event path. Confined to the client's loop.
final class StreamWriter {
    enum State {
        /// `attach` was called; the stream answers with `streamAttached` or `streamRefused`.
        case attaching
        /// Writing the event-stream response.
        case streaming(StreamMembership)
        /// The response is over, or the client left.
        case finished
    }

    // A writer lives as long as its client, so it keeps little: no configuration (the whole
    // `GatewayConfiguration` would cost every idle client half a KiB; the head and the opening
    // bytes take the loop's configuration of the moment they are written), and its loop and
    // responder through its exchange (a field load each, a few times per event). It reports to
    // the exchange: `streamWriterStarted`, `streamWriter(_:wasRefused:)`,
    // `streamWriter(_:finishedWith:)`.
    private unowned(unsafe) let owner: ClientExchange
    private var loop: LoopContext { self.owner.loop }
    private var responder: ClientResponder? { self.owner.responder }
    private(set) var state = State.attaching
    private var queue: SubscriberQueue
    /// Events written to the client (replayed ones included), for the access log.
    private(set) var eventsSent = 0

    /// - Parameter clientBuffer: `--client-buffer`, the bound of the queue of unsent bytes.
    init(clientBuffer: Int, owner: ClientExchange) {
        self.owner = owner
        self.queue = SubscriberQueue(limit: clientBuffer)
    }

    /// The stream being written, while attached.
    var stream: EventStream? {
        if case .streaming(let membership) = self.state { return membership.stream }
        return nil
    }

    /// The client is gone: leave the stream (the stream goes on for the others).
    func clientGone() {
        self.leave()
    }

    /// Leaves the stream and forgets everything; no callback to the owner.
    private func leave() {
        if case .streaming(let membership) = self.state {
            // The membership is the subscriber's heartbeat entry too.
            self.loop.heartbeatClock.remove(membership)
            self.loop.counters.values.subscribers -= 1
            membership.leave()
        }
        self.queue.removeAll()
        self.state = .finished
    }

    /// The owner hears first, while the writer still names its stream (for the access log).
    private func finish(_ outcome: ExchangeOutcome) {
        self.owner.streamWriter(self, finishedWith: outcome)
        self.leave()
    }

    // MARK: Writing

    func clientWritabilityChanged() {
        guard case .streaming = self.state, let responder = self.responder, responder.isWritable else { return }
        while responder.isWritable, let buffer = self.queue.dequeue() {
            responder.writeBody(buffer)
        }
        responder.flush()
    }

    /// Writes subscriber bytes, or queues them while the client is not taking them. Returns
    /// false when the client was disconnected for being too slow.
    @discardableResult
    private func send(_ buffer: ByteBuffer, counted: Bool, shared: Bool) -> Bool {
        guard let responder = self.responder else { return false }
        if self.queue.isEmpty && responder.isWritable {
            if shared {
                responder.writeShared(buffer)
            } else {
                responder.writeBody(buffer)
            }
            return true
        }
        if self.queue.enqueue(buffer, counted: counted) == .overflow {
            let path = self.stream?.displayPath
            self.loop.counters.values.slowClientDisconnects += 1
            self.loop.counters.note(.slowClient, "client over --client-buffer; disconnected", stream: path)
            self.loop.shared.logger.info(
                "client over --client-buffer; disconnecting",
                metadata: ["client": "\(responder.clientAddress ?? "-")", "stream": "\(self.stream.map { "\($0.key)" } ?? "-")"]
            )
            self.finish(.slowClient)
            responder.abortResponse()
            return false
        }
        return true
    }

    /// Replay in pieces of about 64 KiB: they go out as the client takes them.
    private func sendReplay(_ events: [EncodedEvent], allocator: ByteBufferAllocator) {
        var piece: [ByteBuffer] = []
        var pieceBytes = 0
        for (index, event) in events.enumerated() {
            piece.append(event.bytes)
            pieceBytes += event.bytes.readableBytes
            if pieceBytes >= 64 << 10 || index == events.count - 1 {
                let chunk = StreamChunk(joining: piece, eventCount: piece.count, allocator: allocator)
                guard self.send(chunk.bytes, counted: false, shared: false) else { return }
                piece.removeAll(keepingCapacity: true)
                pieceBytes = 0
            }
        }
    }

    /// The response head of a subscriber: the gateway's headers, then the origin's that every
    /// subscriber repeats (from the attachment, by value).
    static func responseHeaders(
        for attachment: StreamAttachment,
        heartbeat: TimeAmount?
    ) -> HTTPHeaders {
        var headers = HTTPHeaders([
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ])
        switch attachment.replayStatus {
        case .none: break
        case .hit: headers.add(name: "Lifeline-Replay", value: "hit")
        case .miss: headers.add(name: "Lifeline-Replay", value: "miss")
        }
        if let heartbeat {
            // The client helper's watchdog: a connection silent for about twice this is dead.
            headers.add(name: "Lifeline-Heartbeat", value: String(heartbeat.nanoseconds / 1_000_000))
        }
        var exposed = false
        // A private generation names its resume path: a cross-site client must be able to read it.
        let ours = attachment.originHeaders.contains { $0.0 == "Lifeline-Resume" }
            ? "Lifeline-Replay, Lifeline-Heartbeat, Lifeline-Resume" : "Lifeline-Replay, Lifeline-Heartbeat"
        for (name, value) in attachment.originHeaders {
            if name.lowercased() == "access-control-expose-headers" {
                headers.add(name: name, value: value + ", " + ours)
                exposed = true
            } else {
                headers.add(name: name, value: value)
            }
        }
        if !exposed {
            // So that a cross-site fetch-based client can read them (CORS hides other headers).
            headers.add(name: "Access-Control-Expose-Headers", value: ours)
        }
        return headers
    }
}

// MARK: - The stream's calls, handed over by the exchange

extension StreamWriter {
    func streamAttached(_ attachment: StreamAttachment) {
        if attachment.kind == .continuation {
            return self.continueOnSharedStream(attachment)
        }
        guard case .attaching = self.state, let responder = self.responder else {
            attachment.membership.leave()
            return
        }
        switch attachment.replayStatus {
        case .none: break
        case .hit: self.loop.counters.values.replayHits += 1
        case .miss: self.loop.counters.values.replayMisses += 1
        }
        let configuration = self.loop.shared.configuration
        let headers = Self.responseHeaders(for: attachment, heartbeat: configuration.heartbeat)
        responder.writeHead(status: .ok, headers: headers, isEventStream: true)

        // The opening bytes: a comment so the stream is seen open at once, the retry line, the
        // gap event, then what the client missed.
        var intro = responder.allocator.buffer(capacity: 128)
        intro.writeImmutableBuffer(self.loop.opening)
        // A private generation is read by SDKs, not EventSource, and is never reconnected: a
        // `retry:` of the gateway's own would reach some of them as an empty event (the `openai`
        // package's decoder dispatches a block with only `retry:`, and fails on its empty data).
        let isPrivateGeneration = attachment.membership.stream.sharing == .privateGeneration
        if let retry = configuration.clientRetry, !isPrivateGeneration {
            var milliseconds = retry.nanoseconds / 1_000_000
            let jitter = configuration.clientRetryJitter.nanoseconds / 1_000_000
            if jitter > 0 {
                milliseconds += Int64.random(in: 0...jitter)
            }
            intro.writeString("retry: \(milliseconds)\n\n")
        } else if let retry = attachment.originRetry, !isPrivateGeneration {
            intro.writeString("retry: \(retry)\n\n")
        }
        if let gap = attachment.gapEvent {
            intro.writeImmutableBuffer(gap)
        }
        self.eventsSent += attachment.replay.count
        self.loop.counters.values.eventsSent += attachment.replay.count
        self.loop.counters.values.subscribers += 1
        self.state = .streaming(attachment.membership)
        self.owner.streamWriterStarted(self)
        self.send(intro, counted: false, shared: false)
        self.sendReplay(attachment.replay, allocator: responder.allocator)
        responder.flush()
        guard case .streaming = self.state else { return }  // cut while replaying
        self.loop.heartbeatClock.register(attachment.membership)
        if self.loop.drainClock.isDraining {
            self.loop.drainClock.add(self.owner)
        }
    }

    /// The client caught up on a stream of its own and continues on the shared one: it leaves
    /// its own (which then ends, closing that origin connection) and gets exactly the events
    /// that followed the last one it was sent.
    private func continueOnSharedStream(_ attachment: StreamAttachment) {
        guard case .streaming(let own) = self.state, let responder = self.responder else {
            attachment.membership.leave()
            return
        }
        self.loop.heartbeatClock.remove(own)
        own.leave()
        self.state = .streaming(attachment.membership)
        self.eventsSent += attachment.replay.count
        self.loop.counters.values.eventsSent += attachment.replay.count
        self.sendReplay(attachment.replay, allocator: responder.allocator)
        responder.flush()
        guard case .streaming = self.state else { return }
        self.loop.heartbeatClock.register(attachment.membership)
    }

    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline) {
        guard case .streaming(let membership) = self.state, let responder = self.responder else { return }
        if self.queue.isEmpty && responder.isWritable {
            // The common case, per event and client: straight out, in one pass.
            responder.writeSharedAndFlush(chunk.bytes)
        } else {
            guard self.send(chunk.bytes, counted: true, shared: true) else { return }
            responder.flush()
        }
        self.eventsSent += chunk.eventCount
        let loop = self.loop
        loop.counters.values.eventsSent += chunk.eventCount
        loop.heartbeatClock.touch(membership, now: now)
    }

    func heartbeatDue() {
        guard case .streaming(let membership) = self.state else { return }
        // Only when nothing is waiting: a client with queued bytes is not idle.
        guard self.queue.isEmpty else { return }
        // Read from the membership rather than kept: a writer per client stays small.
        let heartbeat = membership.stream.sharing == .privateGeneration ? self.loop.privateHeartbeat : self.loop.heartbeat
        guard self.send(heartbeat.bytes, counted: true, shared: true) else { return }
        self.loop.counters.values.heartbeatsSent += 1
        self.responder?.flushIdle()
    }

    func streamEnded(_ reason: StreamEndReason) {
        guard case .streaming = self.state, let responder = self.responder else { return }
        // What is queued goes out before the end: it is bounded by --client-buffer.
        while let buffer = self.queue.dequeue() {
            responder.writeBody(buffer)
        }
        self.finish(.streamEnded(reason))
        if reason == .originBroke {
            // The origin's response broke off: so does this one (no clean end), so that the
            // client can tell an incomplete generation from a complete one.
            responder.abortResponse()
            return
        }
        // At shutdown the connection goes too, so that the client reconnects elsewhere.
        responder.endResponse(closeConnection: reason == .shutdown)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        guard case .attaching = self.state else { return }
        self.state = .finished
        self.owner.streamWriter(self, wasRefused: refusal)
    }
}

// MARK: - Drain

extension StreamWriter {
    /// The gateway drains: a streaming client is let go at its moment; one that is not streaming
    /// yet gets its moment when it starts (`streamAttached`).
    func drainRequested() {
        if case .streaming = self.state {
            self.loop.drainClock.add(self.owner)
        }
    }

    /// This client's drain moment: a `retry:` so that reconnects spread further, then the
    /// response ends and the connection closes (HTTP/1.1) or the stream ends (HTTP/2, after
    /// GOAWAY). The stream itself goes on for the others.
    func drainNow() {
        guard case .streaming = self.state, let responder = self.responder else { return }
        while let buffer = self.queue.dequeue() {
            responder.writeBody(buffer)
        }
        var retry = responder.allocator.buffer(capacity: 24)
        retry.writeString("retry: \(self.loop.drainClock.retryMilliseconds())\n\n")
        responder.writeBody(retry)
        self.finish(.drained)
        responder.endResponse(closeConnection: true)
    }
}
