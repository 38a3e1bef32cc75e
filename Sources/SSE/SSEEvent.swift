/// One dispatched block of an event stream (the WHATWG "dispatch the event" step).
///
/// Fields keep what the block said rather than what an `EventSource` would make of it, so a
/// gateway can forward a block faithfully: an `event:` field with an empty value gives `type == ""`,
/// not `nil`, even though both mean `"message"` to a browser.
public struct SSEEvent: Sendable, Hashable {
    /// Value of the block's last valid `id` field; nil when the block had no (valid) id field. "" is a reset.
    public var id: String?
    /// Value of the `event` field; nil when absent (EventSource then uses "message").
    public var type: String?
    /// The data buffer with its final LF removed; nil when the block had no `data` field (then
    /// EventSource fires nothing, but an `id` still updates lastEventId).
    public var data: String?
    /// The stream's last event ID after this block (the spec's "last event ID buffer", sticky across blocks).
    public var lastEventID: String

    public init(id: String? = nil, type: String? = nil, data: String? = nil, lastEventID: String = "") {
        self.id = id
        self.type = type
        self.data = data
        self.lastEventID = lastEventID
    }
}
