#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// The driver shared by Lifeline's fuzz targets (`Tests/Fuzz/<target>/`).
//
// Each target is an executable whose `@main` calls `FuzzMain.run`. Built with
// `-sanitize=fuzzer,address -DLIFELINE_FUZZ` (what `scripts/fuzz` does), `run` hands control to
// libFuzzer's driver (`LLVMFuzzerRunDriver`), so every libFuzzer option works. In an ordinary
// build (`swift build`, which builds every target) it is a regression runner instead: it feeds
// each file named on the command line (directories are walked, dot files skipped) through the
// same property checks, once, and a violated property stops the process with a non-zero status.
//
// Why not just libFuzzer's own `main`: SwiftPM links every Swift executable with
// `--defsym main=<module>_main`, so an executable without a Swift entry point does not link, and
// the normal build must keep working without libFuzzer. `LLVMFuzzerTestOneInput` is still
// defined below because `-sanitize=fuzzer` pulls libFuzzer's `main` object in, which refers to it.

/// The property check of the target being run: called once per input, with the input's bytes.
nonisolated(unsafe) private var testOneInput: ((UnsafeRawBufferPointer) -> Void)?

@_cdecl("LLVMFuzzerTestOneInput")
public func lifelineFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let body = testOneInput else { return 0 }
    body(UnsafeRawBufferPointer(start: size == 0 ? nil : data, count: size))
    return 0
}

#if LIFELINE_FUZZ
@_extern(c, "LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif

public enum FuzzMain {
    /// Runs libFuzzer (fuzz builds) or replays the files and directories given as arguments.
    public static func run(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
        testOneInput = body
        #if LIFELINE_FUZZ
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, lifelineFuzzTestOneInput))
        #else
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.isEmpty || arguments.contains(where: { $0 == "-h" || $0 == "--help" }) {
            let name = CommandLine.arguments.first ?? "fuzz-target"
            print("""
                usage: \(name) FILE_OR_DIRECTORY...
                Replays each input once through the target's property checks (this build has no libFuzzer;
                scripts/fuzz builds the fuzzing one). Exits non-zero at the first violated property.
                """)
            exit(arguments.isEmpty ? 2 : 0)
        }
        var files: [String] = []
        for argument in arguments {
            guard collect(argument, into: &files) else {
                writeError("\(argument): cannot read\n")
                exit(2)
            }
        }
        for file in files {
            guard let bytes = readAll(file) else {
                writeError("\(file): cannot read\n")
                exit(2)
            }
            currentInput = file
            bytes.withUnsafeBytes { body($0) }
        }
        print("replayed \(files.count) input\(files.count == 1 ? "" : "s"): ok")
        exit(0)
        #endif
    }

    /// LIFELINE_FUZZ_VERBOSE=1: targets describe what each input did (for checking seeds).
    public static let verbose = getenv("LIFELINE_FUZZ_VERBOSE").map { String(cString: $0) == "1" } ?? false

    /// The file being replayed, for failure messages (nil under libFuzzer, which names it itself).
    nonisolated(unsafe) public private(set) static var currentInput: String?

    private static func collect(_ path: String, into files: inout [String]) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            files.append(path)
            return true
        }
        guard let directory = opendir(path) else { return false }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if !name.hasPrefix(".") { names.append(name) }
        }
        for name in names.sorted() {
            guard collect(path + "/" + name, into: &files) else { return false }
        }
        return true
    }

    private static func readAll(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 { return nil }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
        }
    }
}

/// Stops the process when a property does not hold, so that libFuzzer saves the input as a crash.
public func fuzzCheck(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() {
        fuzzFail(message(), file: file, line: line)
    }
}

public func fuzzFail(_ message: String, file: StaticString = #fileID, line: UInt = #line) -> Never {
    var text = "\(file):\(line): property violated: \(message)"
    if let input = FuzzMain.currentInput { text += "\n  input: \(input)" }
    writeError(text + "\n")
    abort()
}

/// Reads control values off the front of a fuzz input; past the end every read gives zero.
public struct FuzzBytes {
    public private(set) var bytes: UnsafeRawBufferPointer
    public private(set) var index = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public mutating func byte() -> UInt8 {
        guard self.index < self.bytes.count else { return 0 }
        defer { self.index += 1 }
        return self.bytes[self.index]
    }

    public mutating func uint16() -> Int {
        Int(self.byte()) << 8 | Int(self.byte())
    }

    /// Everything not read yet.
    public var rest: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: self.bytes[min(self.index, self.bytes.count)...])
    }
}

/// Cuts `count` bytes into chunks whose lengths cycle through `lengths` (0 is an empty chunk;
/// no lengths, or only zeros, means one byte per chunk). Returns the chunks' (start, end) pairs.
public func fuzzChunks(count: Int, lengths: [Int]) -> [(start: Int, end: Int)] {
    let lengths = lengths.contains(where: { $0 > 0 }) ? lengths : [1]
    var chunks: [(start: Int, end: Int)] = []
    var start = 0
    var next = 0
    while start < count {
        let end = min(count, start + lengths[next % lengths.count])
        chunks.append((start, end))
        start = end
        next += 1
    }
    return chunks
}

/// Writes to standard error unbuffered (the process may be about to abort).
public func writeError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let count = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if count <= 0 { return }
            offset += count
        }
    }
}
