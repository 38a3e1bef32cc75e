/// The commands that open a connection and the check of their replies. Pure: no I/O.
///
/// `HELLO 3 [AUTH user password] [SETNAME name]` switches to RESP3, authenticates and names
/// the connection in one round trip; `SELECT db` follows, pipelined, when the database is not 0.
struct RedisHandshake: Sendable {
    let commands: [RESPCommand]

    init(configuration: RedisConnection.Configuration) {
        var hello: [RESPArgument] = [3]
        if let password = configuration.password {
            hello += ["AUTH", .string(configuration.username ?? "default"), .string(password)]
        }
        if let clientName = configuration.clientName {
            hello += ["SETNAME", .string(clientName)]
        }
        var commands = [RESPCommand("HELLO", arguments: hello)]
        if configuration.database != 0 {
            commands.append(RESPCommand("SELECT", .int(Int64(configuration.database))))
        }
        self.commands = commands
    }

    /// nil when every reply is what a successful handshake gives; otherwise what went wrong,
    /// from the first reply that is not (an error from HELLO makes SELECT's moot).
    static func check(_ replies: [RESPToken]) -> RedisConnectionError? {
        for (index, reply) in replies.enumerated() {
            if let message = reply.errorMessage {
                return .handshakeRejected(RedisServerError(message: message))
            }
            switch (index, reply.value) {
            case (0, .map):
                continue  // HELLO's server properties: we need none of them.
            case (1, .simpleString) where reply.string == "OK":
                continue
            default:
                return .unexpectedHandshakeReply(reply.description)
            }
        }
        return nil
    }
}
