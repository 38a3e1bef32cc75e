import LifelineMain

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

exit(await Lifeline.main(arguments: Array(CommandLine.arguments.dropFirst())))
