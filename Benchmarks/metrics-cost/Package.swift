// swift-tools-version:6.0
// Measures what counting an event costs on the data path: swift-metrics' Counter backed by
// swift-prometheus (one shared atomic per metric) against Lifeline's per-loop plain integers,
// from as many threads as the machine has cores. docs/operator-guide.md, "Metrics".
import PackageDescription

let package = Package(
    name: "metrics-cost",
    dependencies: [
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
    ],
    targets: [
        .executableTarget(
            name: "metrics-cost",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: [.unsafeFlags(["-Ounchecked"])]
        ),
    ]
)
