import Flags
import XCTest

final class ValueParserTests: XCTestCase {
    private func message<T>(_ parser: FlagValueParser<T>, _ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        switch parser.parse(text) {
        case .success(let value):
            XCTFail("\(text) parsed as \(value)", file: file, line: line)
            return nil
        case .failure(let error):
            return error.message
        }
    }

    func testInteger() throws {
        XCTAssertEqual(try FlagValueParser.integer.parse("42").get(), 42)
        XCTAssertEqual(try FlagValueParser.integer.parse("-7").get(), -7)
        XCTAssertEqual(self.message(.integer, "4x"), "expected an integer, got \"4x\"")
        XCTAssertEqual(self.message(.integer, ""), "expected an integer, got \"\"")
        XCTAssertEqual(self.message(.integer, "1.5"), "expected an integer, got \"1.5\"")
        XCTAssertEqual(self.message(.integer, "99999999999999999999"), "\"99999999999999999999\" is too large")
    }

    func testIntegerRanges() throws {
        XCTAssertEqual(try FlagValueParser.integer(in: 1...64).parse("64").get(), 64)
        XCTAssertEqual(try FlagValueParser.integer(in: 1...64).parse("1").get(), 1)
        XCTAssertEqual(self.message(.integer(in: 1...64), "0"), "must be between 1 and 64, got 0")
        XCTAssertEqual(self.message(.integer(in: 1...64), "65"), "must be between 1 and 64, got 65")
        XCTAssertEqual(self.message(.integer(in: 1...64), "x"), "expected an integer, got \"x\"")
        XCTAssertEqual(try FlagValueParser.integer(in: 0...).parse("123456").get(), 123_456)
        XCTAssertEqual(self.message(.integer(in: 0...), "-1"), "must be at least 0, got -1")
    }

    func testBoolean() throws {
        XCTAssertEqual(try FlagValueParser.boolean.parse("true").get(), true)
        XCTAssertEqual(try FlagValueParser.boolean.parse("false").get(), false)
        XCTAssertEqual(self.message(.boolean, "yes"), "expected true or false, got \"yes\"")
        XCTAssertEqual(self.message(.boolean, "TRUE"), "expected true or false, got \"TRUE\"")
        XCTAssertEqual(self.message(.boolean, ""), "expected true or false, got \"\"")
    }

    func testString() throws {
        XCTAssertEqual(try FlagValueParser.string.parse("").get(), "")
        XCTAssertEqual(try FlagValueParser.string.parse("a # b = \"c\"").get(), "a # b = \"c\"")
    }

    func testOneOfStrings() throws {
        let parser = FlagValueParser.oneOf(["debug", "info", "warning"])
        XCTAssertEqual(parser.valueName, "debug|info|warning")
        XCTAssertEqual(try parser.parse("info").get(), "info")
        XCTAssertEqual(self.message(parser, "Info"), "must be one of debug, info, warning; got \"Info\"")
    }

    func testOneOfEnum() throws {
        let parser = FlagValueParser.oneOf(TestFlags.LogFormat.self)
        XCTAssertEqual(parser.valueName, "text|json")
        XCTAssertEqual(try parser.parse("json").get(), .json)
        XCTAssertEqual(self.message(parser, "xml"), "must be one of text, json; got \"xml\"")
    }

    func testCustom() throws {
        let route = try TestFlags.route.parse("/events=http://origin:8000/sse").get()
        XCTAssertEqual(route, TestFlags.Route(prefix: "/events", origin: "http://origin:8000/sse"))
        XCTAssertEqual(self.message(TestFlags.route, "events"), "expected PREFIX=URL, got \"events\"")
        XCTAssertEqual(self.message(TestFlags.route, "events=x"), "prefix must start with \"/\"")
        XCTAssertEqual(TestFlags.route.valueName, "PREFIX=URL")
    }

    func testCustomReportsOtherErrorsByDescription() {
        struct Oops: Error, CustomStringConvertible { var description: String { "no good" } }
        let parser = FlagValueParser<Int>.custom(valueName: "X") { _ in throw Oops() }
        XCTAssertEqual(self.message(parser, "1"), "no good")
    }

    func testMapAndValidate() throws {
        let atLeastOneSecond = FlagValueParser.duration.validate { $0 >= .seconds(1) ? nil : "must be at least 1s" }
        XCTAssertEqual(try atLeastOneSecond.parse("2s").get(), .seconds(2))
        XCTAssertEqual(self.message(atLeastOneSecond, "10ms"), "must be at least 1s")
        XCTAssertEqual(self.message(atLeastOneSecond, "10"), FlagDuration.parse("10").failureMessage)
        XCTAssertEqual(atLeastOneSecond.valueName, "DURATION")

        let millis = FlagValueParser.duration.map(valueName: "MS") { $0.nanoseconds / 1_000_000 }
        XCTAssertEqual(try millis.parse("1.5s").get(), 1500)
        XCTAssertEqual(millis.valueName, "MS")

        // validate keeps a boolean a boolean, so `--flag` alone still works.
        let set = FlagSet([Flag("strict", FlagValueParser.boolean.validate { _ in nil }, default: "false", section: "S", help: "")])
        XCTAssertEqual(try set.parsed(["--strict"]).value("strict", as: Bool.self), true)
    }
}

extension Result {
    var failureMessage: String? {
        if case .failure(let error) = self { return "\(error)" }
        return nil
    }
}
