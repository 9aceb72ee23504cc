import Testing

/// Issue 7's suites, run one after another: several of them hold the
/// machine's two cores busy on purpose (the soak, the fuzzers, 2,000
/// connections), and the fault tests measure deadlines of a second or two.
@Suite("Reliability: faults, hostile input, fuzzing, soak", .serialized)
enum Reliability {}
