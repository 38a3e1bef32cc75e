import COpenSSL

/// The calling thread's OpenSSL error queue. OpenSSL keeps it per thread, which is why every SSL
/// call happens on the channel's event loop and is preceded by `ERR_clear_error()`: otherwise a
/// stale entry from another connection would turn a WANT_READ into a failure.
enum OpenSSLErrorQueue {
    /// Removes and returns the queued errors as OpenSSL's strings, oldest first.
    static func drain() -> [String] {
        var errors: [String] = []
        // The queue holds at most 16 entries; the bound only guards against a surprise.
        for _ in 0..<32 {
            let code = ERR_get_error()
            if code == 0 { break }
            errors.append(string(for: code))
        }
        return errors
    }

    static func clear() {
        ERR_clear_error()
    }

    static func string(for code: UInt) -> String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            guard let base = buffer.baseAddress else { return "OpenSSL error \(code)" }
            ERR_error_string_n(code, base, buffer.count)
            return String(cString: base)
        }
    }
}
