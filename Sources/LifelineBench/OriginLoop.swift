import NIOCore

/// The benchmark origin's work on one event loop: the stream connections accepted on that loop, one
/// timer that ticks every stream, and the replay of missed events.
///
/// Each loop ticks on its own (rather than one loop encoding and handing events to the others) so
/// that no event waits for a hop between threads before it is written: the stamp an event carries is
/// read on the thread that writes it. Within a loop, each event is encoded once per stream and the
/// same buffer goes to all of that stream's connections, which is the cheapest fan-out there is.
/// Streams without connections on a loop cost that loop nothing.
///
/// `@unchecked Sendable`: every member is confined to `eventLoop`; the type crosses threads only to
/// be found from a child channel initializer.
final class OriginLoop: @unchecked Sendable {
    /// The connections of one stream on this loop. A class so that the table lookup does not copy it.
    final class Subscribers {
        var handlers: [OriginStreamHandler] = []
    }

    let eventLoop: EventLoop
    let schedule: OriginSchedule
    /// Shared by every loop of the process; `GET /stats` reads it.
    let stats: OriginStats
    private let encoder: OriginEventEncoder
    private let allocator = ByteBufferAllocator()

    private var streams: [Int: Subscribers] = [:]
    /// The last event id this loop has sent (or, at start, the last one that was due before it):
    /// a new connection gets events after it live, and a Last-Event-ID before it is replayed.
    private var lastTickID: Int64
    /// The actual send stamps of recent ticks, so replayed events carry the stamp they had the first
    /// time. Ids not here (before this process started, or older than the ring) get their due time,
    /// which is what their stamp would have been to within timer jitter.
    private var ringIDs: [Int64]
    private var ringStamps: [Int64]
    private var timer: Scheduled<Void>?
    private var dropTask: RepeatedTask?
    /// Connections closed because they could not keep up (their socket buffer stayed full).
    private(set) var slowClosed = 0

    init(eventLoop: EventLoop, schedule: OriginSchedule, stats: OriginStats) {
        self.eventLoop = eventLoop
        self.schedule = schedule
        self.stats = stats
        self.encoder = OriginEventEncoder(payload: schedule.payload)
        self.lastTickID = schedule.eventID(atWallNanoseconds: BenchClock.wallNanoseconds())
        let ringSize = max(1, min(schedule.replay, 4096))
        self.ringIDs = [Int64](repeating: -1, count: ringSize)
        self.ringStamps = [Int64](repeating: 0, count: ringSize)
    }

    /// Starts the timers; call once, from anywhere.
    func start() {
        self.eventLoop.execute {
            self.lastTickID = self.schedule.eventID(atWallNanoseconds: BenchClock.wallNanoseconds())
            self.armTimer()
            let drop = self.schedule.dropEveryNanoseconds
            if drop > 0 {
                self.dropTask = self.eventLoop.scheduleRepeatedTask(
                    initialDelay: .nanoseconds(drop), delay: .nanoseconds(drop)
                ) { _ in self.dropAll() }
            }
        }
    }

    // MARK: Subscribers

    /// Adds a connection that has just written its response head: replays what it missed after
    /// `lastEventID` (within `--replay`), then gets every later event live.
    func subscribe(_ handler: OriginStreamHandler, stream: Int, lastEventID: Int64?) {
        self.eventLoop.preconditionInEventLoop()
        let subscribers: Subscribers
        if let existing = self.streams[stream] {
            subscribers = existing
        } else {
            subscribers = Subscribers()
            self.streams[stream] = subscribers
        }
        handler.subscriberIndex = subscribers.handlers.count
        subscribers.handlers.append(handler)
        self.stats.streamRequests.add(1, ordering: .relaxed)
        if lastEventID != nil {
            self.stats.resumeRequests.add(1, ordering: .relaxed)
        }

        var lastSent = self.lastTickID
        if let resume = lastEventID, self.schedule.periodNanoseconds > 0 {
            if resume >= self.lastTickID {
                // Nothing to replay; skip live events up to the id the client already has.
                lastSent = resume
            } else {
                let first = max(resume &+ 1, self.lastTickID &- Int64(self.schedule.replay) &+ 1)
                if first <= self.lastTickID {
                    self.stats.replayedEvents.add(Int(self.lastTickID &- first &+ 1), ordering: .relaxed)
                    for id in first...self.lastTickID {
                        let buffer = self.encoder.encode(
                            id: id, stream: stream, stamp: self.stamp(of: id), allocator: self.allocator)
                        handler.deliver(buffer, id: id)
                    }
                }
            }
        }
        handler.lastSentID = lastSent
        handler.flush()
    }

    func unsubscribe(_ handler: OriginStreamHandler, stream: Int) {
        self.eventLoop.preconditionInEventLoop()
        guard let subscribers = self.streams[stream], let index = handler.subscriberIndex,
            index < subscribers.handlers.count, subscribers.handlers[index] === handler
        else { return }
        // Swap-remove: O(1), and order among connections does not matter.
        let last = subscribers.handlers.removeLast()
        if index < subscribers.handlers.count {
            subscribers.handlers[index] = last
            last.subscriberIndex = index
        }
        handler.subscriberIndex = nil
    }

    // MARK: Ticking

    private func stamp(of id: Int64) -> Int64 {
        let slot = Int(id % Int64(self.ringIDs.count))
        return self.ringIDs[slot] == id ? self.ringStamps[slot] : self.schedule.dueTime(of: id)
    }

    /// Arms the one timer of this loop for the wall-clock time the next event is due.
    private func armTimer() {
        let period = self.schedule.periodNanoseconds
        guard period > 0 else { return }
        let due = self.schedule.dueTime(of: self.lastTickID &+ 1)
        let delay = max(0, due &- BenchClock.wallNanoseconds())
        self.timer = self.eventLoop.scheduleTask(in: .nanoseconds(delay)) {
            self.tick()
        }
    }

    private func tick() {
        let now = BenchClock.wallNanoseconds()
        let due = self.schedule.eventID(atWallNanoseconds: now)
        // Monotonic and wall clocks drift apart a little, so the timer may fire a hair early.
        guard due > self.lastTickID else {
            self.armTimer()
            return
        }
        // Open loop: when the loop was late, every event that fell due is still sent, in order
        // (but never more than a replay window's worth: beyond that a client could not get them either).
        let first = max(self.lastTickID &+ 1, due &- Int64(max(1, self.schedule.replay)) &+ 1)
        for id in first...due {
            let slot = Int(id % Int64(self.ringIDs.count))
            self.ringIDs[slot] = id
            self.ringStamps[slot] = now
        }
        self.lastTickID = due

        for (stream, subscribers) in self.streams where !subscribers.handlers.isEmpty {
            // Iterate over a copy: a write can fail and close a connection, which unsubscribes it.
            let handlers = subscribers.handlers
            for id in first...due {
                // Stamped with the tick's time, when the events of every stream were made: latency
                // counts from there, as a user would count it. (Stamping each stream just before
                // its writes would leave out the origin's own fan-out, which differs by gateway:
                // behind nginx or HAProxy the origin writes every client's copy, behind Lifeline
                // one per stream, and that work would vanish from the ones that push it here.)
                let buffer = self.encoder.encode(id: id, stream: stream, stamp: now, allocator: self.allocator)
                for handler in handlers {
                    handler.deliver(buffer, id: id)
                }
            }
            for handler in handlers {
                handler.flush()
            }
        }
        self.armTimer()
    }

    /// `--drop-every`: cut every stream connection of this loop, as a crashing origin would.
    private func dropAll() {
        let all = self.streams.values.flatMap(\.handlers)
        for handler in all {
            handler.drop()
        }
    }

    func noteSlowClosed() {
        self.slowClosed += 1
        self.stats.slowClosed.add(1, ordering: .relaxed)
        // Rare and worth knowing (a reader this far behind skews what is measured), but a herd of
        // them must not flood the log.
        if self.slowClosed == 1 || self.slowClosed % 1000 == 0 {
            printError("bench-origin: closed a connection that fell 1 MiB behind (\(self.slowClosed) on this loop so far)")
        }
    }
}
