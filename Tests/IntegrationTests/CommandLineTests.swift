import Foundation
@testable import LifelineMain
import Server
import XCTest

/// The `lifeline` command as an operator meets it: flag files, `--check`, errors, help.
final class CommandLineTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeline-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: self.directory)
    }

    private func file(_ name: String, _ text: String) throws -> String {
        let url = self.directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// Runs the built binary; returns exit status, stdout and stderr.
    private func run(_ arguments: [String]) throws -> ProcessRunner.Result {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lifeline")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            XCTFail("lifeline binary not built at \(binary.path); run `swift build` first")
            return ProcessRunner.Result(status: -1, out: "", err: "")
        }
        return try ProcessRunner.run(binary.path, arguments)
    }

    func testCheckAcceptsAValidFlagFileAndPrintsTheEffectiveFlags() throws {
        let path = try self.file("ok.flags", """
            # a comment
            --listen=127.0.0.1:9000

            --route=/events=http://127.0.0.1:3000/stream
            --heartbeat=20s
            --replay-bytes=8MiB
            """)
        let result = try self.run(["--check", "--flagfile=\(path)", "--heartbeat=5s"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.contains("--heartbeat=5s"), "the command line wins over the file:\n\(result.out)")
        XCTAssertTrue(result.out.contains("--route=/events=http://127.0.0.1:3000/stream"), result.out)
    }

    func testEventLoopsFollowTheCPUsTheProcessMayUseAndTheThreadsFlag() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("lifeline")
        // Pinned to one CPU, as an operator does with taskset or a cpuset: one loop, not one per
        // machine core (which would take turns on that one CPU).
        let pinned = try ProcessRunner.run("/usr/bin/taskset", ["-c", "0", binary.path, "--check", "--route=/=http://127.0.0.1:3000"])
        XCTAssertEqual(pinned.status, 0, pinned.err)
        XCTAssertTrue(pinned.out.contains("event loops: 1;"), pinned.out)
        let explicit = try self.run(["--check", "--route=/=http://127.0.0.1:3000", "--threads=3"])
        XCTAssertEqual(explicit.status, 0, explicit.err)
        XCTAssertTrue(explicit.out.contains("event loops: 3;"), explicit.out)
        let automatic = try self.run(["--check", "--route=/=http://127.0.0.1:3000"])
        XCTAssertTrue(automatic.out.contains("event loops: \(EventLoopCount.resolve(requested: 0));"), automatic.out)
    }

    func testBadFlagFileNamesFileLineAndFlagAndReportsEveryError() throws {
        let path = try self.file("bad.flags", """
            --route=/events=http://127.0.0.1:3000/stream
            --heartbeat=fast
            --hartbeat=10s
            --replay-miss=sometimes
            """)
        let result = try self.run(["--check", "--flagfile=\(path)"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.err.contains("\(path):2: --heartbeat:"), result.err)
        XCTAssertTrue(result.err.contains("\(path):3: --hartbeat: unknown flag"), result.err)
        XCTAssertTrue(result.err.contains("did you mean --heartbeat?"), result.err)
        XCTAssertTrue(result.err.contains("\(path):4: --replay-miss:"), result.err)
        XCTAssertTrue(result.err.contains("upstream"), "lists the choices: \(result.err)")
    }

    func testValuesThatWouldFailAtRunTimeAreRefusedByCheck() throws {
        // --max-event-size=0 used to pass --check and trap on the first stream.
        let path = try self.file("range.flags", """
            --upstream=http://127.0.0.1:3000
            --max-event-size=0
            --client-buffer=0
            --heartbeat=1ns
            --reconnect-min=0
            --upstream-connect-timeout=0
            """)
        let result = try self.run(["--check", "--flagfile=\(path)"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.err.contains("\(path):2: --max-event-size: "), result.err)
        XCTAssertTrue(result.err.contains("\(path):3: --client-buffer: "), result.err)
        XCTAssertTrue(result.err.contains("\(path):4: --heartbeat: "), result.err)
        XCTAssertTrue(result.err.contains("\(path):5: --reconnect-min: "), result.err)
        XCTAssertTrue(result.err.contains("\(path):6: --upstream-connect-timeout: "), result.err)
        // And at start, the same way.
        let start = try self.run(["--flagfile=\(path)", "--listen=127.0.0.1:0"])
        XCTAssertNotEqual(start.status, 0)
        XCTAssertTrue(start.err.contains("\(path):2: --max-event-size: "), start.err)
    }

    func testBadValueStopsStartUp() throws {
        let result = try self.run(["--route=events=http://x", "--listen=127.0.0.1:0"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.err.contains("command line: --route: "), result.err)
        XCTAssertTrue(result.err.contains("must start with /"), result.err)
        XCTAssertFalse(result.out.contains("listening"), "the process does not start")
    }

    func testCrossFlagChecks() throws {
        let path = try self.file("cross.flags", "--upstream=http://127.0.0.1:3000\n--reconnect-min=5s\n--reconnect-max=1s\n")
        let result = try self.run(["--check", "--flagfile=\(path)"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.err.contains("\(path):2: --reconnect-min: must not be more than --reconnect-max"), result.err)
        let noRoute = try self.run(["--check"])
        XCTAssertEqual(noRoute.status, 1)
        XCTAssertTrue(noRoute.err.contains("no route"), noRoute.err)
    }

    func testHelpListsEveryFlag() throws {
        let result = try self.run(["--help"])
        XCTAssertEqual(result.status, 0)
        for spec in LifelineFlags.set.specs {
            XCTAssertTrue(result.out.contains("--\(spec.name)"), "--help lacks --\(spec.name)")
        }
    }

    func testFlagReferenceInDocsIsCurrent() throws {
        let docs = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/flags.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        XCTAssertEqual(text, Lifeline.flagReference(), "docs/flags.md is stale: run `lifeline flags-reference > docs/flags.md`")
    }

    /// lifeline.1 (shipped by the packages) comes from the flag table: every flag is on it, it
    /// names this version, and groff reads it without a warning.
    func testManPageListsEveryFlagAndRendersCleanly() throws {
        let result = try self.run(["man-page"])
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertEqual(result.out, Lifeline.manPage())
        XCTAssertTrue(result.out.hasPrefix(".TH LIFELINE 1 \"\" \"lifeline \(LifelineVersion.current)\""), result.out)
        for spec in LifelineFlags.set.specs + DemoOriginFlags.set.specs {
            let name = "\\fB\\-\\-" + spec.name.replacingOccurrences(of: "-", with: "\\-") + "\\fR"
            XCTAssertTrue(result.out.contains(name), "lifeline.1 lacks --\(spec.name)")
        }
        let page = try self.file("lifeline.1", result.out)
        let groff = try ProcessRunner.run("/usr/bin/groff", ["-man", "-ww", "-z", "-Tutf8", page])
        XCTAssertEqual(groff.status, 0, groff.err)
        XCTAssertEqual(groff.err, "", "groff warns about lifeline.1")
    }

    func testSampleFlagFileIsValid() throws {
        let sample = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/lifeline.flags")
        let result = try self.run(["--check", "--flagfile=\(sample.path)"])
        XCTAssertEqual(result.status, 0, result.err)
    }
}
