#!/usr/bin/env bash
# make bench-memory: resident size of each node of a dedicated three-node cluster under a steady write load.
# Samples VmRSS of every node every SAMPLE seconds while `dbench put` writes random keys for MEM_SECONDS, then writes
# NAME.csv (one row per sample) and NAME.md (scripts/bench-memory-summary.py: RSS per node at the start, half, three
# quarters and end of the run, its maximum, and the median and drift of the last quarter) to OUT.
#
# Fill mode (FILL_KEYS set): instead of a timed load, write keys k0..k(FILL_KEYS-1) once each, in order, with
# VALUE_SIZE-byte values, then wait until every node has applied the last write and sample SETTLE more seconds. The
# report then also gives the live data size and RSS per MiB of data, so a large key space shows whether memory stays
# proportional to what is stored (the log and in-flight queues are bounded in bytes, the state machine is not).
#
# Environment: MEM_SECONDS [600], MEM_CONNS [30], SAMPLE [10], DURABILITY [DiskFirst], KEY_SPACE [100000],
# FILL_KEYS [unset], VALUE_SIZE [256], SETTLE [30], OUT [benches/reports/<YYYY-MM-DD>], NAME [memory-<durability>,
# or memory-<keys>x<value size>-<durability> in fill mode], SCRATCH [.build], SKIP_BUILD [0].
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$ROOT"

MEM_SECONDS=${MEM_SECONDS:-600}
MEM_CONNS=${MEM_CONNS:-30}
SAMPLE=${SAMPLE:-10}
KEY_SPACE=${KEY_SPACE:-100000}
FILL_KEYS=${FILL_KEYS:-}
VALUE_SIZE=${VALUE_SIZE:-256}
SETTLE=${SETTLE:-30}
OUT=${OUT:-benches/reports/$(date -u +%F)}
if [[ -n $FILL_KEYS ]]; then
    NAME=${NAME:-memory-${FILL_KEYS}x${VALUE_SIZE}-$DURABILITY}
else
    NAME=${NAME:-memory-$DURABILITY}
fi

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

if [[ -n $FILL_KEYS ]]; then
    "$BIN/dbench" put --endpoints "$ENDPOINTS" --conns "$MEM_CONNS" --total "$FILL_KEYS" --sequential-keys \
        --key-space "$FILL_KEYS" --value-size "$VALUE_SIZE" --timeout 30s > "$WORK/load.txt" 2>&1 &
else
    "$BIN/dbench" put --endpoints "$ENDPOINTS" --conns "$MEM_CONNS" --duration "${MEM_SECONDS}s" \
        --key-space "$KEY_SPACE" --value-size "$VALUE_SIZE" > "$WORK/load.txt" 2>&1 &
fi
load_pid=$!

start=$(date +%s)
# sample: one row per node; prints the smallest applied index seen.
sample() {
    local now=$(($(date +%s) - start)) i n rss status least=""
    for i in "${!pids[@]}"; do
        n=$((i + 1))
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pids[$i]}/status" 2> /dev/null || echo 0)
        status=$(python3 -c '
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/status" % sys.argv[1], timeout=2))
print("%d,%d" % (s["applied_index"], s["snapshot_index"]))' "$((METRICS_BASE + n))" 2> /dev/null || echo ",")
        echo "$now,$n,${pids[$i]},$rss,$status" >> "$csv"
        applied=${status%%,*}
        if [[ -z $least || -z $applied || $applied -lt $least ]]; then least=${applied:-0}; fi
    done
    echo "${least:-0}"
}
while kill -0 "$load_pid" 2> /dev/null; do
    sample > /dev/null
    sleep "$SAMPLE"
done
wait "$load_pid" || true
load_pid=""
elapsed=$(($(date +%s) - start))

if [[ -n $FILL_KEYS ]]; then
    # Every node applies the last write (the leader's commit index), then SETTLE more seconds of samples.
    target=$(python3 -c '
import json, sys, urllib.request
best = 0
for n in (1, 2, 3):
    try:
        s = json.load(urllib.request.urlopen("http://127.0.0.1:%d/status" % (int(sys.argv[1]) + n), timeout=2))
        best = max(best, s["commit_index"])
    except Exception:
        pass
print(best)' "$METRICS_BASE")
    deadline=$(($(date +%s) + 300))
    while (($(sample) < target)); do
        if (($(date +%s) > deadline)); then
            echo "bench-memory: the nodes did not apply index $target within 300 s" >&2
            break
        fi
        sleep 2
    done
    settle_end=$(($(date +%s) + SETTLE))
    while (($(date +%s) < settle_end)); do
        sleep "$SAMPLE"
        sample > /dev/null
    done
    elapsed=$(($(date +%s) - start))
fi

python3 "$ROOT/scripts/bench-memory-summary.py" "$csv" "$WORK/load.txt" "$elapsed" "$MEM_CONNS" "$DURABILITY" \
    "$(git_commit)" "${FILL_KEYS:-0}" "$VALUE_SIZE" "$KEY_SPACE" "$SETTLE" > "$OUT/$NAME.md"
cat "$OUT/$NAME.md"
