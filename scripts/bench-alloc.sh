#!/usr/bin/env bash
# make bench-alloc: heap allocations and CPU time per request, summed over the three nodes of a dedicated fresh
# cluster (release build, ports of config/n1..n3.toml), for a put and a lease get. Allocations are counted by
# uprobes on libc's allocation functions (`perf probe`; malloc, calloc, realloc, posix_memalign, aligned_alloc)
# with `perf stat` attached to the node processes while dbench sends a fixed number of requests; CPU time comes
# from /proc/PID/stat before and after. Writes benches/reports/DATE/alloc-DURABILITY.md.
#
# Environment (defaults in brackets): REQUESTS [20000]  CONNS [12]  DURABILITY [DiskFirst]  SCRATCH [.build]
#   SKIP_BUILD [0]  OUT [benches/reports/<YYYY-MM-DD>]  ENDPOINT_POLICY [spread]: spread (round-robin over the three
#   nodes) or leader (every request to the leader)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$ROOT"

REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-12}
OUT=${OUT:-benches/reports/$(date -u +%F)}
POLICY=${ENDPOINT_POLICY:-spread}

command -v perf > /dev/null || { echo "bench-alloc: perf is not installed (apt-get install -y linux-perf)" >&2; exit 1; }
libc=$(ldconfig -p | awk '/libc\.so\.6 .*x86-64/ {print $NF; exit}')
[[ -n $libc ]] || libc=/lib/x86_64-linux-gnu/libc.so.6
events=()
for fn in malloc calloc realloc posix_memalign aligned_alloc; do
    perf probe -q -x "$libc" "$fn" > /dev/null 2>&1 || true
    perf probe -l 2> /dev/null | grep -q "probe_libc:$fn\b" && events+=("probe_libc:$fn")
done
((${#events[@]})) || { echo "bench-alloc: cannot place uprobes on $libc (perf probe failed)" >&2; exit 1; }

[[ ${SKIP_BUILD:-0} == 1 ]] || bench_build
WORK=$(mktemp -d /tmp/dengine-alloc.XXXXXX)
cleanup() { cluster_stop "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_start "$WORK"
pids=$(cluster_pids "$WORK" | paste -sd, -)
eps=$(leader_first "$WORK")
[[ $POLICY == leader ]] && eps=${eps%%,*}
"$BIN/dbench" put --endpoints "$eps" --conns 48 --total 10000 --sequential-keys --key-space 10000 > /dev/null

cpu_ticks() {  # utime+stime of the node processes, in clock ticks
    local total=0 pid fields
    for pid in ${pids//,/ }; do
        fields=$(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + $(awk '{print $12 + $13}' <<< "$fields")))
    done
    echo "$total"
}

rows=()
measure() {  # NAME DBENCH-ARGS...
    local name=$1
    shift
    "$BIN/dbench" "$@" --endpoints "$eps" --conns "$CONNS" --total 2000 --key-space 10000 > /dev/null  # warm-up
    local before after allocs
    # CPU first, without the probes (a uprobe traps into the kernel on every call), then the allocation count.
    before=$(cpu_ticks)
    "$BIN/dbench" "$@" --endpoints "$eps" --conns "$CONNS" --total "$REQUESTS" --key-space 10000 > "$WORK/$name.out"
    after=$(cpu_ticks)
    perf stat -x, -e "$(IFS=,; echo "${events[*]}")" -p "$pids" -o "$WORK/$name.perf" -- \
        "$BIN/dbench" "$@" --endpoints "$eps" --conns "$CONNS" --total "$REQUESTS" --key-space 10000 > /dev/null
    allocs=$(awk -F, '$1 ~ /^[0-9]+$/ {s += $1} END {print s + 0}' "$WORK/$name.perf")
    local hz
    hz=$(getconf CLK_TCK)
    rows+=("| $name | $REQUESTS | $(awk -v a="$allocs" -v n="$REQUESTS" 'BEGIN {printf "%.1f", a / n}') | $(awk -v t=$((after - before)) -v hz="$hz" -v n="$REQUESTS" 'BEGIN {printf "%.1f", t / hz / n * 1e6}') | $(grep -m1 -o 'errors[^,]*' "$WORK/$name.out" || echo "-") |")
    echo "$name: $allocs allocations, $((after - before)) ticks for $REQUESTS requests" >&2
}
measure put put
measure get-lease get --consistency lease
measure get-linearizable get --consistency linearizable

mkdir -p "$OUT"
report=$OUT/alloc-$DURABILITY.md
{
    echo "# Allocations and CPU per request ($DURABILITY), $(date -u +%F)"
    echo
    echo "- **commit**: $(git_commit)"
    echo "- **machine**: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM"
    echo "- **load**: dbench, $CONNS connections, endpoints $eps ($POLICY), 8-byte keys from 10k, 256-byte values; $REQUESTS requests after 2000 of warm-up"
    echo "- **allocations**: calls of ${events[*]} (uprobes, perf stat) in the three node processes, per request"
    echo "- **CPU**: user + system time of the three node processes (/proc/PID/stat), microseconds per request, in a separate run of the same requests without the probes"
    echo "- **command**: make bench-alloc (REQUESTS=$REQUESTS CONNS=$CONNS ENDPOINT_POLICY=$POLICY)"
    echo
    echo "| request | requests | allocations / request (3 nodes) | CPU µs / request (3 nodes) | dbench errors |"
    echo "|---|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
} > "$report"
cat "$report"
echo "wrote $report" >&2
