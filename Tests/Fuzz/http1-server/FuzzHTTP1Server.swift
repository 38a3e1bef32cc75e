import FuzzSupport
import LifelineCore
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Server
import Upstream

// Fuzz target `http1-server`: the gateway's HTTP/1.1 request path (request decoder,
// HTTP1ServerHandler, ClientExchange, StreamOpener, PlainProxy, streams and upstream sessions) on
// one EmbeddedEventLoop, with up to four client connections fed the input's bytes and origin
// connections that are in-memory channels whose answers the input also chooses.
//
// Input layout:
//   byte 0   configuration: bit 0 --client-buffer 1 KiB; bit 1 heartbeats every 50 ms;
//            bit 2 --max-request-head 1 KiB; bit 3 --replay-miss=live; bit 4 --share-by=path;
//            bit 5 /u is an --unshared-route; bit 6 --assign-ids; bit 7 head timeout 200 ms
//   then operations, one byte each (high 3 bits: what; low 5 bits: n), some followed by data:
//   0  the current client sends the next n+1 bytes of the input
//   1  client n % 4 becomes current (connecting it first if it is not)
//   2  the current client leaves (connection closed)
//   3  origin connection n answers 200 text/event-stream (chunked)
//   4  origin connection n sends an event (a chunk with id and data)
//   5  origin connection n answers a plain response (200, 204, 404 or 500 by n / 8) with a body
//   6  origin connection n ends its response (last chunk) if n is even, else closes
//   7  virtual time advances (n + 1) × 100 ms
//
// Properties: nothing traps; every byte a client is sent starts with an HTTP/1.x status line;
// once every client has left and the streams' linger (and a private generation's resume window)
// has passed, the gateway counts no client connection and holds no stream (nothing leaks per
// connection or per stream).

final class OriginPool: @unchecked Sendable {
    let loop: EmbeddedEventLoop
    var channels: [EmbeddedChannel] = []
    var nextID = 1

    init(loop: EmbeddedEventLoop) {
        self.loop = loop
    }

    var connector: OriginConnector {
        OriginConnector { _, _, _, initializer in
            let channel = EmbeddedChannel(loop: self.loop)
            self.channels.append(channel)
            return initializer(channel).flatMap {
                channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: 3000))
            }.map { channel }
        }
    }

    func send(_ text: String, to index: Int) {
        guard !self.channels.isEmpty else { return }
        let channel = self.channels[index % self.channels.count]
        guard channel.isActive else { return }
        try? channel.writeInbound(ByteBuffer(string: text))
    }

    func close(_ index: Int) {
        guard !self.channels.isEmpty else { return }
        let channel = self.channels[index % self.channels.count]
        guard channel.isActive else { return }
        // Not finish(): on a loop shared with other channels it runs or fails every scheduled
        // task, the streams' timers included.
        channel.close(promise: nil)
    }

    /// Drops what the gateway sent the origins (requests), so memory stays flat.
    func drain() {
        for channel in self.channels {
            while (try? channel.readOutbound(as: IOData.self)) != nil {}
        }
    }
}

final class Client {
    let channel: EmbeddedChannel
    var received: [UInt8] = []
    var open = true

    init(channel: EmbeddedChannel) {
        self.channel = channel
    }

    func collect() {
        while let buffer = try? self.channel.readOutbound(as: ByteBuffer.self) {
            self.received += buffer.readableBytesView
        }
    }
}

func runInput(_ input: UnsafeRawBufferPointer) {
    guard let flags = input.first else { return }
    var cursor = 1
    let loop = EmbeddedEventLoop()
    let origins = OriginPool(loop: loop)
    var configuration = GatewayConfiguration()
    configuration.routes = [try! Route.parse("/=http://origin.test:3000/").get()]
    configuration.clientBuffer = flags & 1 != 0 ? 1024 : 1 << 20
    configuration.heartbeat = flags & 2 != 0 ? .milliseconds(50) : nil
    configuration.maxRequestHeadSize = flags & 4 != 0 ? 1024 : 32 << 10
    configuration.stream.replayMiss = flags & 8 != 0 ? .live : .upstream
    if flags & 16 != 0 { configuration.sharePolicy = try! SharePolicy.parse("path").get() }
    if flags & 32 != 0 {
        configuration.routes.append(try! Route.parse("/u=http://origin.test:3000/u").get())
        configuration.unsharedRoutes = ["/u"]
    }
    configuration.stream.assignIDs = flags & 64 != 0
    configuration.requestHeadTimeout = flags & 128 != 0 ? .milliseconds(200) : .seconds(10)
    configuration.upstream.connector = origins.connector
    // Private generations (a POST answered with an event stream) outlive their client by the
    // resume window: shorter than the 120 s the end of a run waits, as the streams' linger is.
    configuration.stream.resumeWindow = .seconds(40)
    configuration.upstream.reconnectMin = .milliseconds(10)
    configuration.upstream.reconnectMax = .milliseconds(500)
    var logger = Logger(label: "fuzz")
    logger.logLevel = .critical
    let gateway = GatewayLoop(configuration: configuration, eventLoop: loop, logger: logger)

    var clients: [Client?] = [nil, nil, nil, nil]
    var current = 0
    var eventID = 0

    func client(_ index: Int) -> Client? {
        if clients[index] == nil {
            let channel = EmbeddedChannel(loop: loop)
            do {
                try gateway.installHTTP1(on: channel)
                try channel.connect(to: SocketAddress(ipAddress: "10.0.0.\(index + 1)", port: 40000)).wait()
            } catch {
                fuzzFail("cannot set up a client: \(error)")
            }
            clients[index] = Client(channel: channel)
        }
        return clients[index]
    }

    func leave(_ client: Client) {
        guard client.open else { return }
        client.open = false
        client.collect()
        client.channel.close(promise: nil)
    }

    while cursor < input.count {
        let op = input[cursor]
        cursor += 1
        let n = Int(op & 0x1F)
        switch op >> 5 {
        case 0:
            let end = min(input.count, cursor + n + 1)
            let bytes = ByteBuffer(bytes: input[cursor..<end])
            cursor = end
            if let client = client(current), client.open {
                do {
                    try client.channel.writeInbound(bytes)
                } catch {
                    // The gateway closed the connection (a refused request): as a client sees it.
                    leave(client)
                }
            }
        case 1:
            current = n % 4
            _ = client(current)
        case 2:
            if let client = clients[current] { leave(client) }
        case 3:
            origins.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", to: n)
        case 4:
            eventID += 1
            let event = "id: \(eventID)\ndata: event \(eventID)\n\n"
            origins.send(String(event.utf8.count, radix: 16) + "\r\n" + event + "\r\n", to: n)
        case 5:
            let status = ["200 OK", "204 No Content", "404 Not Found", "500 Internal Server Error"][(n / 8) % 4]
            let body = status.hasPrefix("204") ? "" : "body"
            origins.send("HTTP/1.1 \(status)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", to: n)
        case 6:
            if n % 2 == 0 { origins.send("0\r\n\r\n", to: n) } else { origins.close(n) }
        default:
            loop.advanceTime(by: .milliseconds(Int64(n + 1) * 100))
        }
        loop.run()
        origins.drain()
        for client in clients.compactMap({ $0 }) { client.collect() }
    }

    // Everyone leaves; streams linger out, reconnects stop.
    for client in clients.compactMap({ $0 }) { leave(client) }
    loop.run()
    for _ in 0..<12 {
        loop.advanceTime(by: .seconds(10))
        origins.drain()
    }
    for client in clients.compactMap({ $0 }) where !client.received.isEmpty {
        let start = String(decoding: client.received.prefix(9), as: UTF8.self)
        fuzzCheck(start == "HTTP/1.1 " || start == "HTTP/1.0 ", "a client was sent \(start.debugDescription) first")
    }
    fuzzCheck(gateway.connectionCount == 0, "\(gateway.connectionCount) client connections still counted after all left")
    fuzzCheck(gateway.hub.streams.isEmpty, "\(gateway.hub.streams.count) streams left after every client left and linger passed")
    for channel in origins.channels where channel.isActive {
        channel.close(promise: nil)
    }
    loop.run()
    try? loop.syncShutdownGracefully()
}

@main
struct FuzzHTTP1Server {
    static func main() {
        FuzzMain.run { input in
            runInput(input)
        }
    }
}
