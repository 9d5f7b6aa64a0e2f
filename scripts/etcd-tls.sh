#!/usr/bin/env bash
# etcd-tls.sh start|stop DIR CERTS: a 3-member etcd (Debian etcd-server) on 127.0.0.1 with TLS on its client and peer
# URLs and client certificates required on both (--client-cert-auth, --peer-client-cert-auth), all signed by the CA
# of CERTS (made by `dctl certs init`): the TLS twin of ../shared/bench/peer-etcd.sh, for `TLS=1 make bench-etcd`.
# Every member serves CERTS/node.1.crt (names 127.0.0.1, valid for server and client auth). Ports as peer-etcd.sh:
# clients 2379/22379/32379, peers 2380/22380/32380. Other flags are etcd's defaults (fsync on). stop kills only the
# PIDs recorded in DIR/pids.
set -euo pipefail

cmd=${1:-}; dir=${2:-}; certs=${3:-}
if [[ -z $cmd || -z $dir ]]; then echo "usage: $0 start|stop DIR CERTS" >&2; exit 2; fi
dir=$(realpath -m "$dir")
NAMES=(n1 n2 n3); CPORTS=(2379 22379 32379); PPORTS=(2380 22380 32380)
CLUSTER=n1=https://127.0.0.1:2380,n2=https://127.0.0.1:22380,n3=https://127.0.0.1:32380
ENDPOINTS=https://127.0.0.1:2379,https://127.0.0.1:22379,https://127.0.0.1:32379
export ETCDCTL_API=3

ours() { [[ -r /proc/$1/cmdline ]] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "--data-dir $dir/"; }
pids() { [[ -f $dir/pids ]] || return 0; while read -r p; do if ours "$p"; then echo "$p"; fi; done < "$dir/pids"; }

start() {
    [[ -n $certs ]] || { echo "start needs CERTS" >&2; exit 2; }
    certs=$(realpath "$certs")
    if ! command -v etcd > /dev/null || ! command -v etcdctl > /dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client > /dev/null
    fi
    mkdir -p "$dir"; : > "$dir/pids"
    local tls=(--cert-file "$certs/node.1.crt" --key-file "$certs/node.1.key" --client-cert-auth
        --trusted-ca-file "$certs/ca.crt" --peer-cert-file "$certs/node.1.crt" --peer-key-file "$certs/node.1.key"
        --peer-client-cert-auth --peer-trusted-ca-file "$certs/ca.crt")
    for i in 0 1 2; do
        local n=${NAMES[$i]} c=${CPORTS[$i]} p=${PPORTS[$i]}
        etcd --name "$n" --data-dir "$dir/$n" "${tls[@]}" \
            --listen-client-urls "https://127.0.0.1:$c" --advertise-client-urls "https://127.0.0.1:$c" \
            --listen-peer-urls "https://127.0.0.1:$p" --initial-advertise-peer-urls "https://127.0.0.1:$p" \
            --initial-cluster "$CLUSTER" --initial-cluster-token bench-etcd-tls --initial-cluster-state new \
            --logger zap --log-outputs stderr < /dev/null > "$dir/$n.log" 2>&1 &
        echo $! >> "$dir/pids"
    done
    for _ in $(seq 60); do
        if etcdctl --endpoints="$ENDPOINTS" --cacert "$certs/ca.crt" --cert "$certs/client.admin.crt" \
            --key "$certs/client.admin.key" endpoint health > /dev/null 2>&1; then
            echo "etcd (TLS) healthy; pids $(xargs < "$dir/pids")"
            return
        fi
        sleep 0.5
    done
    echo "etcd did not become healthy in 30 s; see $dir/n*.log" >&2
    stop
    exit 1
}

stop() {
    local p
    for p in $(pids); do kill -TERM "$p"; done
    for _ in $(seq 40); do [[ -z $(pids) ]] && break; sleep 0.25; done
    for p in $(pids); do kill -KILL "$p"; done
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR CERTS" >&2; exit 2 ;;
esac
