import Foundation
import Testing

@testable import BenchKit

@Suite struct ProcessCPUTests {
    @Test func ticksAreReadAfterTheCommandNameEvenWithSpacesAndParentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let line = "4242 (d node (x)) S 1 4242 4242 0 -1 4194560 900 0 3 0 1234 567 0 0 20 0 9 0 100 0"
        #expect(ProcessCPU.cpuTicks(statLine: line) == 1234 + 567)
        #expect(ProcessCPU.cpuTicks(statLine: "4242 (short) S 1") == nil)
        #expect(ProcessCPU.cpuTicks(statLine: "garbage") == nil)
    }

    @Test func thisProcessUsesCPUAndAMissingOneIsNil() {
        let me = ProcessCPU(pids: [getpid()])
        let before = me.seconds()
        #expect(before != nil)
        // Burn CPU until the kernel's accounting (10 ms ticks) moves.
        var x: UInt64 = 1
        while (me.seconds() ?? 0) <= (before ?? 0) { for i in 0..<1_000_000 { x = x &* 6364136223846793005 &+ UInt64(i) } }
        #expect(x != 0)
        #expect(ProcessCPU(pids: [getpid(), Int32.max]).seconds() == nil)
    }

    @Test func pidListsParse() {
        #expect(ProcessCPU.parse("dengine=1, 2,3")?.pids == [1, 2, 3])
        #expect(ProcessCPU.parse("etcd=")?.pids == nil)
        #expect(ProcessCPU.parse("etcd=1,x") == nil)
        #expect(ProcessCPU.parse("=1") == nil)
    }

    @Test func theReportHasACPUTableWhenRunsMeasuredIt() {
        let latency = LatencySummary(count: 80_000, mean: 1000, p50: 900, p90: 1500, p99: 2000, p999: 3000, max: 4000)
        var ours = RunRecord(
            system: .dengine, scenario: "read-lease", round: 1, conns: 120, opsPerSecond: 10_000, succeeded: 80_000,
            notFound: 0, errors: [:], latency: latency)
        ours.cpuSeconds = 8  // 1 s per 10k
        var theirs = ours
        theirs.system = .etcd
        theirs.cpuSeconds = 32  // 4 s per 10k
        let markdown = ReportWriter.markdown(title: "t", meta: [], records: [ours, theirs])
        #expect(markdown.contains("| read-lease | 1.00 | 4.00 | 0.25 |"))
        #expect(ReportWriter.csv([ours]).split(separator: "\n")[1].hasSuffix(",8.000"))
    }
}
