import NIOConcurrencyHelpers
import NIOCore

/// Lets async test code wait for a condition over state that event-loop code changes.
///
/// The owner calls ``notify()`` after every change (bytes arrived, a connection closed, ...);
/// ``wait(timeout:until:hopeless:failure:)`` re-evaluates its condition after each one, so waits
/// finish as soon as the condition holds instead of polling or sleeping. Each change bumps a
/// generation counter: a waiter reads the generation *before* checking its condition and then
/// waits only if nothing has changed since, so no notification can slip between check and wait.
public final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var nextWaiterID: UInt64 = 0
        var waiters: [UInt64: EventLoopPromise<Bool>] = [:]
    }

    /// Where wait promises live and timeouts are scheduled; any loop of the helper's group.
    private let eventLoop: EventLoop
    private let state = NIOLockedValueBox(State())

    public init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Wakes every waiter so it re-checks its condition. Call it without holding any lock that
    /// the conditions take.
    public func notify() {
        let woken = self.state.withLockedValue { state -> [EventLoopPromise<Bool>] in
            state.generation &+= 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for promise in woken {
            promise.succeed(true)
        }
    }

    /// Waits until `condition()` returns true.
    ///
    /// - Parameters:
    ///   - timeout: how long to wait in total.
    ///   - condition: re-evaluated after every change; must not block.
    ///   - hopeless: checked when `condition()` is false; true means no further change can help
    ///     (e.g. the connection is closed), and the wait fails at once rather than at the timeout.
    ///   - failure: builds the error from a reason such as `timed out after 5 s`.
    public func wait(
        timeout: TimeAmount,
        until condition: () -> Bool,
        hopeless: () -> Bool = { false },
        failure: (String) -> Error
    ) async throws {
        let deadline = NIODeadline.now() + timeout
        while true {
            let generation = self.state.withLockedValue { $0.generation }
            if condition() {
                return
            }
            if hopeless() {
                // The change that ended hope (the connection closing) may have come after the
                // condition was checked, and made it true: a wait for the close itself. Nothing
                // changes after that, so this second look is final.
                if condition() {
                    return
                }
                throw failure("gave up: the connection is closed")
            }
            if NIODeadline.now() >= deadline {
                throw failure("timed out after \(timeout.testDescription)")
            }
            try await self.waitForChange(after: generation, deadline: deadline)
        }
    }

    /// Returns after the next change past `generation`, or at `deadline`.
    private func waitForChange(after generation: UInt64, deadline: NIODeadline) async throws {
        let registration = self.state.withLockedValue { state -> (UInt64, EventLoopPromise<Bool>)? in
            guard state.generation == generation else { return nil }
            let id = state.nextWaiterID
            state.nextWaiterID += 1
            let promise = self.eventLoop.makePromise(of: Bool.self)
            state.waiters[id] = promise
            return (id, promise)
        }
        guard let (id, promise) = registration else { return }

        let state = self.state
        let expire: @Sendable () -> Void = {
            // Whoever removes the waiter completes its promise, so it is completed exactly once.
            if let waiter = state.withLockedValue({ $0.waiters.removeValue(forKey: id) }) {
                waiter.succeed(false)
            }
        }
        let timer = self.eventLoop.scheduleTask(deadline: deadline, expire)
        // Also fires if the loop shuts down, so that a wait can never hang forever.
        timer.futureResult.whenFailure { _ in expire() }
        _ = try await promise.futureResult.get()
        timer.cancel()
    }
}
