import LifelineCore
import NIOCore

/// What makes this instance one of several that act as one gateway (`--redis`): the shared
/// store of stream histories, how streams are named there, and the lease an owner holds.
public struct SharedGateway: Sendable {
    public var store: SharedHistoryStore
    public var namer: SharedStreamNamer
    public var lease: TimeAmount

    public init(store: SharedHistoryStore, namer: SharedStreamNamer, lease: TimeAmount) {
        self.store = store
        self.namer = namer
        self.lease = lease
    }
}
