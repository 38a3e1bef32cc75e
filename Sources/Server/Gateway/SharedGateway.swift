import LifelineCore
import NIOCore

/// What makes this instance one of several that act as one gateway (`--redis`): the shared
/// store of stream histories, how streams are named there, and the lease an owner holds.
public struct SharedGateway: Sendable {
    public var store: SharedHistoryStore
    public var namer: SharedStreamNamer
    public var lease: TimeAmount
    /// Where private generations are kept too, so that any instance resumes them.
    public var archive: GenerationArchive?

    public init(store: SharedHistoryStore, namer: SharedStreamNamer, lease: TimeAmount, archive: GenerationArchive? = nil) {
        self.store = store
        self.namer = namer
        self.lease = lease
        self.archive = archive
    }
}
