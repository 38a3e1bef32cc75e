import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// The status pages' live feed (`/status/events`): once a second each page gets the report for
/// its `top` and `filter` as one SSE event. A report is encoded once for all pages that asked
/// for the same view, and a page that does not keep up (its channel not writable) skips that
/// second rather than queueing it.
final class StatusFeed: Sendable {
    private struct Subscriber {
        let channel: Channel
        let view: View
    }

    struct View: Hashable, Sendable {
        var top: Int
        var filter: String
    }

    static let maxSubscribers = 32

    private let sampler: StatusSampler
    private let subscribers = NIOLockedValueBox<[ObjectIdentifier: Subscriber]>([:])

    init(sampler: StatusSampler) {
        self.sampler = sampler
    }

    /// Adds a page; false when there are too many already.
    func add(_ channel: Channel, view: View) -> Bool {
        self.subscribers.withLockedValue { subscribers in
            guard subscribers.count < Self.maxSubscribers else { return false }
            subscribers[ObjectIdentifier(channel)] = Subscriber(channel: channel, view: view)
            return true
        }
    }

    func remove(_ channel: Channel) {
        _ = self.subscribers.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Sends one report to a page that just subscribed, so that it shows something at once.
    func sendFirst(to channel: Channel, view: View) async {
        let gathered = await self.sampler.gather()
        let event = Self.event(self.sampler.report(gathered, top: view.top, filter: view.filter))
        channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(event)), promise: nil)
    }

    /// Takes the second's sample and sends it to every page. The rates and sparklines move on
    /// whether or not a page is open; the open descriptors are counted only for an open page
    /// (listing `/proc/self/fd` every second cost a gateway with 6,000 connections about 6 % of
    /// its CPU; a scrape or `status.json` counts them when asked).
    func tick() async {
        // A page that subscribes meanwhile got its first report from `sendFirst`.
        let subscribers = self.subscribers.withLockedValue { Array($0.values) }
        let gathered = await self.sampler.sample(countingOpenFiles: !subscribers.isEmpty)
        var encoded: [View: ByteBuffer] = [:]
        for subscriber in subscribers where subscriber.channel.isActive && subscriber.channel.isWritable {
            let event: ByteBuffer
            if let cached = encoded[subscriber.view] {
                event = cached
            } else {
                event = Self.event(self.sampler.report(gathered, top: subscriber.view.top, filter: subscriber.view.filter))
                encoded[subscriber.view] = event
            }
            subscriber.channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(event)), promise: nil)
        }
    }

    func closeAll() {
        let subscribers = self.subscribers.withLockedValue { all -> [Subscriber] in
            defer { all.removeAll() }
            return Array(all.values)
        }
        for subscriber in subscribers {
            subscriber.channel.close(promise: nil)
        }
    }

    /// One SSE event whose data is the report's JSON (a single line: JSON escapes newlines).
    static func event(_ report: StatusReport) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("data: ")
        buffer.writeBytes(Self.json(report))
        buffer.writeString("\n\n")
        return buffer
    }

    static func json(_ report: StatusReport) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return (try? encoder.encode(report)) ?? Data("{}".utf8)
    }
}
