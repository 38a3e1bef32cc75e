import Flags
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class FlagFileTests: XCTestCase {
    private let set = TestFlags.set

    func testCommentsBlanksAndWhitespace() throws {
        let file = """
            # Lifeline configuration

              --heartbeat=5s   \t
            \t# indented comment
            --check
            --verbose=false

            --name=edge # not a comment: values may contain '#'
            """
        let flags = try self.set.parsed(["--flagfile=a.flags"], files: ["a.flags": file])
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(5))
        XCTAssertEqual(flags[TestFlags.check], true)
        XCTAssertEqual(flags[TestFlags.verbose], false)
        XCTAssertEqual(flags[TestFlags.name], "edge # not a comment: values may contain '#'")
        XCTAssertEqual(flags.source(of: "heartbeat"), .file(path: "a.flags", line: 3))
        XCTAssertEqual(flags.source(of: "check"), .file(path: "a.flags", line: 5))
        XCTAssertEqual(flags.flagFiles, ["a.flags"])
    }

    func testLineEndingsAndByteOrderMark() throws {
        let file = "\u{FEFF}--heartbeat=1s\r\n--threads=3\r--check\n"
        let flags = try self.set.parsed(["--flagfile", "a.flags"], files: ["a.flags": file])
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(1))
        XCTAssertEqual(flags[TestFlags.threads], 3)
        XCTAssertEqual(flags[TestFlags.check], true)
        XCTAssertEqual(flags.source(of: "check"), .file(path: "a.flags", line: 3))
    }

    func testLaterWinsWithinAndAcrossFiles() throws {
        let files = [
            "a.flags": "--heartbeat=1s\n--heartbeat=2s\n--threads=2\n",
            "b.flags": "--heartbeat=3s\n",
        ]
        let flags = try self.set.parsed(["--flagfile=a.flags", "--flagfile=b.flags"], files: files)
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(3))
        XCTAssertEqual(flags.source(of: "heartbeat"), .file(path: "b.flags", line: 1))
        XCTAssertEqual(flags[TestFlags.threads], 2)
        XCTAssertEqual(flags.flagFiles, ["a.flags", "b.flags"])
    }

    func testCommandLineWinsOverFilesWhereverItAppears() throws {
        let files = ["a.flags": "--heartbeat=1s\n--check=true\n"]
        let before = try self.set.parsed(["--heartbeat=9s", "--check=false", "--flagfile=a.flags"], files: files)
        XCTAssertEqual(before[TestFlags.heartbeat], .seconds(9))
        XCTAssertEqual(before[TestFlags.check], false)
        XCTAssertEqual(before.source(of: "heartbeat"), .commandLine)
        let after = try self.set.parsed(["--flagfile=a.flags", "--heartbeat=9s"], files: files)
        XCTAssertEqual(after[TestFlags.heartbeat], .seconds(9))
    }

    func testRepeatableFlagsCollectFilesFirstThenCommandLine() throws {
        let files = [
            "a.flags": "--route=/a=1\n--route=/b=2\n",
            "b.flags": "--route=/c=3\n",
        ]
        let flags = try self.set.parsed(
            ["--route=/cli=0", "--flagfile=a.flags", "--route=/cli2=0", "--flagfile=b.flags"], files: files)
        XCTAssertEqual(flags[TestFlags.routes].map(\.prefix), ["/a", "/b", "/c", "/cli", "/cli2"])
        XCTAssertEqual(
            flags.sources(of: "route"),
            [
                .file(path: "a.flags", line: 1), .file(path: "a.flags", line: 2), .file(path: "b.flags", line: 1),
                .commandLine, .commandLine,
            ])
        XCTAssertEqual(
            flags.error(at: "route", index: 1, "duplicate prefix").description,
            "a.flags:2: --route: duplicate prefix")
    }

    func testNestedFlagFilesResolveAgainstTheIncludingFile() throws {
        let files = [
            "/etc/lifeline/main.flags": "--heartbeat=1s\n--flagfile=routes.flags\n--threads=2\n",
            "/etc/lifeline/routes.flags": "--route=/a=x\n--flagfile=../shared/common.flags\n",
            "/etc/lifeline/../shared/common.flags": "--heartbeat=7s\n--flagfile=/abs/last.flags\n",
            "/abs/last.flags": "--name=last\n",
        ]
        let flags = try self.set.parsed(["--flagfile=/etc/lifeline/main.flags"], files: files)
        // Values apply in reading order: the included file's heartbeat (line 2) replaces line 1.
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(7))
        XCTAssertEqual(flags.source(of: "heartbeat"), .file(path: "/etc/lifeline/../shared/common.flags", line: 1))
        XCTAssertEqual(flags[TestFlags.threads], 2)
        XCTAssertEqual(flags[TestFlags.name], "last")
        XCTAssertEqual(flags[TestFlags.routes].map(\.prefix), ["/a"])
        XCTAssertEqual(
            flags.flagFiles,
            ["/etc/lifeline/main.flags", "/etc/lifeline/routes.flags", "/etc/lifeline/../shared/common.flags", "/abs/last.flags"])
    }

    func testRelativeIncludeFromRelativeFile() throws {
        let files = ["conf/main.flags": "--flagfile=more.flags\n", "conf/more.flags": "--threads=5\n"]
        XCTAssertEqual(try self.set.parsed(["--flagfile=conf/main.flags"], files: files)[TestFlags.threads], 5)
    }

    func testDiamondIncludeIsNotACycle() throws {
        let files = [
            "a.flags": "--flagfile=common.flags\n--flagfile=b.flags\n",
            "b.flags": "--flagfile=./common.flags\n",
            "common.flags": "--route=/c=1\n",
        ]
        let flags = try self.set.parsed(["--flagfile=a.flags"], files: files)
        XCTAssertEqual(flags[TestFlags.routes].count, 2)
    }

    func testIncludeCycles() {
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=a.flags"], files: ["a.flags": "--check\n--flagfile=a.flags\n"]),
            ["a.flags:2: --flagfile: flag files include each other: a.flags -> a.flags"])
        let files = [
            "dir/a.flags": "--flagfile=b.flags\n",
            "dir/b.flags": "# comment\n--flagfile=../dir/a.flags\n",
        ]
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=dir/a.flags"], files: files),
            ["dir/b.flags:2: --flagfile: flag files include each other: dir/a.flags -> dir/b.flags -> dir/../dir/a.flags"])
    }

    func testMissingFiles() {
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=nope.flags"]),
            ["nope.flags: cannot read: No such file or directory"])
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=conf/a.flags"], files: ["conf/a.flags": "\n--flagfile=gone.flags\n"]),
            ["conf/a.flags:2: --flagfile: conf/gone.flags: cannot read: No such file or directory"])
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=a.flags"], files: ["a.flags": "--flagfile=\n--flagfile\n"]),
            [
                "a.flags:1: --flagfile: missing value (expected --flagfile=PATH)",
                "a.flags:2: --flagfile: missing value (expected --flagfile=PATH)",
            ])
    }

    func testLineErrorsNameFileAndLine() {
        let file = """
            # header
            heartbeat=5s
            --heartbeat 5s
            --heartbeat = 5s
            --threads
            --threads=many
            --hartbeat=5s
            -check
            --
            --listen=8080
            --check=maybe
            --heartbeat=5s
            """
        XCTAssertEqual(
            self.set.errorLines(["--flagfile=x.flags"], files: ["x.flags": file]),
            [
                "x.flags:2: expected --flag=value, got \"heartbeat=5s\"",
                "x.flags:3: expected --flag=value (no spaces around \"=\"), got \"--heartbeat 5s\"",
                "x.flags:4: expected --flag=value (no spaces around \"=\"), got \"--heartbeat = 5s\"",
                "x.flags:5: --threads: missing value (expected --threads=N)",
                "x.flags:6: --threads: expected an integer, got \"many\"",
                "x.flags:7: --hartbeat: unknown flag; did you mean --heartbeat?",
                "x.flags:8: expected --flag=value, got \"-check\"",
                "x.flags:9: expected --flag=value, got \"--\"",
                "x.flags:10: --listen: invalid address \"8080\": expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or :8080",
                "x.flags:11: --check: expected true or false, got \"maybe\"",
            ])
    }

    func testErrorsFromFilesAndCommandLineAreAllCollectedInOrder() {
        let files = [
            "a.flags": "--heartbeat=1\n--flagfile=b.flags\n--threads=0\n",
            "b.flags": "--bogus=1\n",
        ]
        XCTAssertEqual(
            self.set.errorLines(["--threads=x", "--flagfile=a.flags", "--flagfile=missing.flags", "--name"], files: files),
            [
                "command line: --threads: expected an integer, got \"x\"",
                "a.flags:1: --heartbeat: invalid duration \"1\": missing unit (ns, us, ms, s, m, h), e.g. 1s; only 0 may omit it",
                "b.flags:1: --bogus: unknown flag",
                "a.flags:3: --threads: must be between 1 and 256, got 0",
                "missing.flags: cannot read: No such file or directory",
                "command line: --name: missing value (expected --name=STRING or --name STRING)",
            ])
    }

    func testCrossFlagErrorPointsAtTheFileLine() throws {
        let files = ["a.flags": "\n--client-retry=1s\n--client-retry-jitter=5s\n"]
        let flags = try self.set.parsed(["--flagfile=a.flags"], files: files)
        XCTAssertEqual(
            flags.error(at: "client-retry-jitter", "must be less than --client-retry").description,
            "a.flags:3: --client-retry-jitter: must be less than --client-retry")
    }

    func testPositionalArgumentsWithFlagFiles() throws {
        let flags = try self.set.parsed(
            ["demo-origin", "--flagfile=a.flags", "--listen=:7000"], files: ["a.flags": "--listen=:6000\n"])
        XCTAssertEqual(flags.positional, ["demo-origin"])
        XCTAssertEqual(flags[TestFlags.listen].port, 7000)
    }

    func testEffectiveFlagsCanBeReadBack() throws {
        let files = ["a.flags": "--route=/a=http://o/#x\n--heartbeat=2s\n--heartbeat=3s\n"]
        let flags = try self.set.parsed(["--flagfile=a.flags", "--threads=4"], files: files)
        let effective = flags.effectiveFlags()
        XCTAssertTrue(effective.contains("# a.flags:3\n--heartbeat=3s\n"), effective)
        XCTAssertFalse(effective.contains("--heartbeat=2s"), effective)
        XCTAssertTrue(effective.contains("# command line\n--threads=4\n"), effective)
        XCTAssertTrue(effective.contains("# default\n--client-retry=2s\n"), effective)
        XCTAssertTrue(effective.contains("# a.flags:1\n--route=/a=http://o/#x\n"), effective)
        XCTAssertFalse(effective.contains("flagfile"), effective)

        let reread = try self.set.parsed(["--flagfile=effective.flags"], files: ["effective.flags": effective])
        for spec in self.set.specs where spec.name != FlagSet.flagfileName {
            XCTAssertEqual(reread.text(of: spec.name), flags.text(of: spec.name), spec.name)
        }
        XCTAssertEqual(reread[TestFlags.routes], flags[TestFlags.routes])
    }

    func testEffectiveFlagsShowACredentialAsTheFlagSays() throws {
        let secret = OptionalFlag(
            "store", FlagValueParser.custom(valueName: "URL") { $0 }.validate { $0.isEmpty ? "empty" : nil }
                .displayed(as: { $0.split(separator: "hunter2", omittingEmptySubsequences: false).joined(separator: "***") }),
            section: "Test", help: "A URL that may hold a password.")
        let set = FlagSet([secret])
        let flags = try set.parsed(["--store=redis://u:hunter2@h:1"])
        XCTAssertEqual(flags[secret], "redis://u:hunter2@h:1", "the value itself is untouched")
        XCTAssertTrue(flags.effectiveFlags().contains("--store=redis://u:***@h:1\n"), flags.effectiveFlags())
        XCTAssertFalse(flags.effectiveFlags().contains("hunter2"))
    }

    func testRealFilesOnDisk() throws {
        let directory = "/tmp/flags-tests-\(UInt64.random(in: 0...UInt64.max))"
        XCTAssertEqual(mkdir(directory, 0o700), 0)
        defer {
            for name in ["main.flags", "included.flags"] { unlink("\(directory)/\(name)") }
            rmdir(directory)
        }
        try write("\(directory)/main.flags", "# real file\n--heartbeat=250ms\n--flagfile=included.flags\n")
        try write("\(directory)/included.flags", "--route=/x=http://o:1/\n")

        let flags = try TestFlags.set.parse(arguments: ["--flagfile=\(directory)/main.flags"]).get()
        XCTAssertEqual(flags[TestFlags.heartbeat], .milliseconds(250))
        XCTAssertEqual(flags[TestFlags.routes].map(\.prefix), ["/x"])
        XCTAssertEqual(flags.source(of: "route"), .file(path: "\(directory)/included.flags", line: 1))

        guard case .failure(let errors) = TestFlags.set.parse(arguments: ["--flagfile=\(directory)/absent.flags"]) else {
            return XCTFail("a missing file must fail")
        }
        XCTAssertEqual(errors.description, "\(directory)/absent.flags: cannot read: No such file or directory")

        XCTAssertThrowsError(try FlagFileReader.readFile(directory)) { error in
            XCTAssertEqual("\(error)", "Is a directory")
        }
    }

    private func write(_ path: String, _ contents: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let bytes = Array(contents.utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, bytes.count)
    }
}
