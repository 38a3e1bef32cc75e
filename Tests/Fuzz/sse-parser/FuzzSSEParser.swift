import FuzzSupport
import NIOCore
import SSE

// Fuzz target `sse-parser`: SSEParser on arbitrary bytes in arbitrary splits.
//
// Input layout (see docs/reliability.md, "Fuzzing"):
//   byte 0   maxEventSize: values below 0xC0 give 1 + value (1...192), others 1 MiB
//   byte 1   bits 0-3: k, the number of chunk-length bytes that follow (0: one byte per chunk)
//            bit 4: two bytes (big-endian) follow after the lengths: a startNewStream point,
//                   taken modulo the data's length + 1
//            bit 5: the parser starts from lastEventID "L" (else "")
//            bit 6: feed chunks as ByteBuffers (else as raw buffer pointers)
//            bit 7: at the restart point use startNewStreamSkippingCurrentEvent
//   k bytes  chunk lengths, cycled (0 is an empty chunk)
//   rest     the stream
//
// Properties: parsing in those chunks gives the same outputs, error and lastEventID as parsing
// each part in one call; nothing traps; an event's lastEventID is its id when it has one; the
// parser is usable again after a restart; `firstLineBreak` agrees with a byte-by-byte search;
// and, when nothing failed, the outputs written back with SSESerializer parse to the same outputs.

/// What one run produced, in order: outputs, errors and restarts.
enum Step: Equatable {
    case output(SSEParser.Output)
    case error(SSEParser.Error)
    case restart
}

struct Plan {
    var maxEventSize: Int
    var lengths: [Int]
    var restartAt: Int?
    var skipOnRestart: Bool
    var lastEventID: String
    var useByteBuffer: Bool
    var data: UnsafeRawBufferPointer
}

func plan(_ input: UnsafeRawBufferPointer) -> Plan {
    var reader = FuzzBytes(input)
    let sizeByte = reader.byte()
    let flags = reader.byte()
    let maxEventSize = sizeByte < 0xC0 ? Int(sizeByte) + 1 : 1 << 20
    let lengths = (0..<Int(flags & 0x0F)).map { _ in Int(reader.byte()) }
    let restart = flags & 0x10 != 0 ? reader.uint16() : nil
    let data = reader.rest
    return Plan(
        maxEventSize: maxEventSize,
        lengths: lengths,
        restartAt: restart.map { $0 % (data.count + 1) },
        skipOnRestart: flags & 0x80 != 0,
        lastEventID: flags & 0x20 != 0 ? "L" : "",
        useByteBuffer: flags & 0x40 != 0,
        data: data
    )
}

/// Parses `plan.data`, split at the restart point, each part whole (`split == false`) or in the
/// planned chunks. Returns the steps and the parser as it ends.
func run(_ plan: Plan, split: Bool) -> ([Step], SSEParser) {
    var parser = SSEParser(maxEventSize: plan.maxEventSize, lastEventID: plan.lastEventID)
    var steps: [Step] = []
    let data = plan.data
    let cut = plan.restartAt ?? data.count
    let parts = plan.restartAt == nil ? [0..<data.count] : [0..<cut, cut..<data.count]
    for (partIndex, part) in parts.enumerated() {
        if partIndex > 0 {
            steps.append(.restart)
            if plan.skipOnRestart {
                parser.startNewStreamSkippingCurrentEvent()
            } else {
                parser.startNewStream()
            }
        }
        let chunks = split
            ? fuzzChunks(count: part.count, lengths: plan.lengths).map { (part.lowerBound + $0.start)..<(part.lowerBound + $0.end) }
            : [part]
        for chunk in chunks {
            let bytes = UnsafeRawBufferPointer(rebasing: data[chunk])
            do {
                if plan.useByteBuffer {
                    try parser.parse(ByteBuffer(bytes: bytes)) { steps.append(.output($0)) }
                } else {
                    try parser.parse(bytes) { steps.append(.output($0)) }
                }
            } catch {
                steps.append(.error(error))
                break  // The parser is unusable until the next stream.
            }
        }
    }
    return (steps, parser)
}

func checkLineBreakSearch(_ data: UnsafeRawBufferPointer) {
    var start = 0
    while start <= data.count {
        let found = data.firstLineBreak(from: start)
        let expected = data[start...].firstIndex(where: { $0 == 0x0A || $0 == 0x0D })
        fuzzCheck(found == expected, "firstLineBreak(from: \(start)) = \(String(describing: found)), expected \(String(describing: expected))")
        guard let found else { break }
        start = found + 1
    }
}

@main
struct FuzzSSEParser {
    static func main() {
        FuzzMain.run { input in
            let plan = plan(input)
            checkLineBreakSearch(plan.data)

            let (whole, wholeParser) = run(plan, split: false)
            let (split, splitParser) = run(plan, split: true)
            fuzzCheck(whole == split, "split parse differs:\n  whole: \(whole)\n  split: \(split)")
            if FuzzMain.verbose {
                print("\(FuzzMain.currentInput ?? "input"): max \(plan.maxEventSize), chunks \(plan.lengths), restart \(String(describing: plan.restartAt)): \(whole)")
            }
            fuzzCheck(wholeParser.lastEventID == splitParser.lastEventID,
                      "lastEventID differs: \(wholeParser.lastEventID.debugDescription) vs \(splitParser.lastEventID.debugDescription)")

            for step in whole {
                if case .output(.event(let event)) = step, let id = event.id {
                    fuzzCheck(event.lastEventID == id, "event with id \(id.debugDescription) reports lastEventID \(event.lastEventID.debugDescription)")
                }
                if case .output(.retry(let milliseconds)) = step {
                    fuzzCheck(milliseconds >= 0, "negative retry \(milliseconds)")
                }
            }

            // After a new stream the parser works again, whatever came before.
            var parser = wholeParser
            parser.startNewStream()
            if plan.maxEventSize >= 8 {
                let outputs = try? parser.parse(ByteBuffer(string: "data:x\n\n"))
                fuzzCheck(outputs == [.event(SSEEvent(data: "x", lastEventID: parser.lastEventID))],
                          "parser unusable after startNewStream: \(String(describing: outputs))")
            }

            // Writing the outputs back: the serializer's canonical form parses to the same outputs.
            // (Not after an error or a skipping restart: those move lastEventID without an event.)
            let failed = whole.contains { if case .error = $0 { return true } else { return false } }
            guard !failed, !(plan.skipOnRestart && plan.restartAt != nil) else { return }
            var buffer = ByteBuffer()
            var outputs: [SSEParser.Output] = []
            for step in whole {
                guard case .output(let output) = step else { continue }
                outputs.append(output)
                switch output {
                case .event(let event): SSESerializer.write(event, into: &buffer)
                case .retry(let milliseconds): SSESerializer.writeRetry(milliseconds, into: &buffer)
                }
            }
            var reparser = SSEParser(maxEventSize: 1 << 30, lastEventID: plan.lastEventID)
            do {
                let again = try reparser.parse(buffer)
                fuzzCheck(again == outputs, "serialized outputs parse differently:\n  first: \(outputs)\n  again: \(again)\n  wire: \(String(buffer: buffer).debugDescription)")
                fuzzCheck(reparser.lastEventID == wholeParser.lastEventID,
                          "lastEventID after the serialized outputs: \(reparser.lastEventID.debugDescription), expected \(wholeParser.lastEventID.debugDescription)")
            } catch {
                fuzzFail("serialized outputs do not parse: \(error)")
            }
        }
    }
}
