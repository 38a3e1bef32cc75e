import LifelineCore
import NIOCore

/// On a plaintext listener, tells HTTP/2 with prior knowledge (h2c) from HTTP/1.1 by the first
/// bytes: the HTTP/2 connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which no HTTP/1.1
/// request starts with. Then it installs the right front end and steps aside, handing on the
/// bytes it held.
final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    enum Detected {
        case http1
        case http2
    }

    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private var buffered: ByteBuffer?
    private var decided = false
    /// Armed until the protocol is told: an entry in the loop's list of idle timers, not a
    /// scheduled task per connection (a reconnect storm starts thousands at once).
    private var timer: DeadlineList.Entry?
    private let timeout: TimeAmount
    private let timers: DeadlineList
    private let install: (Channel, Detected) throws -> Void

    /// - Parameters:
    ///   - timeout: a client that has not sent enough to tell by then is answered 408 (the
    ///     request-head timeout, which the HTTP/1.1 front end applies after this).
    ///   - timers: the loop's idle timers (`LoopContext.idleTimers`).
    ///   - install: adds the handlers for the protocol after this one.
    init(timeout: TimeAmount, timers: DeadlineList, install: @escaping (Channel, Detected) throws -> Void) {
        self.timeout = timeout
        self.timers = timers
        self.install = install
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard self.timeout > .zero else { return }
        // The entry holds the context until it fires or is removed (at the latest when the
        // handler leaves the pipeline).
        self.timer = self.timers.add(deadline: context.eventLoop.now + self.timeout) {
            var answer = context.channel.allocator.buffer(capacity: 128)
            answer.writeString("HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(NIOAny(answer)).whenComplete { _ in bound.value.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.disarm()
    }

    private func disarm() {
        if let timer = self.timer {
            self.timers.remove(timer)
            self.timer = nil
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.decided else {
            context.fireChannelRead(data)
            return
        }
        var bytes = self.unwrapInboundIn(data)
        if var held = self.buffered {
            held.writeBuffer(&bytes)
            bytes = held
        }
        let count = min(bytes.readableBytes, Self.preface.count)
        let matches = bytes.readableBytesView.prefix(count).elementsEqual(Self.preface.prefix(count))
        if matches && count < Self.preface.count {
            self.buffered = bytes  // not enough bytes to tell yet
            return
        }
        self.decided = true
        self.buffered = nil
        self.disarm()
        do {
            try self.install(context.channel, matches ? .http2 : .http1)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(self.wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.buffered = nil
        self.disarm()
        context.fireChannelInactive()
    }
}
