/// `lifeline-bench merge A.json B.json ...`: one summary for a run split over processes with
/// `--shard`. Counts add up; latency and the other distributions are merged from the histograms
/// each summary carries, so the percentiles are those of the whole run.
enum MergeCommand {
    static func run(arguments: [String]) -> Int32 {
        if arguments.isEmpty || arguments.contains("--help") || arguments.contains("-h") {
            print("Usage: lifeline-bench merge SUMMARY.json ...   (the JSON of `lifeline-bench load` runs)")
            return arguments.isEmpty ? 2 : 0
        }
        var merged: LoadSummary?
        var counters = LoadCounters()
        for path in arguments {
            do {
                let summary = try LoadSummary.read(json: try readFile(path))
                counters.merge(try summary.counters())
                if var total = merged {
                    total.connections += summary.connections
                    total.subscriptions += summary.subscriptions
                    total.elapsedS = max(total.elapsedS, summary.elapsedS)
                    merged = total
                } else {
                    merged = summary
                }
            } catch {
                printError("lifeline-bench merge: \(path): \(error)")
                return 2
            }
        }
        guard var total = merged else { return 2 }
        total.shard = "merged \(arguments.count)"
        total.apply(counters)
        printFlushed(total.json())
        return 0
    }
}
