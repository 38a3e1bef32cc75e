import NIOCore

/// One subscriber's place in a stream: held by the subscriber, used to leave. It is also the
/// subscriber's entry in its loop's `HeartbeatClock` (one object per subscriber instead of two).
public final class StreamMembership: HeartbeatEntry, @unchecked Sendable {
    public let stream: EventStream
    unowned let loopSet: LoopSubscribers
    /// The subscriber, until it leaves. Strong although the subscriber owns its membership: a
    /// weak reference would give every client's subscriber a side table for life, which costs
    /// memory per client and one more cold object on each delivery (every retain of the
    /// subscriber goes through it). The cycle ends in `leave`, which every subscriber reaches
    /// (see `StreamSubscriber`).
    private(set) var subscriber: StreamSubscriber?
    /// Index in `loopSet.members`, kept current so that leaving is O(1).
    var slot = -1

    init(stream: EventStream, loopSet: LoopSubscribers, subscriber: StreamSubscriber) {
        self.stream = stream
        self.loopSet = loopSet
        self.subscriber = subscriber
    }

    override var heartbeatTarget: HeartbeatTarget? { self.subscriber }

    /// Leaves the stream. Call on the subscriber's event loop; safe to call twice.
    public func leave() {
        self.subscriber = nil
        guard self.slot >= 0 else { return }
        self.loopSet.remove(self)
        let stream = self.stream
        let loop = ObjectIdentifier(self.loopSet.eventLoop)
        if stream.eventLoop.inEventLoop {
            stream.subscriberLeft(loop: loop)
        } else {
            stream.eventLoop.execute { stream.subscriberLeft(loop: loop) }
        }
    }
}

/// The subscribers of one stream that live on one event loop. The stream hands each batch to this
/// set once (one hop per loop, not per client); the set writes it to each of its subscribers.
/// Confined to `eventLoop`.
final class LoopSubscribers: @unchecked Sendable {
    let eventLoop: EventLoop
    private(set) var members: [StreamMembership] = []

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    func add(_ membership: StreamMembership) {
        membership.slot = self.members.count
        self.members.append(membership)
    }

    func remove(_ membership: StreamMembership) {
        let slot = membership.slot
        guard slot >= 0, slot < self.members.count, self.members[slot] === membership else { return }
        let last = self.members.removeLast()
        if last !== membership {
            self.members[slot] = last
            last.slot = slot
        }
        membership.slot = -1
    }

    func deliver(_ chunk: StreamChunk) {
        // A subscriber may leave while being written to (a failed write closes it): iterate over
        // a snapshot of the indices from the end so that swap-removal does not skip anyone.
        var index = self.members.count - 1
        let now = self.eventLoop.now
        while index >= 0 {
            if index < self.members.count {
                // A member in the set has not left, so it has its subscriber.
                self.members[index].subscriber?.streamDeliver(chunk, now: now)
            }
            index -= 1
        }
    }

    /// Tells each member the stream's events are over while the stream stays (a private
    /// generation kept for resumes): each leaves as a client would, so the stream counts right.
    func endEach(_ reason: StreamEndReason) {
        for member in self.members {
            member.subscriber?.streamEnded(reason)
        }
    }

    func endAll(_ reason: StreamEndReason) {
        let members = self.members
        self.members.removeAll()
        for member in members {
            member.slot = -1
            member.subscriber?.streamEnded(reason)
        }
    }
}
