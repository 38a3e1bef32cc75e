/// `lifeline-bench merge A.json B.json ...`: one summary for a run split over processes with
/// `--shard`. Counts add up; latency and the other distributions (the storm's resume times too) are
/// merged from the histograms each summary carries, so the percentiles are those of the whole run;
/// the storm's first and last drop are the earliest and the latest of any shard.
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
                    // Keep a storm's planned moment even if the first shard had none (its counts
                    // are summed from every shard by `apply` below).
                    if total.storm == nil { total.storm = summary.storm }
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
