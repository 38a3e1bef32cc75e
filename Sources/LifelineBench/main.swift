#if canImport(Glibc)
import Glibc
#endif

// `lifeline-bench`: the SSE load client and benchmark origin of issue 4.
let usage = """
    Usage: lifeline-bench origin --listen=127.0.0.1:PORT --streams=N --rate=R [--payload=BYTES] ...
           lifeline-bench load --url=http://127.0.0.1:PORT/s/{k} --connections=N --streams=S [--duration=30s] ...
           lifeline-bench merge SUMMARY.json ...
    `lifeline-bench origin --help` and `lifeline-bench load --help` list every flag.
    """

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "origin":
    exit(await OriginCommand.run(arguments: Array(arguments.dropFirst())))
case "load":
    exit(await LoadCommand.run(arguments: Array(arguments.dropFirst())))
case "merge":
    exit(MergeCommand.run(arguments: Array(arguments.dropFirst())))
case "help", "--help", "-h":
    print(usage)
    exit(0)
default:
    printError(usage)
    exit(2)
}
