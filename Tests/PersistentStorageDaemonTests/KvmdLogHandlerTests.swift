import Logging
import Testing

@testable import KvmdLogging

@Suite("Log lines")
struct KvmdLogHandlerTests {
    @Test("levels are right-aligned to seven characters like the reference",
          arguments: [(.info, "--    INFO -- Opening PST session ..."),
                      (.warning, "-- WARNING -- Opening PST session ..."),
                      (.error, "--   ERROR -- Opening PST session ..."),
                      (.debug, "--   DEBUG -- Opening PST session ..."),
                      (.notice, "--    INFO -- Opening PST session ..."),
                      (.trace, "--   DEBUG -- Opening PST session ..."),
                      (.critical, "-- CRITICAL -- Opening PST session ...")] as [(Logger.Level, String)])
    func format(level: Logger.Level, line: String) {
        #expect(KvmdLogHandler.format(level: level, message: "Opening PST session ...") == line)
    }

    @Test("a newline in a message stays on its line")
    func escapes() {
        #expect(KvmdLogHandler.format(level: .info, message: "a\n-- ERROR -- forged") == #"--    INFO -- a\n-- ERROR -- forged"#)
    }
}

