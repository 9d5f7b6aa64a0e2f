#!/usr/bin/env python3
"""Markdown summary of scripts/bench-memory.sh's samples.

Usage: bench-memory-summary.py CSV LOAD_TXT SECONDS CONNS DURABILITY COMMIT
"""
import csv
import sys

path, load, seconds, conns, durability, commit = sys.argv[1:]
seconds = int(seconds)
rows = list(csv.DictReader(open(path)))
print("# Resident memory under a %d s write load (%s)\n" % (seconds, durability))
print("- **commit**: %s" % commit)
print("- **load**: `dbench put --conns %s --duration %ds` (random 8-byte keys from 100k, 256-byte values)" % (conns, seconds))
print("- **samples**: `%s` (VmRSS from /proc/PID/status, applied and snapshot index from /status)\n" % path.split("/")[-1])
print("```\n" + open(load).read().strip() + "\n```\n")
print("RSS in MiB. The key space fills during the first minutes (the state machine grows with it); after that the")
print("size should stay flat: snapshots every 10,000 entries compact the log. Single samples above the median are")
print("snapshots being serialised (a copy-on-write image of the state machine).\n")
print("| node | first | at 1/2 | at 3/4 | last | max | median of the last quarter | last quarter: first -> last | applied index | snapshot index |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def at(samples, fraction):
    target = seconds * fraction
    return min(samples, key=lambda s: abs(s[0] - target))[1]


for node in sorted({r["node"] for r in rows}):
    mine = [r for r in rows if r["node"] == node and r["rss_kib"] not in ("", "0")]
    samples = [(int(r["seconds"]), int(r["rss_kib"]) / 1024) for r in mine]
    if not samples:
        continue
    last_quarter = sorted(v for t, v in samples if t >= seconds * 3 / 4)
    quarter = [v for t, v in samples if t >= seconds * 3 / 4]
    median = last_quarter[len(last_quarter) // 2] if last_quarter else 0
    print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f -> %.1f | %s | %s |" % (
        node, samples[0][1], at(samples, 0.5), at(samples, 0.75), samples[-1][1], max(v for _, v in samples),
        median, quarter[0] if quarter else 0, quarter[-1] if quarter else 0,
        mine[-1]["applied_index"], mine[-1]["snapshot_index"]))
