import NIOCore

/// One event from the origin, serialized once. Every subscriber of the stream is sent these same
/// bytes; the replay buffer keeps them for clients that reconnect.
public struct EncodedEvent: Sendable {
    /// Position in the stream: consecutive, starting at 1 for each stream incarnation.
    public let sequence: UInt64
    /// The `id` field this event carries on the wire (nil when it carries none). Replay looks
    /// clients' `Last-Event-ID` up by this value.
    public let id: String?
    /// The serialized block, ending with its blank line.
    public let bytes: ByteBuffer
    /// When the gateway received it; bounds the replay buffer by age.
    public let receivedAt: NIODeadline

    public init(sequence: UInt64, id: String?, bytes: ByteBuffer, receivedAt: NIODeadline) {
        self.sequence = sequence
        self.id = id
        self.bytes = bytes
        self.receivedAt = receivedAt
    }
}
