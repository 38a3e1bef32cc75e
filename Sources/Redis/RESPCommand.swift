import NIOCore

/// A command as the client sends it: a RESP array of bulk strings, name first.
///
///     RESPCommand("SET", "key", .bytes(value), "PX", 5000)
public struct RESPCommand: Sendable, Hashable {
    /// The command's name and arguments, in order.
    public var arguments: [RESPArgument]

    /// `name` then `arguments`.
    public init(_ name: String, _ arguments: RESPArgument...) {
        self.init(name, arguments: arguments)
    }

    /// `name` then `arguments`.
    public init(_ name: String, arguments: [RESPArgument]) {
        var all: [RESPArgument] = []
        all.reserveCapacity(arguments.count + 1)
        all.append(.string(name))
        all.append(contentsOf: arguments)
        self.arguments = all
    }

    /// The whole command line, name included (`["GET", "key"]`).
    public init(arguments: [RESPArgument]) {
        self.arguments = arguments
    }

    /// What `write(into:)` writes, in bytes.
    public var encodedLength: Int {
        var length = 1 + RESPArgument.decimalLength(UInt64(self.arguments.count)) + 2
        for argument in self.arguments { length += argument.encodedLength }
        return length
    }

    /// Appends `*<count>\r\n` and each argument as `$<length>\r\n<bytes>\r\n`, after making room
    /// for all of it at once.
    public func write(into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: self.encodedLength)
        buffer.writeInteger(UInt8(ascii: "*"))
        RESPArgument.writeDecimal(UInt64(self.arguments.count), negative: false, into: &buffer)
        buffer.writeInteger(RESPArgument.crlf)
        for argument in self.arguments {
            argument.write(into: &buffer)
        }
    }

    /// Which subscription command this is, from its name (ASCII case-insensitive); nil for the
    /// others. Their replies are push messages in RESP3, which the connection handles apart.
    var subscriptionKind: RedisSubscriptionKind? {
        guard let name = self.arguments.first else { return nil }
        switch name {
        case .string(let string):
            return RedisSubscriptionKind(name: string.utf8)
        case .bytes(let bytes):
            return bytes.withUnsafeReadableBytes { RedisSubscriptionKind(name: $0) }
        default:
            return nil
        }
    }
}
