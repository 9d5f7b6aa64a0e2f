#!/usr/bin/env python3
"""Markdown summary of scripts/bench-memory.sh's samples.

Usage: bench-memory-summary.py CSV LOAD_TXT SECONDS CONNS DURABILITY COMMIT [FILL_KEYS VALUE_SIZE KEY_SPACE SETTLE]

FILL_KEYS > 0: the load wrote each of FILL_KEYS keys once (fill mode of bench-memory.sh); the report adds the live
data size (from the writes dbench counted as acknowledged, not from FILL_KEYS, since a refused write stores nothing)
and the resident memory per MiB of it.
"""
import csv
import re
import sys

path, load, seconds, conns, durability, commit = sys.argv[1:7]
fill_keys, value_size, key_space, settle = (
    int(a) for a in (sys.argv[7:11] if len(sys.argv) >= 11 else (0, 256, 100000, 30)))
seconds = int(seconds)
rows = list(csv.DictReader(open(path)))
load_text = open(load).read().strip()
acknowledged = re.search(r"requests ok: (\d+)", load_text)
stored_keys = min(fill_keys, int(acknowledged.group(1))) if acknowledged else fill_keys
data_mib = stored_keys * (8 + value_size) / 1048576
if fill_keys:
    print("# Resident memory with %d keys of %d-byte values (%s)\n" % (fill_keys, value_size, durability))
else:
    print("# Resident memory under a %d s write load (%s)\n" % (seconds, durability))
print("- **commit**: %s" % commit)
if fill_keys:
    print("- **load**: `dbench put --conns %s --total %d --sequential-keys --key-space %d --value-size %d` (each key "
          "written once), then samples until every node has applied the last write, then %d s more; %d s in all"
          % (conns, fill_keys, fill_keys, value_size, settle, seconds))
    print("- **live data**: %.1f MiB: %d acknowledged writes of 8-byte keys and %d-byte values, no per-entry overhead "
          "counted" % (data_mib, stored_keys, value_size))
else:
    print("- **load**: `dbench put --conns %s --duration %ds` (random 8-byte keys from %d, %d-byte values)"
          % (conns, seconds, key_space, value_size))
print("- **samples**: `%s` (VmRSS from /proc/PID/status, applied and snapshot index from /status)\n" % path.split("/")[-1])
print("```\n" + load_text + "\n```\n")
if fill_keys:
    print("RSS in MiB. The state machine grows with the data; the log, replication queues and client queues are")
    print("bounded in bytes, so the last sample over the live data size is the cost per stored MiB. Single samples")
    print("above the trend are snapshots being serialised (a copy-on-write image of the state machine).\n")
else:
    print("RSS in MiB. The key space fills during the first minutes (the state machine grows with it); after that the")
    print("size should stay flat: snapshots every 100,000 entries (or 64 MiB) compact the log. Single samples above the median are")
    print("snapshots being serialised (a copy-on-write image of the state machine).\n")
extra = " last / live data |" if fill_keys else ""
print("| node | first | at 1/2 | at 3/4 | last | max | median of the last quarter | last quarter: first -> last | applied index | snapshot index |" + extra)
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if fill_keys else ""))


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
    ratio = " %.2f |" % (samples[-1][1] / data_mib) if fill_keys else ""
    print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f -> %.1f | %s | %s |%s" % (
        node, samples[0][1], at(samples, 0.5), at(samples, 0.75), samples[-1][1], max(v for _, v in samples),
        median, quarter[0] if quarter else 0, quarter[-1] if quarter else 0,
        mine[-1]["applied_index"], mine[-1]["snapshot_index"], ratio))
