@testable import HTTP2
import NIOHTTP1
import XCTest

/// `HTTP2StreamStateMachine` driven directly: no nghttp2, no channel.
final class HTTP2StreamStateMachineTests: XCTestCase {
    typealias Machine = HTTP2StreamStateMachine

    /// Low 50, high 100.
    private func machine(low: Int = 50, high: Int = 100) -> Machine {
        Machine(watermarks: .init(low: low, high: high))
    }

    /// A machine whose head is submitted (with a data provider) and whose request was delivered.
    private func answering(low: Int = 50, high: Int = 100) -> Machine {
        var machine = self.machine(low: low, high: high)
        XCTAssertEqual(machine.requestReceived(), .deliver)
        XCTAssertEqual(machine.sendHead(status: .ok, headers: [], endStream: false), .submit)
        guard case .response = machine.nextSubmission() else {
            XCTFail("the head is submitted")
            return machine
        }
        return machine
    }

    private func assertSubmission(
        _ submission: Machine.Submission, is expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let name: String
        switch submission {
        case .none: name = "none"
        case .reset(let code): name = "reset(\(code))"
        case .response(let status, _, let endStream): name = "response(\(status.code), endStream: \(endStream))"
        case .resumeData: name = "resumeData"
        }
        XCTAssertEqual(name, expected, file: file, line: line)
    }

    // MARK: Watermarks

    func testTheDefaultLowWatermarkIsHalfTheLimit() {
        let marks = Machine.Watermarks(streamBufferLimit: 1 << 20)
        XCTAssertEqual(marks.high, 1 << 20)
        XCTAssertEqual(marks.low, 1 << 19)
        XCTAssertEqual(Machine.Watermarks(streamBufferLimit: 101).low, 50)
        let zero = Machine.Watermarks(streamBufferLimit: 0)
        XCTAssertEqual([zero.low, zero.high], [0, 0])
        let negative = Machine.Watermarks(streamBufferLimit: -5)
        XCTAssertEqual([negative.low, negative.high], [0, 0])
    }

    func testUnwritableOnlyAboveTheHighWatermark() {
        var machine = self.answering()
        XCTAssertEqual(machine.write(60), .enqueue)
        XCTAssertEqual(machine.write(40), .enqueue, "exactly at the high watermark is still writable")
        XCTAssertTrue(machine.isWritable)
        XCTAssertEqual(machine.write(1), .enqueueAndNotifyWritability)
        XCTAssertFalse(machine.isWritable)
        XCTAssertEqual(machine.bufferedBytes, 101)
        // More writes are still taken (the application decides), and do not notify again.
        XCTAssertEqual(machine.write(500), .enqueue)
        XCTAssertFalse(machine.isWritable)
    }

    func testStaysUnwritableBetweenTheWatermarksAndTurnsWritableAtTheLowOne() {
        var machine = self.answering()
        XCTAssertEqual(machine.write(150), .enqueueAndNotifyWritability)
        XCTAssertEqual(machine.flush(), .submit)
        XCTAssertEqual(machine.sent(60), .none)  // 90: under high, over low
        XCTAssertFalse(machine.isWritable)
        XCTAssertEqual(machine.sent(39), .none)  // 51
        XCTAssertFalse(machine.isWritable)
        XCTAssertEqual(machine.sent(1), .notifyWritability)  // 50: at the low watermark
        XCTAssertTrue(machine.isWritable)
        XCTAssertEqual(machine.sent(50), .none, "already writable")
        XCTAssertEqual(machine.bufferedBytes, 0)
    }

    func testWritableAgainBetweenTheWatermarksUntilOverTheHighOne() {
        var machine = self.answering()
        XCTAssertEqual(machine.write(101), .enqueueAndNotifyWritability)
        XCTAssertEqual(machine.flush(), .submit)
        XCTAssertEqual(machine.sent(81), .notifyWritability)  // 20
        // Between the watermarks on the way up: writable (no flapping back at the low one).
        XCTAssertEqual(machine.write(70), .enqueue)  // 90
        XCTAssertTrue(machine.isWritable)
        XCTAssertEqual(machine.write(11), .enqueueAndNotifyWritability)  // 101
        XCTAssertFalse(machine.isWritable)
    }

    func testZeroWatermarksMeanWritableOnlyWhenEmpty() {
        var machine = self.answering(low: 0, high: 0)
        XCTAssertEqual(machine.write(1), .enqueueAndNotifyWritability)
        XCTAssertEqual(machine.end(), .submit)
        XCTAssertEqual(machine.sent(1), .notifyWritability)
        XCTAssertTrue(machine.isWritable)
    }

    func testSentNeverTakesMoreThanIsQueued() {
        var machine = self.answering()
        _ = machine.write(10)
        _ = machine.flush()
        XCTAssertEqual(machine.sent(25), .none)
        XCTAssertEqual(machine.bufferedBytes, 0)
        XCTAssertEqual(machine.flushedBytes, 0)
    }

    // MARK: The response

    func testHeadIsSubmittedOnceAndASecondHeadIsIgnored() {
        var machine = self.machine()
        XCTAssertEqual(machine.sendHead(status: .ok, headers: [("a", "b")], endStream: false), .submit)
        XCTAssertEqual(machine.sendHead(status: .notFound, headers: [], endStream: true), .none)
        self.assertSubmission(machine.nextSubmission(), is: "response(200, endStream: false)")
        self.assertSubmission(machine.nextSubmission(), is: "none")
        XCTAssertEqual(machine.sendHead(status: .notFound, headers: [], endStream: false), .none)
    }

    func testHeadWithEndStreamDropsWhatWasQueuedAndEndsTheBody() {
        var machine = self.machine()
        XCTAssertEqual(machine.write(150), .enqueueAndNotifyWritability)
        XCTAssertEqual(machine.sendHead(status: .noContent, headers: [], endStream: true), .discardQueueAndSubmit)
        XCTAssertEqual(machine.bufferedBytes, 0)
        XCTAssertTrue(machine.isWritable, "nothing is queued any more")
        XCTAssertEqual(machine.write(5), .ignore)
        XCTAssertEqual(machine.end(), .none, "already ended")
        self.assertSubmission(machine.nextSubmission(), is: "response(204, endStream: true)")
    }

    func testWritesAreOfferedOnlyOnceFlushed() {
        var machine = self.answering()
        XCTAssertEqual(machine.write(30), .enqueue)
        XCTAssertEqual(machine.readData(maxLength: 100), .deferred)
        XCTAssertEqual(machine.flush(), .submit)
        XCTAssertEqual(machine.flush(), .none, "nothing new to flush")
        XCTAssertEqual(machine.write(20), .enqueue)
        XCTAssertEqual(machine.readData(maxLength: 100), .send(count: 30, endStream: false))
        XCTAssertEqual(machine.readData(maxLength: 10), .send(count: 10, endStream: false))
        XCTAssertEqual(machine.write(0), .ignore)
    }

    func testADeferredProviderIsResumedOnceThereIsSomethingToSend() {
        var machine = self.answering()
        XCTAssertEqual(machine.readData(maxLength: 100), .deferred)
        self.assertSubmission(machine.nextSubmission(), is: "none")  // nothing flushed yet
        _ = machine.write(5)
        self.assertSubmission(machine.nextSubmission(), is: "none")  // written, not flushed
        XCTAssertEqual(machine.flush(), .submit)
        self.assertSubmission(machine.nextSubmission(), is: "resumeData")
        self.assertSubmission(machine.nextSubmission(), is: "none")
        XCTAssertEqual(machine.readData(maxLength: 100), .send(count: 5, endStream: false))
        XCTAssertEqual(machine.sent(5), .none)
        // Deferred again; the end alone is reason to resume (for END_STREAM).
        XCTAssertEqual(machine.readData(maxLength: 100), .deferred)
        XCTAssertEqual(machine.end(), .submit)
        self.assertSubmission(machine.nextSubmission(), is: "resumeData")
        XCTAssertEqual(machine.readData(maxLength: 100), .send(count: 0, endStream: true))
    }

    func testEndFlushesAndEndStreamGoesWithTheLastBytes() {
        var machine = self.answering()
        _ = machine.write(30)
        XCTAssertEqual(machine.end(), .submit)
        XCTAssertEqual(machine.end(), .none)
        XCTAssertEqual(machine.write(1), .ignore)
        XCTAssertEqual(machine.flushedBytes, 30)
        XCTAssertEqual(machine.readData(maxLength: 20), .send(count: 20, endStream: false))
        _ = machine.sent(20)
        XCTAssertEqual(machine.readData(maxLength: 20), .send(count: 10, endStream: true))
    }

    func testEndBeforeTheHeadEndsTheBodyOfTheHeadThatFollows() {
        var machine = self.machine()
        _ = machine.write(4)
        XCTAssertEqual(machine.end(), .submit)
        XCTAssertEqual(machine.sendHead(status: .ok, headers: [], endStream: false), .submit)
        self.assertSubmission(machine.nextSubmission(), is: "response(200, endStream: false)")
        XCTAssertEqual(machine.readData(maxLength: 100), .send(count: 4, endStream: true))
    }

    // MARK: Reset, in each state

    func testResetBeforeTheHeadDropsTheQueueAndSubmitsOnlyTheReset() {
        var machine = self.machine()
        _ = machine.write(150)
        XCTAssertFalse(machine.isWritable)
        XCTAssertEqual(machine.reset(errorCode: 0x8), .discardQueueAndSubmit)
        XCTAssertEqual(machine.bufferedBytes, 0)
        XCTAssertTrue(machine.isWritable)
        XCTAssertEqual(machine.reset(errorCode: 0x2), .none, "one reset")
        self.assertSubmission(machine.nextSubmission(), is: "reset(8)")
        self.assertSubmission(machine.nextSubmission(), is: "none")
    }

    func testResetWithAPendingHeadNeverSubmitsTheHead() {
        var machine = self.machine()
        _ = machine.sendHead(status: .ok, headers: [], endStream: false)
        XCTAssertEqual(machine.reset(errorCode: 0x2), .discardQueueAndSubmit)
        self.assertSubmission(machine.nextSubmission(), is: "reset(2)")
        self.assertSubmission(machine.nextSubmission(), is: "none")
    }

    func testResetWhileAnsweringOrEndedStopsEverything() {
        for ended in [false, true] {
            var machine = self.answering()
            _ = machine.write(30)
            if ended { _ = machine.end() } else { _ = machine.flush() }
            XCTAssertEqual(machine.reset(errorCode: 0x8), .discardQueueAndSubmit)
            // Before and after the RST_STREAM is submitted: no DATA, no END_STREAM, no calls.
            XCTAssertEqual(machine.readData(maxLength: 100), .deferred)
            self.assertSubmission(machine.nextSubmission(), is: "reset(8)")
            XCTAssertEqual(machine.readData(maxLength: 100), .deferred)
            XCTAssertEqual(machine.write(1), .ignore)
            XCTAssertEqual(machine.flush(), .none)
            XCTAssertEqual(machine.end(), .none)
            XCTAssertEqual(machine.sendHead(status: .ok, headers: [], endStream: false), .none)
            XCTAssertEqual(machine.reset(errorCode: 0x8), .none)
            XCTAssertFalse(machine.isClosed, "closed only when nghttp2 says so")
            XCTAssertEqual(machine.close(.nghttp2(errorCode: 0x8)), .resetLocally(errorCode: 0x8))
        }
    }

    // MARK: Close, in each state

    func testCloseReasons() {
        var finished = self.answering()
        XCTAssertEqual(finished.close(.nghttp2(errorCode: 0)), .finished)
        var refused = self.machine()
        XCTAssertEqual(refused.close(.nghttp2(errorCode: 0x7)), .resetLocally(errorCode: 0x7))
        var byClient = self.answering()
        byClient.resetReceived(errorCode: 0x8)
        XCTAssertEqual(byClient.close(.nghttp2(errorCode: 0x8)), .reset(errorCode: 0x8))
        var lost = self.answering()
        XCTAssertEqual(lost.close(.connectionClosed), .connectionClosed)
        XCTAssertNil(lost.close(.nghttp2(errorCode: 0)), "a stream closes once")
        XCTAssertNil(lost.close(.connectionClosed))
    }

    func testCloseInEveryStateDropsTheQueueAndIgnoresEverythingAfter() {
        let states: [(String, (inout Machine) -> Void)] = [
            ("no head", { _ = $0.write(150) }),
            ("head pending", { _ = $0.sendHead(status: .ok, headers: [], endStream: false); _ = $0.write(150) }),
            ("answering", { _ = $0.sendHead(status: .ok, headers: [], endStream: false); _ = $0.nextSubmission(); _ = $0.write(150); _ = $0.flush() }),
            ("deferred", { _ = $0.sendHead(status: .ok, headers: [], endStream: false); _ = $0.nextSubmission(); _ = $0.readData(maxLength: 9) }),
            ("ended", { _ = $0.write(150); _ = $0.end() }),
            ("reset pending", { _ = $0.reset(errorCode: 0x8) }),
            ("reset submitted", { _ = $0.reset(errorCode: 0x8); _ = $0.nextSubmission() }),
        ]
        for (name, setUp) in states {
            var machine = self.machine()
            setUp(&machine)
            XCTAssertEqual(machine.close(.nghttp2(errorCode: 0)), .finished, name)
            XCTAssertTrue(machine.isClosed, name)
            XCTAssertEqual(machine.bufferedBytes, 0, name)
            XCTAssertTrue(machine.isWritable, name)
            XCTAssertEqual(machine.write(1), .ignore, name)
            XCTAssertEqual(machine.flush(), .none, name)
            XCTAssertEqual(machine.end(), .none, name)
            XCTAssertEqual(machine.reset(errorCode: 0x8), .none, name)
            XCTAssertEqual(machine.sendHead(status: .ok, headers: [], endStream: true), .none, name)
            self.assertSubmission(machine.nextSubmission(), is: "none")
            XCTAssertEqual(machine.readData(maxLength: 100), .streamClosed, name)
        }
    }

    // MARK: What the application is told

    func testARequestClosedBeforeDeliveryIsNeverDelivered() {
        var machine = self.machine()
        _ = machine.close(.nghttp2(errorCode: 0x8))
        XCTAssertEqual(machine.requestReceived(), .drop)
        XCTAssertFalse(machine.deliversEvents)
        XCTAssertEqual(machine.closeReceived(), .drop(release: 0))
        XCTAssertEqual(machine.writabilityEventReceived(), .drop)
    }

    func testEventsRecordedBeforeTheCloseStillReachTheDelegateThenNothing() {
        var machine = self.machine()
        XCTAssertFalse(machine.deliversEvents, "not before onRequest")
        XCTAssertEqual(machine.requestReceived(), .deliver)
        XCTAssertEqual(machine.requestReceived(), .drop, "once")
        _ = machine.close(.nghttp2(errorCode: 0))
        XCTAssertTrue(machine.deliversEvents, "body and end recorded before the close")
        XCTAssertEqual(machine.closeReceived(), .deliver(release: 0))
        XCTAssertFalse(machine.deliversEvents)
        XCTAssertEqual(machine.closeReceived(), .drop(release: 0), "the close is told once")
    }

    func testWritabilityEventsReachTheDelegateOnlyWhenSomethingChanged() {
        var machine = self.machine()
        _ = machine.write(150)
        XCTAssertEqual(machine.writabilityEventReceived(), .drop, "not delivered yet")
        XCTAssertEqual(machine.requestReceived(), .deliver)
        XCTAssertEqual(machine.writabilityEventReceived(), .deliver)
        XCTAssertEqual(machine.writabilityEventReceived(), .drop, "already told")
        _ = machine.flush()
        _ = machine.sent(150)
        _ = machine.write(150)  // writable, then unwritable again before the event is delivered
        XCTAssertEqual(machine.writabilityEventReceived(), .drop, "the delegate last heard `unwritable`")
        _ = machine.sent(150)
        XCTAssertEqual(machine.writabilityEventReceived(), .deliver)
        XCTAssertTrue(machine.isWritable)
        _ = machine.write(150)
        _ = machine.close(.connectionClosed)
        XCTAssertEqual(machine.writabilityEventReceived(), .drop, "closed")
    }

    // MARK: The request body's window

    func testFlowingBodyBytesAreReleasedAtOnce() {
        var machine = self.machine()
        XCTAssertEqual(machine.requestBodyReceived(10), .release(10))
        XCTAssertEqual(machine.resumeBody(), .none, "not paused")
    }

    func testPausedBodyBytesAreHeldUntilResumed() {
        var machine = self.machine()
        machine.pauseBody()
        XCTAssertEqual(machine.requestBodyReceived(10), .none)
        machine.pauseBody()  // a second pause keeps what is held
        XCTAssertEqual(machine.requestBodyReceived(5), .none)
        XCTAssertEqual(machine.resumeBody(), .release(15))
        XCTAssertEqual(machine.resumeBody(), .none)
        XCTAssertEqual(machine.requestBodyReceived(3), .release(3))
        machine.pauseBody()
        XCTAssertEqual(machine.resumeBody(), .none, "nothing held")
        XCTAssertEqual(machine.requestBody, .flowing)
    }

    func testHeldBytesAreReleasedAtTheCloseEvenIfResumedAfterTheClose() {
        var machine = self.machine()
        _ = machine.requestReceived()
        machine.pauseBody()
        _ = machine.requestBodyReceived(10)
        _ = machine.close(.nghttp2(errorCode: 0x8))
        // Closed: bytes still arriving (recorded before the close) are not held.
        XCTAssertEqual(machine.requestBodyReceived(4), .release(4))
        XCTAssertEqual(machine.resumeBody(), .none, "the close event releases them")
        XCTAssertEqual(machine.closeReceived(), .deliver(release: 10))
        XCTAssertEqual(machine.resumeBody(), .none)
    }
}
