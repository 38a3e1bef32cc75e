import CNghttp2

/// What creating an nghttp2 session takes in either role: the callbacks and option objects (only
/// read by `nghttp2_session_*_new3`, so deleted before this returns), the session's own allocator
/// (an arena: `cnghttp2_arena` in the shim), the options both roles share, the first SETTINGS and
/// the connection's receive window. On failure nothing is left allocated. `package`: the client
/// session (module HTTP2Client) uses it too.
package enum NGHTTP2SessionSetup {
    package enum Role {
        case client
        case server
    }

    /// An nghttp2 call that failed while the session was made: its error code and name.
    package struct Failure: Error {
        package var code: Int32
        package var operation: String
    }

    /// A session and the arena its memory comes from: delete them together (`delete()`).
    package struct Session {
        package let session: OpaquePointer
        package let arena: UnsafeMutablePointer<cnghttp2_arena>

        package init(session: OpaquePointer, arena: UnsafeMutablePointer<cnghttp2_arena>) {
            self.session = session
            self.arena = arena
        }

        /// Deletes the session, then its arena.
        package func delete() {
            nghttp2_session_del(self.session)
            cnghttp2_arena_del(self.arena)
        }
    }

    /// - Parameters:
    ///   - userData: what the C callbacks receive as `user_data`.
    ///   - settings: the SETTINGS entries submitted first.
    ///   - connectionWindow: the connection's receive window; above the protocol's 65535 it is
    ///     raised with a WINDOW_UPDATE that goes out with the SETTINGS.
    ///   - configure: sets the role's callbacks and its own options.
    package static func makeSession(
        _ role: Role,
        userData: UnsafeMutableRawPointer,
        settings: [(nghttp2_settings_id, Int)],
        connectionWindow: Int32,
        configure: (_ callbacks: OpaquePointer, _ option: OpaquePointer) -> Void
    ) throws(Failure) -> Session {
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else {
            throw .init(code: NGHTTP2_ERR_NOMEM.rawValue, operation: "nghttp2_session_callbacks_new")
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else {
            throw .init(code: NGHTTP2_ERR_NOMEM.rawValue, operation: "nghttp2_option_new")
        }
        defer { nghttp2_option_del(option) }
        // Neither role uses the RFC 7540 priority tree, the only reason to keep closed streams.
        nghttp2_option_set_no_closed_streams(option, 1)
        configure(callbacks, option)

        // Its 16 KiB output buffer on pages of its own: only the pages a frame is written to stay
        // resident, and an idle session can give them back (`cnghttp2_arena` in the shim).
        guard let arena = cnghttp2_arena_new() else {
            throw .init(code: NGHTTP2_ERR_NOMEM.rawValue, operation: "cnghttp2_arena_new")
        }
        var mem = cnghttp2_arena_mem(arena)
        var created: OpaquePointer?
        cnghttp2_arena_creating(arena, 1)
        let rv: Int32
        switch role {
        case .client: rv = nghttp2_session_client_new3(&created, callbacks, userData, option, &mem)
        case .server: rv = nghttp2_session_server_new3(&created, callbacks, userData, option, &mem)
        }
        cnghttp2_arena_creating(arena, 0)
        guard rv == 0, let created else {
            cnghttp2_arena_del(arena)
            throw .init(code: rv, operation: role == .client ? "nghttp2_session_client_new3" : "nghttp2_session_server_new3")
        }
        let session = Session(session: created, arena: arena)

        let entries = settings.map {
            nghttp2_settings_entry(settings_id: Int32($0.0.rawValue), value: UInt32(truncatingIfNeeded: $0.1))
        }
        var failure = entries.withUnsafeBufferPointer {
            nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress, $0.count)
        }
        var operation = "nghttp2_submit_settings"
        if failure == 0 && connectionWindow > CNGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE {
            failure = nghttp2_session_set_local_window_size(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, connectionWindow)
            operation = "nghttp2_session_set_local_window_size"
        }
        guard failure == 0 else {
            session.delete()
            throw .init(code: failure, operation: operation)
        }
        return session
    }
}
