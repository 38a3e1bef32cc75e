import LifelineCore
import NIOCore
import SSE

/// What the front end keeps once per event loop rather than once per connection: the heartbeat
/// clock (one timer per loop) and the bytes every client on the loop is sent alike.
final class LoopContext: @unchecked Sendable {  // confined to `eventLoop`
    let eventLoop: EventLoop
    let heartbeatClock: HeartbeatClock
    /// The heartbeat as a chunk: written as is to every idle client on this loop.
    let heartbeat: StreamChunk
    /// The comment written right after an event-stream response head.
    let opening: ByteBuffer

    init(eventLoop: EventLoop, configuration: GatewayConfiguration) {
        self.eventLoop = eventLoop
        self.heartbeatClock = HeartbeatClock(eventLoop: eventLoop, interval: configuration.heartbeat)
        var heartbeat = ByteBuffer()
        if let name = configuration.heartbeatEvent {
            SSESerializer.write(SSEEvent(type: name, data: ""), into: &heartbeat)
        } else {
            SSESerializer.writeComment(configuration.heartbeatComment, into: &heartbeat)
        }
        self.heartbeat = StreamChunk(bytes: heartbeat, eventCount: 0)
        var opening = ByteBuffer()
        SSESerializer.writeComment(configuration.openingComment, into: &opening)
        self.opening = opening
    }
}
