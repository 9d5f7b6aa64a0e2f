#!/usr/bin/env bash
# Local example cluster: start, stop and inspect dnode processes that run from config/nN.toml.
#
#   scripts/cluster.sh start [N...]    start nodes (default 1 2 3) in the background, wait for a leader
#   scripts/cluster.sh stop [N...]     SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL (default: every pid file)
#   scripts/cluster.sh status [N...]   one line per node from its /status (default 1..5 with a config)
#
# Files (relative to the repository root): config/nN.toml, run/nN.pid, logs/N/stdout.log (stdout and stderr),
# logs/N/d.log (the node's own log, from log_dir), db/N (data, from db_root_dir).
#
# Environment: DNODE_BIN (default .build/release/dnode), START_TIMEOUT (15 s), STOP_TIMEOUT (10 s), LOG_LEVEL
# (passed to the nodes as it is). HTTP goes through curl, or python3 when curl is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DNODE_BIN=${DNODE_BIN:-.build/release/dnode}
START_TIMEOUT=${START_TIMEOUT:-15}
STOP_TIMEOUT=${STOP_TIMEOUT:-10}
RUN_DIR=run

die() {
    echo "cluster: $*" >&2
    exit 1
}

config_of() { echo "config/n$1.toml"; }
pidfile_of() { echo "$RUN_DIR/n$1.pid"; }

# The first `key = "value"` string of a TOML file (good enough for the flat keys used here).
toml_string() {
    sed -n -E "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\1/p" "$1" | head -n 1
}

# host:port as a client dials it: wildcard hosts become 127.0.0.1.
dial_address() {
    local address=$1 host port
    host=${address%:*}
    port=${address##*:}
    case "$host" in
        0.0.0.0 | "" | "::" | "[::]") host=127.0.0.1 ;;
    esac
    echo "$host:$port"
}

metrics_of() { dial_address "$(toml_string "$(config_of "$1")" metrics_address)"; }
client_of() { dial_address "$(toml_string "$(config_of "$1")" listen_address)"; }

# GET a URL with a 1 s deadline; prints the body, fails on connection errors and non-2xx answers.
http_get() {
    if command -v curl > /dev/null 2>&1; then
        curl -fsS --max-time 1 "$1" 2> /dev/null
    else
        python3 - "$1" << 'EOF' 2> /dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=1) as response:
    sys.stdout.write(response.read().decode("utf-8", "replace"))
EOF
    fi
}

# The first occurrence of a field in a JSON document: strings without quotes, numbers and null as they are.
# (Top-level fields of /status come before `peers`, whose entries also have an `address`.)
json_field() {
    grep -o -E "\"$2\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|[-0-9.eE+]+|null|true|false)" <<< "$1" | head -n 1 \
        | sed -E 's/^"[^"]*"[[:space:]]*:[[:space:]]*//; s/^"(.*)"$/\1/'
}

# The pid of node N if its pid file names a live dnode process, else nothing (and a stale file is removed).
live_pid() {
    local file pid
    file=$(pidfile_of "$1")
    [[ -f $file ]] || return 1
    pid=$(< "$file")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2> /dev/null \
        && tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | grep -q dnode; then
        echo "$pid"
        return 0
    fi
    rm -f "$file"
    return 1
}

node_tail() {
    local n=$1
    for file in "logs/$n/stdout.log" "logs/$n/d.log"; do
        if [[ -s $file ]]; then
            echo "---- $file (last 20 lines)" >&2
            tail -n 20 "$file" >&2
        fi
    done
}

# Prints "leader: node N (term T) at ADDRESS" and succeeds once some running node reports role leader.
find_leader() {
    local n body role term address
    for n in 1 2 3 4 5; do
        [[ -f $(config_of "$n") ]] || continue
        body=$(http_get "http://$(metrics_of "$n")/status") || continue
        role=$(json_field "$body" role)
        [[ $role == leader ]] || continue
        term=$(json_field "$body" term)
        address=$(json_field "$body" address)
        echo "leader: node $n (term $term) at ${address:-$(client_of "$n")}"
        return 0
    done
    return 1
}

cmd_start() {
    local nodes=("$@") n pid started=()
    ((${#nodes[@]})) || nodes=(1 2 3)
    [[ -x $DNODE_BIN ]] || die "$DNODE_BIN not found: run 'make build' first"
    for n in "${nodes[@]}"; do
        [[ -f $(config_of "$n") ]] || die "no config for node $n ($(config_of "$n"))"
        if pid=$(live_pid "$n"); then
            die "node $n is already running (pid $pid); 'make stop-cluster' first"
        fi
    done
    mkdir -p "$RUN_DIR"
    for n in "${nodes[@]}"; do
        mkdir -p "logs/$n"
        echo "--- start $(date -Is)${LOG_LEVEL:+ LOG_LEVEL=$LOG_LEVEL}" >> "logs/$n/stdout.log"
        CONFIG_PATH="config/n$n" nohup "$DNODE_BIN" >> "logs/$n/stdout.log" 2>&1 < /dev/null &
        echo $! > "$(pidfile_of "$n")"
        started+=("$n")
        echo "node $n: pid $!, client $(client_of "$n"), metrics $(metrics_of "$n"), log logs/$n/"
    done

    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        for n in "${started[@]}"; do
            if ! live_pid "$n" > /dev/null; then
                echo "cluster: node $n exited during start-up" >&2
                node_tail "$n"
                exit 1
            fi
        done
        if find_leader; then
            return 0
        fi
        sleep 0.2
    done
    echo "cluster: no node reported role leader within ${START_TIMEOUT}s (nodes keep running; 'make stop-cluster' stops them)" >&2
    for n in "${started[@]}"; do node_tail "$n"; done
    exit 1
}

cmd_stop() {
    local nodes=("$@") n pid file pending=() remaining
    if ((${#nodes[@]} == 0)); then
        for file in "$RUN_DIR"/n*.pid; do
            [[ -e $file ]] || continue
            n=${file##*/n}
            nodes+=("${n%.pid}")
        done
    fi
    for n in "${nodes[@]}"; do
        if pid=$(live_pid "$n"); then
            kill -TERM "$pid" 2> /dev/null || true
            pending+=("$n:$pid")
        else
            echo "node $n: not running"
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while ((${#pending[@]})) && ((SECONDS < deadline)); do
        remaining=()
        for entry in "${pending[@]}"; do
            if kill -0 "${entry#*:}" 2> /dev/null; then
                remaining+=("$entry")
            else
                echo "node ${entry%%:*}: stopped"
                rm -f "$(pidfile_of "${entry%%:*}")"
            fi
        done
        pending=(${remaining[@]+"${remaining[@]}"})
        ((${#pending[@]})) && sleep 0.1
    done
    for entry in ${pending[@]+"${pending[@]}"}; do
        kill -KILL "${entry#*:}" 2> /dev/null || true
        echo "node ${entry%%:*}: killed (no exit within ${STOP_TIMEOUT}s of SIGTERM)"
        rm -f "$(pidfile_of "${entry%%:*}")"
    done
}

cmd_status() {
    local nodes=("$@") n body pid
    if ((${#nodes[@]} == 0)); then
        for n in 1 2 3 4 5; do [[ -f $(config_of "$n") ]] && nodes+=("$n"); done
    fi
    for n in "${nodes[@]}"; do
        pid=$(live_pid "$n") || pid=""
        if body=$(http_get "http://$(metrics_of "$n")/status"); then
            printf 'node %s: %-9s term %-4s leader %-4s commit %-8s applied %-8s last %-8s%s\n' "$n" \
                "$(json_field "$body" role)" "$(json_field "$body" term)" "$(json_field "$body" leader_id)" \
                "$(json_field "$body" commit_index)" "$(json_field "$body" applied_index)" \
                "$(json_field "$body" last_log_index)" "${pid:+ pid $pid}"
        elif [[ -n $pid ]]; then
            echo "node $n: not answering on $(metrics_of "$n") (pid $pid)"
        else
            echo "node $n: down"
        fi
    done
}

command=${1:-}
shift || true
case "$command" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    *)
        echo "usage: $0 start|stop|status [N...]" >&2
        exit 64
        ;;
esac
