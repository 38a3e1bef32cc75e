import Synchronization

/// What the benchmark origin has served since it started, for `GET /stats`: a benchmark reads it
/// before and after a moment (a reconnect storm) to learn how many stream requests reached the
/// origin in between. One instance per process, shared by every event loop; the counts change once
/// per request, never per event, so an atomic add costs nothing that matters.
final class OriginStats: Sendable {
    /// `GET /s/<k>` requests that got a stream (200).
    let streamRequests = Atomic<Int>(0)
    /// Those of them that carried a Last-Event-ID.
    let resumeRequests = Atomic<Int>(0)
    /// Events written from the replay window to resuming requests.
    let replayedEvents = Atomic<Int>(0)
    /// Connections closed because they fell 1 MiB behind.
    let slowClosed = Atomic<Int>(0)

    init() {}

    /// One JSON object, keys in snake case as in the load tool's summary.
    func json() -> String {
        "{\"stream_requests\":\(self.streamRequests.load(ordering: .relaxed)),"
            + "\"resume_requests\":\(self.resumeRequests.load(ordering: .relaxed)),"
            + "\"replayed_events\":\(self.replayedEvents.load(ordering: .relaxed)),"
            + "\"slow_closed\":\(self.slowClosed.load(ordering: .relaxed))}\n"
    }
}
