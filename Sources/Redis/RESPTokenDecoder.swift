import NIOCore

/// `RESPTokenParser` as a NIO decoder: a server's byte stream in, one `RESPToken` per value out.
/// A parsing error is thrown, which `ByteToMessageHandler` fires through `errorCaught`; the
/// stream is out of step after it, so whoever catches it must close the connection.
public struct RESPTokenDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPToken

    private var parser: RESPTokenParser

    public init(limits: RESPTokenParser.Limits = .init()) {
        self.parser = RESPTokenParser(limits: limits)
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPToken? {
        try self.parser.next(from: &buffer)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPToken? {
        // Bytes of an incomplete value at EOF are dropped: the connection is going away and its
        // pending commands fail anyway.
        try self.decode(buffer: &buffer)
    }
}
