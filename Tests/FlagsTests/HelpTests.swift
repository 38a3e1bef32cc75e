import Flags
import XCTest

final class HelpTests: XCTestCase {
    private let set = TestFlags.set

    func testHelpListsEveryFlagWithItsDefault() {
        let help = self.set.help(programName: "lifeline")
        XCTAssertTrue(help.hasPrefix("Usage: lifeline [--flag=value ...] [--flagfile=PATH ...]\n"), help)
        for spec in self.set.specs {
            let synopsis = spec.isBoolean ? "  --\(spec.name)\n" : "  --\(spec.name)=\(spec.valueName)\n"
            XCTAssertTrue(help.contains(synopsis), "missing \(synopsis) in\n\(help)")
        }
        XCTAssertTrue(help.contains("      Send a comment line to idle clients this often. (default: 15s)\n"), help)
        XCTAssertTrue(help.contains("(default: 127.0.0.1:9090)"), help)
        XCTAssertTrue(help.contains("(default: 4MiB)"), help)
        XCTAssertTrue(help.contains("      Validate the flags and exit. (default: false)\n"), help)
        XCTAssertTrue(help.contains("      Instance name. (default: \"\")\n"), help)
        XCTAssertTrue(help.contains("      Serve PREFIX from the origin URL. (repeatable)\n"), help)
        XCTAssertTrue(help.contains("      Event loop threads; one per core when not set.\n"), help)
        XCTAssertTrue(help.contains("  --log-format=text|json\n"), help)
    }

    func testHelpGroupsBySectionInDeclarationOrder() throws {
        let help = self.set.help(programName: "lifeline")
        let headings = help.split(separator: "\n").filter { !$0.hasPrefix(" ") && $0.hasSuffix(":") }
        XCTAssertEqual(headings, ["Listeners:", "Streams:", "General:", "Routing:", "Flag files:"])
        let streams = try XCTUnwrap(help.firstRange(of: "\nStreams:\n"))
        let general = try XCTUnwrap(help.firstRange(of: "\nGeneral:\n"))
        let heartbeat = try XCTUnwrap(help.firstRange(of: "--heartbeat="))
        XCTAssertTrue(streams.upperBound < heartbeat.lowerBound && heartbeat.upperBound < general.lowerBound)
    }

    func testHelpWrapsLongText() {
        let long = String(repeating: "word ", count: 60) + "https://example.com/" + String(repeating: "x", count: 120)
        let set = FlagSet([Flag("long", .string, default: "d", section: "S", help: long + "\nSecond paragraph.")])
        let help = set.help(programName: "p", usage: "Usage: p [flags]")
        XCTAssertTrue(help.hasPrefix("Usage: p [flags]\n"), help)
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false)
        for line in lines where !line.contains("xxxx") {
            XCTAssertLessThanOrEqual(line.count, 100, String(line))
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("      https://example.com/xxxx") }, "a long word gets a line of its own")
        XCTAssertTrue(help.contains("\n      Second paragraph. (default: d)\n"), help)
        XCTAssertGreaterThan(lines.filter { $0.hasPrefix("      word") }.count, 2)

        let narrow = set.help(programName: "p", width: 40)
        for line in narrow.split(separator: "\n").dropFirst() where !line.contains("xxxx") {
            XCTAssertLessThanOrEqual(line.count, 40, String(line))
        }
    }

    func testFlagfileSectionCanJoinAnExistingSection() {
        let set = FlagSet([Flag(boolean: "check", section: "General", help: "Check.")], flagfileSection: "General")
        XCTAssertEqual(set.sections.map(\.name), ["General"])
        XCTAssertEqual(set.sections[0].specs.map(\.name), ["check", "flagfile"])
    }

    func testMarkdownHasARowForEveryFlag() {
        let markdown = self.set.markdownReference()
        for spec in self.set.specs {
            XCTAssertTrue(markdown.contains("| `--\(spec.name)"), "missing --\(spec.name) in\n\(markdown)")
        }
        XCTAssertTrue(markdown.hasPrefix("## Listeners\n\n| Flag | Default | Description |\n| --- | --- | --- |\n"), markdown)
        XCTAssertTrue(
            markdown.contains("| `--heartbeat=DURATION` | `15s` | Send a comment line to idle clients this often. |\n"),
            markdown)
        XCTAssertTrue(markdown.contains("| `--log-format=text\\|json` | `text` | Log line format. |\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--check` | `false` | Validate the flags and exit. |\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--name=STRING` | `\"\"` | Instance name. |\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--threads=N` |  | Event loop threads; one per core when not set. |\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--route=PREFIX=URL` |  | Serve PREFIX from the origin URL. Repeatable. |\n"), markdown)
        for section in ["Listeners", "Streams", "General", "Routing", "Flag files"] {
            XCTAssertTrue(markdown.contains("## \(section)\n"), section)
        }
    }

    func testMarkdownKeepsEachFlagOnOneRow() {
        let set = FlagSet([
            Flag("mode", .oneOf(["a", "b"]), default: "a", section: "S", help: "First line.\nA | pipe."),
            Flag("tick", .string, default: "`x`", section: "S", help: ""),
        ])
        let markdown = set.markdownReference(headingLevel: 3)
        XCTAssertTrue(markdown.contains("### S\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--mode=a\\|b` | `a` | First line.<br>A \\| pipe. |\n"), markdown)
        XCTAssertTrue(markdown.contains("| `--tick=STRING` | `` `x` `` |  |\n"), markdown)
    }

    func testRoffReferenceHasAParagraphForEveryFlagAndEscapesMarkup() {
        let roff = self.set.roffReference()
        XCTAssertTrue(roff.hasPrefix(".SS Listeners\n.TP\n\\fB\\-\\-listen\\fR=\\fIHOST:PORT\\fR\n"), roff)
        XCTAssertTrue(roff.contains("\\fB\\-\\-check\\fR\nValidate the flags and exit. (default: false)\n"), roff)
        XCTAssertTrue(roff.contains("Serve PREFIX from the origin URL. (repeatable)\n"), roff)
        XCTAssertEqual(roff.components(separatedBy: ".TP\n").count - 1, self.set.specs.count)
        // Text that roff would take as markup stays text.
        let tricky = FlagSet([Flag("tricky", .string, default: "a b", section: "S",
                                   help: "Use `--x`, a\\b and … here.\n.TH not a request\n'neither")])
        let text = tricky.roffReference()
        XCTAssertTrue(text.contains("Use \\-\\-x, a\\eb and \\[u2026] here.\n.br\n\\&.TH not a request\n.br\n\\&'neither (default: \"a b\")\n"), text)
    }
}
