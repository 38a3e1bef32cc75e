import Flags
import XCTest

final class CommandLineTests: XCTestCase {
    private let set = TestFlags.set

    func testDefaults() throws {
        let flags = try self.set.parsed([])
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(15))
        XCTAssertEqual(flags[TestFlags.listen], FlagListenAddress(host: "", port: 8080))
        XCTAssertEqual(flags[TestFlags.replayBytes], 4 << 20)
        XCTAssertEqual(flags[TestFlags.check], false)
        XCTAssertEqual(flags[TestFlags.verbose], true)
        XCTAssertEqual(flags[TestFlags.logFormat], .text)
        XCTAssertEqual(flags[TestFlags.name], "")
        XCTAssertNil(flags[TestFlags.threads])
        XCTAssertEqual(flags[TestFlags.routes], [])
        XCTAssertEqual(flags.source(of: "heartbeat"), .defaultValue)
        XCTAssertNil(flags.source(of: "threads"))
        XCTAssertFalse(flags.isSet("heartbeat"))
        XCTAssertEqual(flags.positional, [])
        XCTAssertEqual(flags.flagFiles, [])
    }

    func testValueForms() throws {
        let flags = try self.set.parsed([
            "--heartbeat=5s", "--threads", "4", "--log-format=json", "--listen", "[::1]:1234", "--name=",
        ])
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(5))
        XCTAssertEqual(flags[TestFlags.threads], 4)
        XCTAssertEqual(flags[TestFlags.logFormat], .json)
        XCTAssertEqual(flags[TestFlags.listen].description, "[::1]:1234")
        XCTAssertEqual(flags[TestFlags.name], "")
        XCTAssertTrue(flags.isSet("name"))
        XCTAssertEqual(flags.source(of: "heartbeat"), .commandLine)
        XCTAssertEqual(flags.text(of: "heartbeat"), "5s")
        XCTAssertEqual(flags.text(of: "client-retry"), "2s")
    }

    func testValueMayContainEqualsAndHash() throws {
        let flags = try self.set.parsed(["--route=/a=http://o:1/p?q=1#frag", "--name", "x=y"])
        XCTAssertEqual(flags[TestFlags.routes], [TestFlags.Route(prefix: "/a", origin: "http://o:1/p?q=1#frag")])
        XCTAssertEqual(flags[TestFlags.name], "x=y")
    }

    func testBooleans() throws {
        XCTAssertEqual(try self.set.parsed(["--check"])[TestFlags.check], true)
        XCTAssertEqual(try self.set.parsed(["--check=true"])[TestFlags.check], true)
        XCTAssertEqual(try self.set.parsed(["--check=false"])[TestFlags.check], false)
        XCTAssertEqual(try self.set.parsed(["--verbose=false"])[TestFlags.verbose], false)
        // A boolean never takes the next argument as its value.
        let flags = try self.set.parsed(["--check", "false"])
        XCTAssertEqual(flags[TestFlags.check], true)
        XCTAssertEqual(flags.positional, ["false"])
    }

    func testLaterWinsAndRepeatableAccumulates() throws {
        let flags = try self.set.parsed([
            "--heartbeat=1s", "--route=/a=x", "--heartbeat=2s", "--route=/b=y", "--route", "/c=z",
        ])
        XCTAssertEqual(flags[TestFlags.heartbeat], .seconds(2))
        XCTAssertEqual(flags[TestFlags.routes].map(\.prefix), ["/a", "/b", "/c"])
        XCTAssertEqual(flags.sources(of: "route"), [.commandLine, .commandLine, .commandLine])
        XCTAssertEqual(flags.values("heartbeat", as: FlagDuration.self), [.seconds(1), .seconds(2)])
    }

    func testPositionalArguments() throws {
        let flags = try self.set.parsed(["demo-origin", "--listen=:9000", "extra", "-", "--", "--check", "-x"])
        XCTAssertEqual(flags.positional, ["demo-origin", "extra", "-", "--check", "-x"])
        XCTAssertEqual(flags[TestFlags.listen].port, 9000)
        XCTAssertEqual(flags[TestFlags.check], false)
    }

    func testAccessByName() throws {
        let flags = try self.set.parsed(["--threads=8"])
        XCTAssertEqual(flags.value("threads", as: Int.self), 8)
        XCTAssertEqual(flags.value("heartbeat") as FlagDuration?, .seconds(15))
        XCTAssertEqual(flags.values("route", as: TestFlags.Route.self), [])
    }

    func testRepeatableDefaultIsReplacedNotExtended() throws {
        let origins = RepeatedFlag("origin", .string, default: "*", section: "S", help: "")
        let set = FlagSet([origins])
        XCTAssertEqual(try set.parsed([])[origins], ["*"])
        XCTAssertEqual(try set.parsed(["--origin=a", "--origin=b"])[origins], ["a", "b"])
    }

    func testCommandLineErrors() {
        XCTAssertEqual(
            self.set.errorLines(["--heartbeat=fast"]),
            ["command line: --heartbeat: invalid duration \"fast\": expected a number and a unit (ns, us, ms, s, m, h), e.g. 500ms, 15s or 1m30s"])
        XCTAssertEqual(
            self.set.errorLines(["--threads"]),
            ["command line: --threads: missing value (expected --threads=N or --threads N)"])
        XCTAssertEqual(
            self.set.errorLines(["--threads", "--check"]),
            ["command line: --threads: missing value (expected --threads=N or --threads N)"])
        XCTAssertEqual(
            self.set.errorLines(["--check=yes"]),
            ["command line: --check: expected true or false, got \"yes\""])
        XCTAssertEqual(
            self.set.errorLines(["--=5"]),
            ["command line: expected --flag=value, got \"--=5\""])
        XCTAssertEqual(
            self.set.errorLines(["-check"]),
            ["command line: -check: unknown option; flags start with two dashes; did you mean --check?"])
        XCTAssertEqual(
            self.set.errorLines(["-q"]),
            ["command line: -q: unknown option; flags start with two dashes"])
        XCTAssertEqual(
            self.set.errorLines(["--flagfile="]),
            ["command line: --flagfile: missing value (expected --flagfile=PATH)"])
        XCTAssertEqual(
            self.set.errorLines(["--log-format=xml"]),
            ["command line: --log-format: must be one of text, json; got \"xml\""])
    }

    func testUnknownFlagSuggestions() {
        XCTAssertEqual(
            self.set.errorLines(["--hearbteat=1s"]),
            ["command line: --hearbteat: unknown flag; did you mean --heartbeat?"])
        XCTAssertEqual(
            self.set.errorLines(["--heartbeats=1s"]),
            ["command line: --heartbeats: unknown flag; did you mean --heartbeat?"])
        XCTAssertEqual(
            self.set.errorLines(["--admin-listn=:1"]),
            ["command line: --admin-listn: unknown flag; did you mean --admin-listen?"])
        XCTAssertEqual(
            self.set.errorLines(["--replay"]),
            ["command line: --replay: unknown flag; did you mean --replay-bytes?"])
        XCTAssertEqual(
            self.set.errorLines(["--flagfil=x"]),
            ["command line: --flagfil: unknown flag; did you mean --flagfile?"])
        XCTAssertEqual(
            self.set.errorLines(["--no-check"]),
            ["command line: --no-check: unknown flag; to turn off --check, write --check=false"])
        XCTAssertEqual(
            self.set.errorLines(["--completely-different"]),
            ["command line: --completely-different: unknown flag"])
    }

    func testAllErrorsAreCollectedInOrder() {
        XCTAssertEqual(
            self.set.errorLines(["--heartbeat=x", "--bogus", "--threads=0", "--replay-bytes=1.5MiB"]),
            [
                "command line: --heartbeat: invalid duration \"x\": expected a number and a unit (ns, us, ms, s, m, h), e.g. 500ms, 15s or 1m30s",
                "command line: --bogus: unknown flag",
                "command line: --threads: must be between 1 and 256, got 0",
                "command line: --replay-bytes: invalid size \"1.5MiB\": must be a whole number (e.g. 1536KiB, not 1.5MiB)",
            ])
    }

    func testCrossFlagErrors() throws {
        let flags = try self.set.parsed(["--client-retry-jitter=5s"])
        let error = flags.error(at: TestFlags.clientRetryJitter, "must be less than --client-retry")
        XCTAssertEqual(error.description, "command line: --client-retry-jitter: must be less than --client-retry")
        // A value left at its default has no place to point at.
        XCTAssertEqual(
            flags.error(at: "client-retry", "must be more than --client-retry-jitter").description,
            "--client-retry: must be more than --client-retry-jitter")
        XCTAssertEqual(
            FlagErrors([error, error]).description,
            "command line: --client-retry-jitter: must be less than --client-retry\n"
                + "command line: --client-retry-jitter: must be less than --client-retry")
    }
}
