#!/usr/bin/env bash
# Profiles every running node of the local cluster (run/nN.pid) with `perf record -g` for PERF_SECONDS while a
# write load runs against the cluster, then writes `perf report --stdio` of each node to perf/<date>/nN.txt.
#
# Load: wrk (4 threads' worth of keep-alive connections, POST /put of random keys) when it is installed,
# otherwise a small python3 closed-loop writer. Only loopback addresses are used.
#
# Environment: PERF_SECONDS (20), PERF_CONNS (16), PERF_FREQ (sampling Hz, 499).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PERF_SECONDS=${PERF_SECONDS:-20}
PERF_CONNS=${PERF_CONNS:-16}
PERF_FREQ=${PERF_FREQ:-499}

if ! command -v perf > /dev/null 2>&1; then
    echo "perf-cluster: perf is not installed; on Debian: apt-get install -y linux-perf" >&2
    exit 1
fi

pids=()
nodes=()
for file in run/n*.pid; do
    [[ -e $file ]] || continue
    pid=$(< "$file")
    n=${file##*/n}
    n=${n%.pid}
    if kill -0 "$pid" 2> /dev/null; then
        pids+=("$pid")
        nodes+=("$n")
    fi
done
((${#pids[@]})) || {
    echo "perf-cluster: no running node (run/nN.pid); start the cluster first: make start-cluster" >&2
    exit 1
}

endpoints=()
for n in "${nodes[@]}"; do
    address=$(sed -n -E 's/^[[:space:]]*listen_address[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' "config/n$n.toml" | head -n 1)
    endpoints+=("127.0.0.1:${address##*:}")
done

out="perf/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "perf-cluster: profiling nodes ${nodes[*]} (pids ${pids[*]}) for ${PERF_SECONDS}s; output in $out/"

recorders=()
for i in "${!pids[@]}"; do
    perf record -g -F "$PERF_FREQ" -p "${pids[$i]}" -o "$out/n${nodes[$i]}.data" -- sleep "$PERF_SECONDS" \
        > "$out/n${nodes[$i]}.record.log" 2>&1 &
    recorders+=($!)
done

load_seconds=$((PERF_SECONDS > 2 ? PERF_SECONDS - 1 : 1))
if command -v wrk > /dev/null 2>&1; then
    script="$out/put.lua"
    cat > "$script" << 'EOF'
-- POST /put of a random key from a 100k key space with a 256-byte value.
local value = string.rep("v", 256)
request = function()
    local body = string.format('{"key":"k%07d","value":"%s"}', math.random(0, 99999), value)
    return wrk.format("POST", "/put", { ["Content-Type"] = "application/json" }, body)
end
EOF
    echo "perf-cluster: load: wrk -t1 -c$PERF_CONNS against ${endpoints[0]}"
    timeout $((load_seconds + 30)) wrk -t1 -c"$PERF_CONNS" -d"${load_seconds}s" --timeout 5s -s "$script" \
        "http://${endpoints[0]}/" > "$out/load.txt" 2>&1 || true
else
    echo "perf-cluster: wrk not installed (apt-get install -y wrk); using a python3 writer instead"
    timeout $((load_seconds + 30)) python3 - "$load_seconds" "$PERF_CONNS" "${endpoints[@]}" > "$out/load.txt" 2>&1 << 'EOF' || true
import http.client, json, random, sys, threading, time
seconds, conns, endpoints = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
deadline = time.monotonic() + seconds
counts = {}
lock = threading.Lock()
def worker(i):
    host, port = endpoints[i % len(endpoints)].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    while time.monotonic() < deadline:
        body = json.dumps({"key": "k%07d" % random.randrange(100000), "value": "v" * 256})
        try:
            conn.request("POST", "/put", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()  # keep the connection alive
            status = response.status
        except Exception as error:
            status = type(error).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
        with lock:
            counts[status] = counts.get(status, 0) + 1
threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
total = sum(counts.values())
print("requests %d in %.0fs (%.0f/s): %s" % (total, seconds, total / seconds, counts))
EOF
fi
cat "$out/load.txt"

for pid in "${recorders[@]}"; do wait "$pid" || true; done
for n in "${nodes[@]}"; do
    if [[ -s $out/n$n.data ]]; then
        perf report --stdio -i "$out/n$n.data" > "$out/n$n.txt" 2> "$out/n$n.report.log" || true
        echo "perf-cluster: node $n: $out/n$n.txt"
    else
        echo "perf-cluster: node $n: no samples (see $out/n$n.record.log; perf_event_paranoid may need lowering)" >&2
    fi
done
