import Foundation
import XCTest

/// Test certificates, generated at test time with the `openssl` CLI into a temporary directory
/// (no private key is committed). One CA signs most certificates; another CA plays "untrusted".
final class TestPKI: @unchecked Sendable {
    struct Pair {
        let certificate: String
        let key: String
    }

    let directory: URL
    let caPath: String
    let otherCAPath: String
    /// SAN localhost and 127.0.0.1.
    let localhost: Pair
    /// Another certificate for localhost (a different key), for reload.
    let localhostRenewed: Pair
    /// SAN other.test and *.wild.test: the second certificate for SNI.
    let second: Pair
    /// No SAN, subject CN cn-only.test, RSA key.
    let cnOnly: Pair
    /// SAN wrong.test.
    let wrongHost: Pair
    /// SAN localhost, signed by the other CA.
    let untrusted: Pair
    /// SAN localhost, valid only in January 2020.
    let expired: Pair
    /// The localhost key, encrypted with a passphrase.
    let encryptedKeyPath: String

    /// One set per test process: generating takes a few tens of milliseconds, but there is no
    /// reason to repeat it. Removed at exit.
    static let shared: TestPKI = {
        do {
            let pki = try TestPKI()
            atexit { try? FileManager.default.removeItem(at: TestPKI.shared.directory) }
            return pki
        } catch {
            fatalError("cannot generate test certificates with the openssl CLI: \(error)")
        }
    }()

    private init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeline-tls-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.path
        try Self.write("", to: "\(dir)/index.txt")
        try Self.write("01\n", to: "\(dir)/serial")
        try Self.write(
            """
            [req]
            distinguished_name = dn
            prompt = no
            [dn]
            CN = Lifeline Test CA
            [v3_ca]
            basicConstraints = critical,CA:TRUE
            keyUsage = critical,keyCertSign,cRLSign
            subjectKeyIdentifier = hash
            [ca]
            default_ca = testca
            [testca]
            database = \(dir)/index.txt
            new_certs_dir = \(dir)
            serial = \(dir)/serial
            default_md = sha256
            policy = anything
            unique_subject = no
            [anything]
            commonName = supplied

            """, to: "\(dir)/openssl.cnf")

        func makeCA(_ name: String, subject: String) throws -> String {
            try Self.openssl([
                "req", "-x509", "-config", "\(dir)/openssl.cnf", "-extensions", "v3_ca",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).pem", "-days", "2", "-subj", "/CN=\(subject)",
            ])
            return "\(dir)/\(name).pem"
        }
        caPath = try makeCA("ca", subject: "Lifeline Test CA")
        otherCAPath = try makeCA("other-ca", subject: "Other Test CA")

        func makeLeaf(
            _ name: String, commonName: String, sans: [String]?, ca: String = "ca", rsa: Bool = false,
            dates: (start: String, end: String)? = nil
        ) throws -> Pair {
            var extensions = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            if let sans { extensions += "subjectAltName=" + sans.joined(separator: ",") + "\n" }
            try Self.write(extensions, to: "\(dir)/\(name).ext")
            let keyOptions = rsa ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            try Self.openssl(
                ["req", "-new", "-config", "\(dir)/openssl.cnf"] + keyOptions + [
                    "-nodes", "-keyout", "\(dir)/\(name).key", "-out", "\(dir)/\(name).csr", "-subj", "/CN=\(commonName)",
                ])
            var sign = [
                "ca", "-batch", "-notext", "-config", "\(dir)/openssl.cnf", "-cert", "\(dir)/\(ca).pem",
                "-keyfile", "\(dir)/\(ca).key", "-in", "\(dir)/\(name).csr", "-out", "\(dir)/\(name).pem",
                "-extfile", "\(dir)/\(name).ext",
            ]
            if let dates {
                sign += ["-startdate", dates.start, "-enddate", dates.end]
            } else {
                sign += ["-days", "2"]
            }
            try Self.openssl(sign)
            return Pair(certificate: "\(dir)/\(name).pem", key: "\(dir)/\(name).key")
        }
        localhost = try makeLeaf("localhost", commonName: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"])
        localhostRenewed = try makeLeaf("localhost-renewed", commonName: "localhost", sans: ["DNS:localhost", "IP:127.0.0.1"])
        second = try makeLeaf("second", commonName: "other.test", sans: ["DNS:other.test", "DNS:*.wild.test"])
        cnOnly = try makeLeaf("cn-only", commonName: "cn-only.test", sans: nil, rsa: true)
        wrongHost = try makeLeaf("wrong-host", commonName: "wrong.test", sans: ["DNS:wrong.test"])
        untrusted = try makeLeaf("untrusted", commonName: "localhost", sans: ["DNS:localhost"], ca: "other-ca")
        expired = try makeLeaf(
            "expired", commonName: "localhost", sans: ["DNS:localhost"], dates: ("20200101000000Z", "20200102000000Z"))
        encryptedKeyPath = "\(dir)/encrypted.key"
        try Self.openssl([
            "pkey", "-in", localhost.key, "-aes256", "-passout", "pass:secret", "-out", encryptedKeyPath,
        ])
    }

    /// The certificate's SHA-256 fingerprint as the CLI prints it ("AB:CD:...").
    func fingerprint(_ certificatePath: String) throws -> String {
        let output = try Self.openssl(["x509", "-in", certificatePath, "-noout", "-fingerprint", "-sha256"])
        guard let equals = output.firstIndex(of: "=") else { throw TestError("no fingerprint in \(output)") }
        return output[output.index(after: equals)...].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A fresh temporary path inside the PKI directory.
    func scratchPath(_ name: String) -> String {
        directory.appendingPathComponent("\(UUID().uuidString)-\(name)").path
    }

    func copy(_ pair: Pair, toCertificate certificate: String, key: String) throws {
        for (from, to) in [(pair.certificate, certificate), (pair.key, key)] {
            try? FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    @discardableResult
    static func openssl(_ arguments: [String]) throws -> String {
        let result = try runProcess("/usr/bin/env", ["openssl"] + arguments, timeout: 30)
        guard result.status == 0 else {
            throw TestError("openssl \(arguments.joined(separator: " ")) failed: \(result.output)")
        }
        return result.output
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct ProcessResult {
    let status: Int32
    /// stdout followed by stderr.
    let output: String
    let timedOut: Bool
}

/// Runs a program with `input` on stdin; kills it after `timeout` seconds.
func runProcess(_ executable: String, _ arguments: [String], input: String? = nil, timeout: TimeInterval) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stdout = FileManager.default.temporaryDirectory.appendingPathComponent("lifeline-tls-\(UUID().uuidString).out")
    let stderr = FileManager.default.temporaryDirectory.appendingPathComponent("lifeline-tls-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
    _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: stdout)
        try? FileManager.default.removeItem(at: stderr)
    }
    let stdoutHandle = try FileHandle(forWritingTo: stdout)
    let stderrHandle = try FileHandle(forWritingTo: stderr)
    process.standardOutput = stdoutHandle
    process.standardError = stderrHandle
    let stdin = Pipe()
    process.standardInput = stdin
    let finished = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in finished.signal() }
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    var timedOut = false
    if finished.wait(timeout: .now() + timeout) == .timedOut {
        timedOut = true
        process.terminate()
        _ = finished.wait(timeout: .now() + 5)
    }
    try? stdoutHandle.close()
    try? stderrHandle.close()
    let output = ((try? String(contentsOf: stdout, encoding: .utf8)) ?? "") + ((try? String(contentsOf: stderr, encoding: .utf8)) ?? "")
    return ProcessResult(status: process.terminationStatus, output: output, timedOut: timedOut)
}
