import Flags
import XCTest

final class FlagListenAddressTests: XCTestCase {
    private func message(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        switch FlagListenAddress.parse(text) {
        case .success(let value):
            XCTFail("\(text) parsed as \(value)", file: file, line: line)
            return nil
        case .failure(let error):
            return error.message
        }
    }

    func testAcceptedForms() throws {
        let cases: [(String, String, Int, String)] = [
            ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
            ("[::1]:8080", "::1", 8080, "[::1]:8080"),
            ("[::]:443", "::", 443, "[::]:443"),
            ("[fe80::1%eth0]:80", "fe80::1%eth0", 80, "[fe80::1%eth0]:80"),
            (":8080", "", 8080, ":8080"),
            ("localhost:0", "localhost", 0, "localhost:0"),
            ("edge-1.example.com:65535", "edge-1.example.com", 65535, "edge-1.example.com:65535"),
        ]
        for (text, host, port, description) in cases {
            let address = try FlagListenAddress.parse(text).get()
            XCTAssertEqual(address.host, host, text)
            XCTAssertEqual(address.port, port, text)
            XCTAssertEqual(address.description, description, text)
        }
        XCTAssertTrue(try FlagListenAddress.parse(":1").get().isAnyHost)
        XCTAssertFalse(try FlagListenAddress.parse("a:1").get().isAnyHost)
    }

    func testRejections() {
        XCTAssertEqual(
            self.message("8080"),
            "invalid address \"8080\": expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or :8080")
        XCTAssertEqual(self.message("host:"), "invalid address \"host:\": missing port")
        XCTAssertEqual(self.message("host:65536"), "invalid address \"host:65536\": port must be between 0 and 65535, got 65536")
        XCTAssertEqual(
            self.message("host:99999999999999999999"),
            "invalid address \"host:99999999999999999999\": port must be between 0 and 65535, got 99999999999999999999")
        XCTAssertEqual(self.message("host:-1"), "invalid address \"host:-1\": port must be a number, got \"-1\"")
        XCTAssertEqual(self.message("host:http"), "invalid address \"host:http\": port must be a number, got \"http\"")
        XCTAssertEqual(self.message("::1:8080"), "invalid address \"::1:8080\": IPv6 addresses must be in brackets, e.g. [::1]:8080")
        XCTAssertEqual(self.message("[::1:8080"), "invalid address \"[::1:8080\": missing \"]\" after the IPv6 address")
        XCTAssertEqual(self.message("[::1]8080"), "invalid address \"[::1]8080\": expected :PORT after \"]\"")
        XCTAssertEqual(self.message("[1.2.3.4]:80"), "invalid address \"[1.2.3.4]:80\": \"1.2.3.4\" is not an IPv6 address")
        XCTAssertEqual(self.message("my host:80"), "invalid address \"my host:80\": \"my host\" is not a host name or IP address")
        XCTAssertEqual(self.message("http://x:80"), "invalid address \"http://x:80\": expected HOST:PORT, not a URL")
    }
}
