#!/usr/bin/env bash
# make bench / make bench-etcd: the standard dbench scenarios against a dedicated, freshly started three-node cluster
# (ports 9081-9083, data in a temporary directory), optionally side by side with a three-member etcd on loopback
# (../shared/bench/peer-etcd.sh: Debian etcd-server, fsync on), alternating runs; writes a Markdown and a CSV report.
#
# Environment (defaults in brackets):
#   DURABILITY [DiskFirst]   DiskFirst or MemFirst (our nodes' [raft.persistence] strategy)
#   WITH_ETCD [0]            1: etcd runs beside us and the report has the ratio table
#   ROUNDS [2]  DURATION [10s]  HC_CONNS [120]  THREADS [2]  PRELOAD [100000]
#   SCENARIOS [all]          comma-separated: write-1,write-hc,read-linearizable,read-lease,read-eventual,hotkey
#   OUT [benches/reports/<YYYY-MM-DD>]   NAME [report, or vs-etcd-<durability> with etcd]
#   SCRATCH [.build]         swift build --scratch-path
#   SKIP_BUILD [0]           1: use the binaries already in SCRATCH/release
#   CEILING [1]              1: read-lease's requests also go to nginx `return 200` on NGINX_PORT [39080], the HTTP
#                            ceiling of the machine (as ../shared/bench/nginx-anchor.sh configures it); 0 with TLS
#   TLS [0]                  1: both systems with TLS and client certificates from one CA: our nodes from
#                            config/secure (mutual TLS, roles), etcd from scripts/etcd-tls.sh; the load generator
#                            presents client.admin.crt to both
#
# Endpoint policy, the same for both systems: write-1 goes to the leader (found before the runs), every other
# scenario spreads its connections round-robin over the three nodes (followers forward to the leader).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
cd "$ROOT"

WITH_ETCD=${WITH_ETCD:-0}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
HC_CONNS=${HC_CONNS:-120}
THREADS=${THREADS:-2}
PRELOAD=${PRELOAD:-100000}
OUT=${OUT:-benches/reports/$(date -u +%F)}
TLS_SUFFIX=""
[[ $TLS == 1 ]] && TLS_SUFFIX=-tls
if [[ $WITH_ETCD == 1 ]]; then NAME=${NAME:-vs-etcd-$DURABILITY$TLS_SUFFIX}; else NAME=${NAME:-report-$DURABILITY$TLS_SUFFIX}; fi

[[ ${SKIP_BUILD:-0} == 1 ]] || bench_build

WORK=$(mktemp -d /tmp/dengine-bench.XXXXXX)
nginx_pid=""
cleanup() {
    if [[ -n $nginx_pid ]]; then kill -TERM "$nginx_pid" 2> /dev/null || true; fi
    cluster_stop "$WORK"
    if [[ $WITH_ETCD == 1 && $TLS == 1 ]]; then "$ROOT/scripts/etcd-tls.sh" stop "$WORK/etcd" > /dev/null 2>&1 || true; fi
    if [[ $WITH_ETCD == 1 && $TLS != 1 ]]; then "$ROOT/../shared/bench/peer-etcd.sh" stop "$WORK/etcd" > /dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_start "$WORK"
ours=$(leader_first "$WORK")
args=(--endpoints "$ours")
tls_meta=""
if [[ $TLS == 1 ]]; then
    args+=(--cacert "$WORK/certs/ca.crt" --cert "$WORK/certs/client.admin.crt" --key "$WORK/certs/client.admin.key")
    tls_meta="TLS 1.2+/1.3 on every port of both systems, client certificates required (mutual TLS), ECDSA P-256 certificates from one CA (dctl certs init); ours: config/secure (peers mutual TLS, roles checked per request); etcd: scripts/etcd-tls.sh (--client-cert-auth, --peer-client-cert-auth)"
fi
etcd_version=""
if [[ $WITH_ETCD == 1 ]]; then
    if [[ $TLS == 1 ]]; then
        "$ROOT/scripts/etcd-tls.sh" start "$WORK/etcd" "$WORK/certs" >&2
    else
        "$ROOT/../shared/bench/peer-etcd.sh" start "$WORK/etcd" >&2
    fi
    etcd_eps=$(etcd_leader_first "$WORK")
    args+=(--etcd-endpoints "$etcd_eps")
    etcd_version=$(etcd --version 2> /dev/null | head -n 1)
fi
[[ -z ${SCENARIOS:-} ]] || args+=(--scenarios "$SCENARIOS")
# CPU per operation: the servers' processes, read from /proc before and after every run.
args+=(--pids "dengine=$(cluster_pids "$WORK" | paste -sd, -)")
if [[ $WITH_ETCD == 1 && -s $WORK/etcd/pids ]]; then args+=(--pids "etcd=$(paste -sd, - < "$WORK/etcd/pids")"); fi
if [[ ${CEILING:-1} == 1 && $TLS != 1 ]] && command -v nginx > /dev/null; then
    nginx_start "$WORK/nginx" "${NGINX_PORT:-39080}"
    nginx_pid=$NGINX_PID
    args+=(--ceiling-endpoint "127.0.0.1:${NGINX_PORT:-39080}")
fi

"$BIN/dbench" suite "${args[@]}" --rounds "$ROUNDS" --duration "$DURATION" --hc-conns "$HC_CONNS" \
    --threads "$THREADS" --preload "$PRELOAD" --out "$OUT" --name "$NAME" \
    --title "dbench: dengine ($DURABILITY${TLS_SUFFIX:+, TLS})${etcd_version:+ vs etcd}, $(date -u +%F)" \
    --meta "commit=$(git_commit)" \
    --meta "durability=$(durability_text)" \
    --meta "config=config/n1..n3.toml as committed (election 1000-2000 ms, heartbeat 100 ms, lease 500 ms, snapshot every 100000 entries, retain 1000), release build, fresh data directories" \
    ${etcd_version:+--meta "etcd=$etcd_version, $([[ $TLS == 1 ]] && echo scripts/etcd-tls.sh || echo ../shared/bench/peer-etcd.sh) defaults: fsync on, snapshot-count 100000, fresh data directories"} \
    ${tls_meta:+--meta "tls=$tls_meta"} \
    --meta "endpoint policy=write-1: one connection to the leader; other scenarios: connections round-robin over all three nodes (both systems)" \
    --meta "command=TLS=$TLS DURABILITY=$DURABILITY WITH_ETCD=$WITH_ETCD ROUNDS=$ROUNDS DURATION=$DURATION HC_CONNS=$HC_CONNS scripts/bench.sh"
