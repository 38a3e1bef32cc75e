import NIOCore

/// Thrown when a test helper's wait ends without its condition being met: it timed out, or the
/// connection closed so that the condition can no longer become true.
///
/// The description says what was awaited and shows the state at that moment (for a client: the
/// response head and the body received so far), so a failing test explains itself.
public struct TestWaitError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

extension TimeAmount {
    /// A short human form for messages, e.g. `250 ms` or `5 s`.
    var testDescription: String {
        let millis = self.nanoseconds / 1_000_000
        if millis >= 1000, millis % 1000 == 0 {
            return "\(millis / 1000) s"
        }
        return "\(millis) ms"
    }
}
