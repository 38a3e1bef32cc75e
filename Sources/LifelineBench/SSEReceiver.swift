import SSE

/// What one subscription carries across its reconnects: the id sequence gaps and duplicates are
/// judged against, and the server's `retry:`.
struct SubscriptionProgress {
    /// The last (highest) numeric event id received; nil before the first one.
    var lastEventID: UInt64?
    var retryNanoseconds: Int64?
    /// When the storm closed this subscription's connection (wall clock, ns), until the first event
    /// after it arrives: that event ends the resume it measures.
    var stormDropWallNanoseconds: Int64?
}

/// Turns the body bytes of one SSE response into counts: events, ids checked for gaps and
/// duplicates, delivery latency from the origin's stamp, comment lines.
///
/// Parsing is the product's `SSEParser`, so the load tool reads streams exactly as Lifeline does.
/// The parser drops comments without a trace, so comment lines are counted by a second, light scan
/// of the same bytes (a word-at-a-time search for line breaks, then one look at each line's first byte).
struct SSEReceiver {
    private var parser = SSEParser(maxEventSize: 1 << 20)
    private var atLineStart = true
    private var afterCR = false

    /// Feeds body bytes that arrived at `wallNanoseconds`.
    mutating func receive(
        _ raw: UnsafeRawBufferPointer,
        wallNanoseconds: Int64,
        progress: inout SubscriptionProgress,
        counters: inout LoadCounters
    ) throws(SSEParser.Error) {
        counters.bytes &+= raw.count
        counters.comments &+= self.countComments(raw)
        try self.parser.parse(raw) { output in
            switch output {
            case .event(let event):
                Self.account(event, wallNanoseconds: wallNanoseconds, progress: &progress, counters: &counters)
            case .retry(let milliseconds):
                progress.retryNanoseconds = Int64(min(milliseconds, 3_600_000)) * 1_000_000
            }
        }
    }

    private static func account(
        _ event: SSEEvent, wallNanoseconds: Int64, progress: inout SubscriptionProgress, counters: inout LoadCounters
    ) {
        guard event.data != nil else {
            return  // An id-only block: a browser fires nothing for it, and no origin of ours sends one.
        }
        if event.id == nil, let type = event.type, type != "message" {
            // A named event without an id: Lifeline's --heartbeat-event, not an origin event.
            counters.heartbeatEvents &+= 1
            return
        }
        counters.events &+= 1
        if let dropped = progress.stormDropWallNanoseconds {
            // The first event since the storm's drop: it can only have come on the new connection
            // (the old one was closed by us, and nothing is read from it after that).
            progress.stormDropWallNanoseconds = nil
            counters.resumed &+= 1
            LoadCounters.record((wallNanoseconds &- dropped) / 1_000, in: &counters.resumeLatency)
        }
        if let idText = event.id, let id = parseLeadingDecimal(idText, wholeString: true) {
            if let last = progress.lastEventID {
                if id <= last {
                    counters.duplicates &+= 1
                } else {
                    if id > last &+ 1 {
                        counters.gaps &+= 1
                        counters.missingEvents &+= Int(clamping: id &- last &- 1)
                    }
                    progress.lastEventID = id
                }
            } else {
                progress.lastEventID = id
            }
        } else {
            counters.eventsWithoutID &+= 1
        }
        if let data = event.data, let stamp = parseLeadingDecimal(data, wholeString: false), stamp > 0 {
            let latencyNanoseconds = wallNanoseconds &- Int64(clamping: stamp)
            LoadCounters.record(latencyNanoseconds / 1_000, in: &counters.latency)
        } else {
            counters.unstampedEvents &+= 1
        }
    }

    /// Counts lines that start with ":" (comments: heartbeats, and the opening comment Lifeline
    /// sends after the head), keeping line state across calls.
    private mutating func countComments(_ raw: UnsafeRawBufferPointer) -> Int {
        var count = 0
        var index = 0
        let end = raw.count
        while index < end {
            if self.atLineStart {
                let byte = raw[index]
                if self.afterCR && byte == asciiLF {
                    // The LF of a CRLF that was split from its CR.
                    self.afterCR = false
                    index &+= 1
                    continue
                }
                self.afterCR = false
                if byte == asciiColon {
                    count &+= 1
                }
                self.atLineStart = false
            }
            guard let lineBreak = raw.firstLineBreak(from: index) else { break }
            self.atLineStart = true
            self.afterCR = raw[lineBreak] == asciiCR
            index = lineBreak &+ 1
        }
        return count
    }
}

let asciiLF: UInt8 = 0x0A
let asciiCR: UInt8 = 0x0D
let asciiColon: UInt8 = 0x3A

/// The decimal number at the start of `text` (all of it with `wholeString`; up to the first
/// non-digit otherwise); nil when there is none or it does not fit. Reads the UTF-8 in place.
@inline(__always)
func parseLeadingDecimal(_ text: String, wholeString: Bool) -> UInt64? {
    var value: UInt64 = 0
    var digits = 0
    for byte in text.utf8 {
        let digit = byte &- UInt8(ascii: "0")
        guard digit < 10 else {
            if wholeString { return nil }
            break
        }
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit))
        guard !overflow1, !overflow2 else { return nil }
        value = sum
        digits &+= 1
    }
    return digits > 0 ? value : nil
}
