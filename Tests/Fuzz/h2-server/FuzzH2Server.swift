import CNghttp2
import FuzzSupport
import HTTP2
import NIOCore
import NIOEmbedded
import NIOHTTP1

// Fuzz target `h2-server`: HTTP2ServerHandler (nghttp2) on an EmbeddedChannel, fed the client
// connection preface and then the input's bytes, cut into chunks, with an application that
// answers requests the ways Lifeline does (event streams that stay open, plain responses, resets,
// large bodies that wait for the client's window, echoed uploads, uploads held with pauseBody).
//
// Input layout (see docs/reliability.md, "Fuzzing"):
//   byte 0   configuration: bit 0 maxConcurrentStreams 2; bit 1 streamBufferLimit 64;
//            bit 2 maxHeaderListSize 200; bit 3 initialWindowSize 16; bit 4 outputChunkSize 1024;
//            bit 5 resets 3/s and control frames 5/s; bit 6 graceful shutdown half-way;
//            bit 7 the channel is not writable for the second half
//   byte 1   bits 0-3: k, the number of chunk-length bytes that follow (0: one chunk);
//            bit 4: virtual time advances 100 ms after each chunk; bit 5: the event streams are
//            ended after the input; bit 6: an error is fired down the pipeline half-way;
//            bit 7: the handler is removed from the pipeline half-way
//   k bytes  chunk lengths, cycled (0 is an empty chunk)
//   rest     what the client sends after the preface
//
// Properties: nothing traps (nghttp2 runs under AddressSanitizer's allocator); every stream the
// application was given hears exactly one close, and nothing after it; calls on a closed stream
// are ignored; the channel finishes; every byte written is part of a whole, well-formed frame,
// the first being SETTINGS, and every response header block decodes (HPACK) with :status first.

struct FuzzError: Error {}

enum Kind {
    case eventStream, plain, empty, reset, big, echo, upload, late, twice, notFound

    init(path: String) {
        if path.hasPrefix("/sse") { self = .eventStream }
        else if path.hasPrefix("/plain") { self = .plain }
        else if path.hasPrefix("/empty") { self = .empty }
        else if path.hasPrefix("/reset") { self = .reset }
        else if path.hasPrefix("/big") { self = .big }
        else if path.hasPrefix("/echo") { self = .echo }
        else if path.hasPrefix("/upload") { self = .upload }
        else if path.hasPrefix("/late") { self = .late }
        else if path.hasPrefix("/twice") { self = .twice }
        else { self = .notFound }
    }
}

final class App: HTTP2ServerStreamDelegate {
    final class Entry {
        let stream: HTTP2ServerStream
        let kind: Kind
        var closes = 0
        var ended = false
        var events = 0
        var bodies = 0
        init(stream: HTTP2ServerStream, kind: Kind) {
            self.stream = stream
            self.kind = kind
        }
    }

    var entries: [ObjectIdentifier: Entry] = [:]
    var order: [Entry] = []

    func entry(_ stream: HTTP2ServerStream) -> Entry {
        guard let entry = self.entries[ObjectIdentifier(stream)] else {
            fuzzFail("delegate call for stream \(stream.streamID), which the application was never given")
        }
        fuzzCheck(entry.closes == 0, "stream \(stream.streamID): delegate called after its close")
        return entry
    }

    func onRequest(_ stream: HTTP2ServerStream) {
        fuzzCheck(stream.streamID > 0 && stream.streamID % 2 == 1, "request on stream \(stream.streamID)")
        fuzzCheck(self.entries[ObjectIdentifier(stream)] == nil, "stream \(stream.streamID) delivered twice")
        fuzzCheck(stream.head.version == HTTPVersion(major: 2, minor: 0), "request version \(stream.head.version)")
        let entry = Entry(stream: stream, kind: Kind(path: stream.head.uri))
        self.entries[ObjectIdentifier(stream)] = entry
        self.order.append(entry)
        stream.delegate = self
        switch entry.kind {
        case .eventStream:
            stream.sendHead(status: .ok, headers: [("content-type", "text/event-stream"), ("cache-control", "no-cache")])
            stream.write(ByteBuffer(string: ":ok\n\nretry: 1000\n\n"))
            stream.flush()
        case .plain:
            stream.sendHead(status: .ok, headers: [("content-type", "text/plain"), ("content-length", "6")])
            stream.write(ByteBuffer(string: "hello\n"))
            stream.end()
        case .empty:
            stream.sendHead(status: .noContent, headers: [], endStream: true)
        case .reset:
            stream.write(ByteBuffer(string: "dropped"))
            stream.reset(errorCode: 0x2)
        case .big:
            stream.sendHead(status: .ok, headers: [("content-type", "application/octet-stream")])
            stream.write(ByteBuffer(repeating: 0x78, count: 70_000))
            stream.write(ByteBuffer(repeating: 0x79, count: 1_000))
            stream.end()
        case .echo:
            stream.sendHead(status: .ok, headers: [("content-type", "application/octet-stream"), ("x-echo", stream.head.uri)])
            stream.flush()
        case .upload:
            // A destination that does not take the body yet: the window is held.
            stream.sendHead(status: .ok, headers: [])
            stream.pauseBody()
        case .late:
            break
        case .twice:
            stream.sendHead(status: .ok, headers: [("Connection", "close"), ("X-Bad", "a\r\nb"), ("bad name", "x")])
            stream.sendHead(status: .notFound, headers: [], endStream: true)
            stream.end()
            stream.end()
            stream.write(ByteBuffer(string: "after end"))
            stream.flush()
        case .notFound:
            stream.sendHead(status: .notFound, headers: [("content-length", "0")], endStream: true)
        }
    }

    func http2Stream(_ stream: HTTP2ServerStream, didReceiveBody body: ByteBuffer) {
        let entry = self.entry(stream)
        fuzzCheck(!entry.ended, "stream \(stream.streamID): body after the request's end")
        fuzzCheck(body.readableBytes > 0, "stream \(stream.streamID): empty body delivered")
        entry.bodies += 1
        if entry.kind == .echo {
            stream.write(body)
            stream.flush()
        }
        if entry.kind == .upload && entry.bodies % 2 == 0 {
            stream.resumeBody()
            stream.pauseBody()
        }
    }

    func http2StreamDidReceiveEnd(_ stream: HTTP2ServerStream) {
        let entry = self.entry(stream)
        fuzzCheck(!entry.ended, "stream \(stream.streamID): request end delivered twice")
        entry.ended = true
        if entry.kind == .echo {
            stream.end()
        }
    }

    func http2StreamDidClose(_ stream: HTTP2ServerStream, reason: HTTP2StreamCloseReason) {
        let entry = self.entry(stream)
        entry.closes += 1
        fuzzCheck(stream.isClosed, "stream \(stream.streamID): closed (\(reason)) but isClosed is false")
        // Everything after the close is ignored.
        stream.sendHead(status: .ok, headers: [])
        stream.write(ByteBuffer(string: "late"))
        stream.flush()
        stream.end()
        stream.reset()
        stream.pauseBody()
        stream.resumeBody()
        fuzzCheck(stream.bufferedBytes == 0, "stream \(stream.streamID): \(stream.bufferedBytes) bytes queued after its close")
    }

    func http2StreamWritabilityChanged(_ stream: HTTP2ServerStream) {
        let entry = self.entry(stream)
        // Like Lifeline with a client that cannot keep up: drop the slow event stream.
        if entry.kind == .eventStream && !stream.isWritable {
            stream.reset(errorCode: 0x8)
        }
    }

    /// After the input: streams that were left waiting get their answers and more events.
    func afterInput(endEventStreams: Bool) {
        for entry in self.order where entry.closes == 0 {
            switch entry.kind {
            case .eventStream:
                entry.events += 1
                entry.stream.write(ByteBuffer(string: "id: \(entry.events)\ndata: tick\n\n"))
                entry.stream.flush()
                if endEventStreams { entry.stream.end() }
            case .upload:
                entry.stream.resumeBody()
                entry.stream.end()
            case .late:
                entry.stream.sendHead(status: .ok, headers: [("content-type", "text/plain")])
                entry.stream.write(ByteBuffer(string: "late answer"))
                entry.stream.end()
            default:
                break
            }
        }
    }
}

/// Checks the server's output: whole frames, SETTINGS first, decodable response header blocks.
/// Returns how many frames of each type there were (for LIFELINE_FUZZ_VERBOSE).
@discardableResult
func checkOutput(_ bytes: [UInt8]) -> [UInt8: Int] {
    var counts: [UInt8: Int] = [:]
    fuzzCheck(!bytes.isEmpty, "the server wrote nothing (not even SETTINGS)")
    var inflater: OpaquePointer?
    guard nghttp2_hd_inflate_new(&inflater) == 0, let inflater else { fuzzFail("nghttp2_hd_inflate_new") }
    defer { nghttp2_hd_inflate_del(inflater) }
    var index = 0
    var frameNumber = 0
    var headerBlock: [UInt8]? = nil
    while index < bytes.count {
        fuzzCheck(index + 9 <= bytes.count, "output ends inside a frame header at byte \(index) of \(bytes.count)")
        let length = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
        let type = bytes[index + 3]
        let flags = bytes[index + 4]
        let streamID = (UInt32(bytes[index + 5]) << 24 | UInt32(bytes[index + 6]) << 16 | UInt32(bytes[index + 7]) << 8 | UInt32(bytes[index + 8])) & 0x7fff_ffff
        fuzzCheck(index + 9 + length <= bytes.count, "output ends inside frame \(frameNumber) (type \(type), \(length) bytes)")
        let payload = Array(bytes[(index + 9)..<(index + 9 + length)])
        fuzzCheck(type <= 0x9, "frame \(frameNumber) has unknown type \(type): output misaligned?")
        if frameNumber == 0 {
            fuzzCheck(type == 0x4 && flags & 0x1 == 0 && streamID == 0, "the first frame is not the server's SETTINGS")
        }
        if type == 0x4 { fuzzCheck(length % 6 == 0 && streamID == 0, "malformed SETTINGS frame") }
        if type == 0x0 || type == 0x1 {
            fuzzCheck(streamID != 0 && streamID % 2 == 1, "DATA/HEADERS on stream \(streamID)")
        }
        if type == 0x0, flags & 0x8 != 0 {
            fuzzCheck(!payload.isEmpty && Int(payload[0]) < payload.count, "DATA frame with bad padding")
        }
        if headerBlock != nil {
            fuzzCheck(type == 0x9, "frame type \(type) inside a header block")
        }
        if type == 0x1 || type == 0x9 {
            var fragment = payload[...]
            if type == 0x1 {
                fuzzCheck(headerBlock == nil, "HEADERS inside a header block")
                var pad = 0
                if flags & 0x8 != 0, let first = fragment.first {
                    pad = Int(first)
                    fragment = fragment.dropFirst()
                }
                if flags & 0x20 != 0 { fragment = fragment.dropFirst(5) }
                fuzzCheck(pad <= fragment.count, "HEADERS frame with bad padding")
                fragment = fragment.dropLast(pad)
                headerBlock = []
            }
            headerBlock! += fragment
            if flags & 0x4 != 0 {
                let fields = decode(headerBlock!, inflater)
                fuzzCheck(fields.first == ":status", "response header block starts with \(fields.first ?? "nothing")")
                headerBlock = nil
            }
        }
        counts[type, default: 0] += 1
        if FuzzMain.verbose {
            let names = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
            var note = ""
            func be32(_ at: Int) -> UInt32 { payload.count >= at + 4 ? payload[at..<(at + 4)].reduce(0) { $0 << 8 | UInt32($1) } : 0 }
            if type == 0x3 { note = " code \(be32(0))" }
            if type == 0x7 { note = " last \(be32(0) & 0x7fff_ffff) code \(be32(4)) \(String(decoding: payload.dropFirst(8), as: UTF8.self).debugDescription)" }
            if type == 0x8 { note = " +\(be32(0))" }
            print("  \(names[Int(type)]) stream \(streamID) flags 0x\(String(flags, radix: 16)) \(length) bytes\(note)")
        }
        index += 9 + length
        frameNumber += 1
    }
    return counts
}

/// Decodes one complete header block; returns the field names.
func decode(_ block: [UInt8], _ inflater: OpaquePointer) -> [String] {
    var names: [String] = []
    var offset = 0
    while true {
        var nv = nghttp2_nv()
        var flags: Int32 = 0
        let remaining = block.count - offset
        let consumed = block.withUnsafeBufferPointer { buffer -> Int in
            nghttp2_hd_inflate_hd2(inflater, &nv, &flags, buffer.baseAddress.map { $0 + offset }, remaining, 1)
        }
        fuzzCheck(consumed >= 0, "response header block is not valid HPACK (\(consumed))")
        offset += consumed
        if flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0 {
            names.append(String(decoding: UnsafeBufferPointer(start: nv.name, count: nv.namelen), as: UTF8.self))
        }
        if flags & Int32(NGHTTP2_HD_INFLATE_FINAL.rawValue) != 0 {
            nghttp2_hd_inflate_end_headers(inflater)
            return names
        }
        fuzzCheck(consumed > 0 || flags & Int32(NGHTTP2_HD_INFLATE_EMIT.rawValue) != 0, "HPACK decoder stuck")
    }
}

let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

func fuzzOne(_ input: UnsafeRawBufferPointer) {
    var reader = FuzzBytes(input)
    let config = reader.byte()
    let flags = reader.byte()
    let lengths = (0..<Int(flags & 0x0F)).map { _ in Int(reader.byte()) }
    let client = preface + Array(reader.rest)

    var configuration = HTTP2ServerConfiguration()
    if config & 0x01 != 0 { configuration.maxConcurrentStreams = 2 }
    if config & 0x02 != 0 { configuration.streamBufferLimit = 64 }
    if config & 0x04 != 0 { configuration.maxHeaderListSize = 200 }
    if config & 0x08 != 0 { configuration.initialWindowSize = 16 }
    if config & 0x10 != 0 { configuration.outputChunkSize = 1024 }
    if config & 0x20 != 0 {
        configuration.maxClientResetsPerSecond = 3
        configuration.maxControlFramesPerSecond = 5
    }
    configuration.gracefulShutdownPingTimeout = .milliseconds(500)
    configuration.closeTimeout = .seconds(1)
    let shutdownHalfWay = config & 0x40 != 0
    let blockedHalfWay = config & 0x80 != 0
    let advanceTime = flags & 0x10 != 0
    let endEventStreams = flags & 0x20 != 0
    let errorHalfWay = flags & 0x40 != 0
    let removeHalfWay = flags & 0x80 != 0

    let app = App()
    let channel = EmbeddedChannel()
    let loop = channel.embeddedEventLoop
    let handler = HTTP2ServerHandler(configuration: configuration) { app.onRequest($0) }
    do {
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.pipeline.syncOperations.addHandler(handler)
    } catch {
        fuzzFail("set-up failed: \(error)")
    }

    var output: [UInt8] = []
    func drain() {
        loop.run()
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
            output += buffer.readableBytesView
        }
    }

    let chunks = lengths.isEmpty ? [(start: 0, end: client.count)] : fuzzChunks(count: client.count, lengths: lengths)
    let halfWay = chunks.count / 2
    var removed = false
    var expectedError = false
    for (number, chunk) in chunks.enumerated() {
        if number == halfWay {
            if shutdownHalfWay { channel.pipeline.fireUserInboundEventTriggered(HTTP2ServerHandler.GracefulShutdown()) }
            if blockedHalfWay {
                channel.isWritable = false
                channel.pipeline.fireChannelWritabilityChanged()
            }
            if errorHalfWay {
                channel.pipeline.fireErrorCaught(FuzzError())
                expectedError = true
            }
            if removeHalfWay && !removed {
                removed = true
                try? channel.pipeline.syncOperations.removeHandler(handler).wait()
            }
        }
        guard channel.isActive else { break }
        var buffer = channel.allocator.buffer(capacity: chunk.end - chunk.start)
        buffer.writeBytes(client[chunk.start..<chunk.end])
        do {
            try channel.writeInbound(buffer)
        } catch is FuzzError where expectedError {
            // The error fired half-way, reported by the channel; the handler closed it.
        } catch {
            fuzzFail("writeInbound threw \(error)")
        }
        if removed {
            // Bytes reach the end of the pipeline once the handler is gone.
            while (try? channel.readInbound(as: ByteBuffer.self)) ?? nil != nil {}
        }
        drain()
        if advanceTime { loop.advanceTime(by: .milliseconds(100)) }
        drain()
    }

    if blockedHalfWay && channel.isActive {
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
    }
    drain()
    app.afterInput(endEventStreams: endEventStreams)
    drain()
    loop.advanceTime(by: .seconds(3))
    drain()
    app.afterInput(endEventStreams: false)
    drain()

    do {
        _ = try channel.finish(acceptAlreadyClosed: true)
    } catch is FuzzError where expectedError {
    } catch {
        fuzzFail("the channel does not finish: \(error)")
    }
    drain()

    fuzzCheck(handler.openStreamCount == 0, "\(handler.openStreamCount) streams open after the channel closed")
    for entry in app.order {
        fuzzCheck(entry.closes == 1, "stream \(entry.stream.streamID) (\(entry.kind)) heard \(entry.closes) closes")
        fuzzCheck(entry.stream.isClosed, "stream \(entry.stream.streamID) is not closed after the channel closed")
    }
    let frames = checkOutput(output)
    if FuzzMain.verbose {
        let streams = app.order.map { "\($0.stream.streamID):\($0.kind)" }.joined(separator: " ")
        print("\(FuzzMain.currentInput ?? "input"): streams [\(streams)], \(output.count) bytes out, frames \(frames), \(handler.terminationReason ?? "-")")
    }
}

@main
struct FuzzH2Server {
    static func main() {
        FuzzMain.run { fuzzOne($0) }
    }
}
