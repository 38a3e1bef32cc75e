/// One dispatched SSE event, as an `EventSource` would see it.
public struct TestEvent: Sendable, Equatable, CustomStringConvertible {
    /// The value of the `id:` field in this event's own block, or `nil` if the block had none.
    public var id: String?
    /// The value of the `event:` field, or `nil` for the default type (`message`).
    public var type: String?
    /// The `data:` lines joined with `\n`.
    public var data: String
    /// The last event ID in force when the event was dispatched (the spec's `lastEventId`): this
    /// block's id, or the one from an earlier block if this one had none.
    public var lastEventID: String

    public init(id: String? = nil, type: String? = nil, data: String, lastEventID: String? = nil) {
        self.id = id
        self.type = type
        self.data = data
        self.lastEventID = lastEventID ?? id ?? ""
    }

    public var description: String {
        var parts: [String] = []
        if let id = self.id { parts.append("id=\(id)") }
        if let type = self.type { parts.append("event=\(type)") }
        parts.append("data=\(String(reflecting: self.data))")
        if self.id == nil { parts.append("lastEventID=\(self.lastEventID)") }
        return "TestEvent(\(parts.joined(separator: " ")))"
    }
}
