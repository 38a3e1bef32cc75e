import NIOCore

/// One side of a relay connection of `DemoNetworkPath`: what it reads goes to its partner, with
/// backpressure (it reads only while the partner can write), and a close on either side closes
/// both. Once cut, it drops what it reads, and a close by the server does not reach the browser
/// either (a FIN is lost like any other packet): the browser's side stays open and silent until
/// the browser gives it up, which then closes the server's side.
final class DemoRelayHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case forwarding
        /// Reads are dropped; closes still travel.
        case cut
    }

    /// Which end of the connection this side's channel faces.
    private enum Side {
        case browser
        case server
    }

    private var state = State.forwarding
    private let side: Side
    private var partner: DemoRelayHandler?
    private var context: ChannelHandlerContext?
    /// A read the channel asked for while the partner could not take more.
    private var readPending = false

    private init(side: Side) {
        self.side = side
    }

    /// Handlers for the browser's and the server's channel of one connection (on one event loop).
    static func pair() -> (browser: DemoRelayHandler, server: DemoRelayHandler) {
        let near = DemoRelayHandler(side: .browser)
        let far = DemoRelayHandler(side: .server)
        near.partner = far
        far.partner = near
        return (near, far)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil  // breaks the cycle
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .forwarding = self.state else { return }
        self.partner?.partnerWrite(self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        switch (self.state, self.side) {
        case (.forwarding, _), (.cut, .browser):
            self.partner?.partnerClose()
        case (.cut, .server):
            break
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DemoNetworkPath.Cut {
            self.state = .cut
            // Bytes held back for a slow partner do not matter any more: read on, and drop.
            self.readIfPending()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.partner?.readIfPending()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if case .forwarding = self.state, let partner = self.partner, !partner.isWritable {
            self.readPending = true
        } else {
            context.read()
        }
    }

    // MARK: From the partner

    private var isWritable: Bool { self.context?.channel.isWritable ?? true }

    private func partnerWrite(_ buffer: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    private func partnerFlush() {
        self.context?.flush()
    }

    private func partnerClose() {
        self.context?.close(promise: nil)
    }

    private func readIfPending() {
        guard self.readPending, let context = self.context else { return }
        self.readPending = false
        context.read()
    }
}
