import NIOCore
import SSE

/// What feeding a parser produced: its outputs in order, and the error that stopped it, if any.
struct ParseRun: Equatable, CustomStringConvertible {
    var outputs: [SSEParser.Output] = []
    var error: SSEParser.Error? = nil

    var description: String {
        let lines = self.outputs.map { "  \($0)" }
        return "[\n" + lines.joined(separator: "\n") + "\n]" + (self.error.map { " then \($0)" } ?? "")
    }
}

/// Feeds `streams` to one parser, one connection each (`startNewStream` between them), every stream
/// cut into chunks where `cuts(streamIndex, byteCount)` says (sorted offsets strictly inside it).
/// Stops at the first error, since the parser is unusable until the next stream.
func runParser(
    _ streams: [[UInt8]],
    maxEventSize: Int = 1 << 20,
    lastEventID: String = "",
    cuts: (Int, Int) -> [Int] = { _, _ in [] }
) -> ParseRun {
    var parser = SSEParser(maxEventSize: maxEventSize, lastEventID: lastEventID)
    var run = ParseRun()
    for (streamIndex, stream) in streams.enumerated() {
        if streamIndex > 0 {
            parser.startNewStream()
        }
        // One buffer per stream; chunks are slices of it, so cutting costs no copies.
        let whole = ByteBuffer(bytes: stream)
        var start = 0
        for end in cuts(streamIndex, stream.count) + [stream.count] {
            let chunk = whole.getSlice(at: start, length: end - start)!
            do {
                try parser.parse(chunk) { run.outputs.append($0) }
            } catch {
                run.error = error
                return run
            }
            start = end
        }
    }
    return run
}

/// Cut positions for one byte per chunk.
func everyByte(_ streamIndex: Int, _ count: Int) -> [Int] {
    count > 1 ? Array(1..<count) : []
}

/// A small deterministic generator, so "random" chunkings are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The UTF-8 bytes of `text`.
func utf8(_ text: String) -> [UInt8] {
    Array(text.utf8)
}

let bom: [UInt8] = [0xEF, 0xBB, 0xBF]

/// An `.event` output; `lastEventID` defaults to `id` (what a block with an id leaves behind).
func event(_ data: String?, id: String? = nil, type: String? = nil, lastEventID: String? = nil) -> SSEParser.Output {
    .event(SSEEvent(id: id, type: type, data: data, lastEventID: lastEventID ?? id ?? ""))
}
