#!/usr/bin/env bash
# make bench-memory: resident size of each node of a dedicated three-node cluster under a steady write load.
# Samples VmRSS of every node every SAMPLE seconds while `dbench put` writes random keys for MEM_SECONDS, then writes
# NAME.csv (one row per sample) and NAME.md (scripts/bench-memory-summary.py: RSS per node at the start, half, three
# quarters and end of the run, its maximum, and the median and drift of the last quarter) to OUT.
#
# Environment: MEM_SECONDS [600], MEM_CONNS [30], SAMPLE [10], DURABILITY [DiskFirst], KEY_SPACE [100000],
# OUT [benches/reports/<YYYY-MM-DD>], NAME [memory-<durability>], SCRATCH [.build], SKIP_BUILD [0].
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$ROOT"

MEM_SECONDS=${MEM_SECONDS:-600}
MEM_CONNS=${MEM_CONNS:-30}
SAMPLE=${SAMPLE:-10}
KEY_SPACE=${KEY_SPACE:-100000}
OUT=${OUT:-benches/reports/$(date -u +%F)}
NAME=${NAME:-memory-$DURABILITY}

[[ ${SKIP_BUILD:-0} == 1 ]] || bench_build

WORK=$(mktemp -d /tmp/dengine-bench-mem.XXXXXX)
load_pid=""
cleanup() {
    if [[ -n $load_pid ]]; then kill "$load_pid" 2> /dev/null || true; fi
    cluster_stop "$WORK"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_start "$WORK"
mapfile -t pids < <(cluster_pids "$WORK")
mkdir -p "$OUT"
csv="$OUT/$NAME.csv"
echo "seconds,node,pid,rss_kib,applied_index,snapshot_index" > "$csv"

"$BIN/dbench" put --endpoints "$ENDPOINTS" --conns "$MEM_CONNS" --duration "${MEM_SECONDS}s" \
    --key-space "$KEY_SPACE" > "$WORK/load.txt" 2>&1 &
load_pid=$!

start=$(date +%s)
while kill -0 "$load_pid" 2> /dev/null; do
    now=$(($(date +%s) - start))
    for i in "${!pids[@]}"; do
        n=$((i + 1))
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pids[$i]}/status" 2> /dev/null || echo 0)
        status=$(python3 -c '
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/status" % sys.argv[1], timeout=2))
print("%d,%d" % (s["applied_index"], s["snapshot_index"]))' "$((METRICS_BASE + n))" 2> /dev/null || echo ",")
        echo "$now,$n,${pids[$i]},$rss,$status" >> "$csv"
    done
    sleep "$SAMPLE"
done
wait "$load_pid" || true
load_pid=""

python3 "$ROOT/scripts/bench-memory-summary.py" "$csv" "$WORK/load.txt" "$MEM_SECONDS" "$MEM_CONNS" "$DURABILITY" \
    "$(git_commit)" > "$OUT/$NAME.md"
cat "$OUT/$NAME.md"
