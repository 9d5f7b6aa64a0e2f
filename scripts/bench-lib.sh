# Shared by scripts/bench.sh and scripts/bench-memory.sh (sourced, not run): release build, a dedicated three-node
# cluster of our own in a temporary directory (fresh data, the ports of config/n1..n3.toml), leader discovery.
# Every process these functions start is recorded by PID and stopped by PID, never by name.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRATCH=${SCRATCH:-.build}
BIN="$ROOT/$SCRATCH/release"
DURABILITY=${DURABILITY:-DiskFirst}
DNODE=${DNODE_BIN:-$BIN/dnode}
# Node N listens on PORT_BASE+N (client API and peers) and METRICS_BASE+N (metrics), as in config/nN.toml by default.
PORT_BASE=${PORT_BASE:-9080}
METRICS_BASE=${METRICS_BASE:-8080}
ENDPOINTS=127.0.0.1:$((PORT_BASE + 1)),127.0.0.1:$((PORT_BASE + 2)),127.0.0.1:$((PORT_BASE + 3))
# TLS=1: the nodes come from config/secure/nN.toml (TLS on every port, mutual TLS, roles) with certificates made by
# `dctl certs init` in WORKDIR/certs; clients present WORKDIR/certs/client.admin.crt.
TLS=${TLS:-0}

bench_build() {
    local product
    for product in dnode dctl dbench; do
        (cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product "$product") >&2
    done
}

port_busy() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# cluster_start WORKDIR: nodes 1-3 from config/nN.toml with their data and logs under WORKDIR, their ports moved to
# PORT_BASE+N / METRICS_BASE+N, and DURABILITY as the persistence strategy.
cluster_start() {
    local work=$1 n port
    for n in 1 2 3; do
        for port in $((PORT_BASE + n)) $((METRICS_BASE + n)); do
            if port_busy "$port"; then
                echo "port $port is busy: stop the local cluster (make stop-cluster) or set PORT_BASE/METRICS_BASE" >&2
                return 1
            fi
        done
    done
    mkdir -p "$work/config"
    local template=$ROOT/config
    [[ $TLS == 1 ]] && template=$ROOT/config/secure
    for n in 1 2 3; do
        python3 - "$template/n$n.toml" "$work" "$n" "$PORT_BASE" "$METRICS_BASE" > "$work/config/n$n.toml" << 'PY'
import re, sys
path, work, n, port_base, metrics_base = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = open(path).read()
text = text.replace('"./db/secure/%s"' % n, '"./db/%s"' % n).replace('"./logs/secure/%s"' % n, '"./logs/%s"' % n)
text = text.replace('"certs/', '"%s/certs/' % work)
text = text.replace('"./db/%s"' % n, '"%s/db/%s"' % (work, n)).replace('"./logs/%s"' % n, '"%s/logs/%s"' % (work, n))
text = re.sub(r':908([1-9])"', lambda m: ':%d"' % (port_base + int(m.group(1))), text)
text = re.sub(r':808([1-9])"', lambda m: ':%d"' % (metrics_base + int(m.group(1))), text)
sys.stdout.write(text)
PY
    done
    if [[ $TLS == 1 ]]; then
        (cd "$work" && "$BIN/dctl" certs init --dir certs --config-dir config > "$work/certs.txt")
    fi
    (cd "$work" && RAFT__RAFT__PERSISTENCE__STRATEGY=$DURABILITY "$BIN/dctl" cluster start --config-dir config \
        --dnode "$DNODE" > "$work/start.txt") || {
        cat "$work/start.txt" >&2
        return 1
    }
}

cluster_stop() {
    local work=$1
    [[ -d $work/run ]] || return 0
    (cd "$work" && "$BIN/dctl" cluster stop --config-dir config > /dev/null 2>&1) || true
}

# The PIDs of the dedicated cluster's nodes.
cluster_pids() {
    local work=$1 file
    for file in "$work"/run/n*.pid; do
        [[ -e $file ]] && cat "$file"
    done
}

# ENDPOINTS reordered with the leader first (writes from one client go to the leader, as for etcd). With TLS=1,
# WORKDIR (the first argument) holds the certificates.
leader_first() {
    python3 - "$ENDPOINTS" "${1:-}" "$TLS" << 'PY'
import json, ssl, sys, urllib.request
eps = sys.argv[1].split(",")
work, tls = sys.argv[2], sys.argv[3] == "1"
try:
    context = None
    if tls:
        context = ssl.create_default_context(cafile=work + "/certs/ca.crt")
        context.load_cert_chain(work + "/certs/client.admin.crt", work + "/certs/client.admin.key")
    url = "%s://%s/cluster" % ("https" if tls else "http", eps[0])
    cluster = json.load(urllib.request.urlopen(url, timeout=5, context=context))
    port = next(m["address"].rsplit(":", 1)[1] for m in cluster["members"] if m["id"] == cluster["leader_id"])
    eps.sort(key=lambda e: e.rsplit(":", 1)[1] != port)
except Exception as error:
    print("leader_first: %s; keeping the order" % error, file=sys.stderr)
print(",".join(eps))
PY
}

# etcd endpoints (2379,22379,32379) reordered with the leader first. With TLS=1, WORKDIR (the first argument) holds
# the certificates.
etcd_leader_first() {
    local flags=(--endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379)
    if [[ $TLS == 1 ]]; then
        flags=(--endpoints=https://127.0.0.1:2379,https://127.0.0.1:22379,https://127.0.0.1:32379 --cacert "$1/certs/ca.crt"
            --cert "$1/certs/client.admin.crt" --key "$1/certs/client.admin.key")
    fi
    ETCDCTL_API=3 etcdctl "${flags[@]}" endpoint status -w json \
        | python3 -c '
import json, sys
members = json.load(sys.stdin)
members.sort(key=lambda m: m["Status"]["header"]["member_id"] != m["Status"]["leader"])
print(",".join(m["Endpoint"].replace("https://", "").replace("http://", "") for m in members))'
}

# nginx_start DIR PORT: nginx answering every request with `return 200 "ok"` on 127.0.0.1:PORT, configured as
# ../shared/bench/nginx-anchor.sh does (workers = CPUs, no access log, unlimited keep-alive); sets NGINX_PID.
nginx_start() {
    local dir=$1 port=$2
    if port_busy "$port"; then
        echo "port $port is busy (set NGINX_PORT)" >&2
        return 1
    fi
    mkdir -p "$dir"
    cat > "$dir/nginx.conf" << CONF
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/body;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok\n"; }
  }
}
CONF
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' < /dev/null > "$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 40); do
        port_busy "$port" && return 0
        sleep 0.25
    done
    echo "nginx did not start; see $dir/nginx.out" >&2
    return 1
}

git_commit() {
    local commit
    commit=$(cd "$ROOT" && git rev-parse --short HEAD)
    if [[ -n $(cd "$ROOT" && git status --porcelain --untracked-files=no) ]]; then commit="$commit (with uncommitted changes)"; fi
    echo "$commit"
}

durability_text() {
    case $DURABILITY in
        DiskFirst) echo "DiskFirst: a write is acknowledged after fsync on a quorum (one fsync per batch)" ;;
        MemFirst) echo "MemFirst: acknowledged once written to the OS on a quorum; fsync per flush_policy (threshold 100, 20 ms)" ;;
        *) echo "$DURABILITY" ;;
    esac
}
