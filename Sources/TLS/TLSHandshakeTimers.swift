import NIOCore

/// Keeps the handshake deadlines of many connections on one timer, instead of a scheduled task
/// per connection: the gateway gives each loop's list of deadlines (`DeadlineList`). In a
/// reconnect storm after a restart every client handshakes at once, and a SwiftNIO scheduled
/// task per handshake costs its cancel a search through all the others.
public struct TLSHandshakeTimers {
    /// Runs `expired` on the loop at the deadline unless the returned closure runs first (it
    /// disarms the deadline; running it after the deadline fired does nothing).
    public let arm: (_ deadline: NIODeadline, _ expired: @escaping () -> Void) -> () -> Void

    public init(arm: @escaping (_ deadline: NIODeadline, _ expired: @escaping () -> Void) -> () -> Void) {
        self.arm = arm
    }
}
