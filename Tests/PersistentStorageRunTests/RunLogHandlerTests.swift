import Logging
import Testing

@testable import PersistentStorageRun

@Suite("Log lines")
struct RunLogHandlerTests {
    @Test("levels are right-aligned to seven characters like the reference",
          arguments: [(.info, "--    INFO -- Opening PST session ..."),
                      (.warning, "-- WARNING -- Opening PST session ..."),
                      (.error, "--   ERROR -- Opening PST session ..."),
                      (.debug, "--   DEBUG -- Opening PST session ...")] as [(Logger.Level, String)])
    func format(level: Logger.Level, line: String) {
        #expect(RunLogHandler.format(level: level, message: "Opening PST session ...") == line)
    }
}

