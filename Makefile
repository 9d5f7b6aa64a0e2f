# dengine-swift: build, run a local 3-node cluster, test, simulate, profile.
# `make` (or `make help`) lists the targets. `LOG_LEVEL=debug make start-cluster` passes LOG_LEVEL to the nodes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

SWIFT ?= swift
SWIFT_BUILD_FLAGS ?=
SWIFT_TEST_FLAGS ?=
# swift build's --scratch-path (several clones building side by side each use their own).
SCRATCH ?= .build
export SCRATCH
RELEASE_DIR := $(SCRATCH)/release
DNODE := $(RELEASE_DIR)/dnode
DCTL := $(RELEASE_DIR)/dctl
SEEDS ?= 2000
START ?= 1
PLANT ?=
PERF_SECONDS ?= 20
DURATION ?= 600
SEED ?= 1
NODES ?= 3
FAULTS ?=
CHAOS_FLAGS ?=

# LOG_LEVEL reaches the nodes whether it is set in the environment or on the make command line.
ifdef LOG_LEVEL
export LOG_LEVEL
endif

include mk/storage.mk

.PHONY: help build start-cluster start-secure-cluster join-node4-secure join-node5-secure stop-cluster status-cluster start-node1 start-node2 start-node3 join-node4 \
	join-node5 clean clean-log-db test sim perf-cluster dtop bench bench-etcd bench-alloc bench-memory chaos

help: ## List the targets
	@echo "make TARGET, where TARGET is one of:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort -u \
		| awk 'BEGIN { FS = ":.*## " } { printf "  %-16s %s\n", $$1, $$2 }'
	@echo "  bench-storage    WAL appends/s and fsyncs/s under DiskFirst and MemFirst (mk/storage.mk)"
	@echo
	@echo "Variables: LOG_LEVEL (node log level), SWIFT_TEST_FLAGS (make test), SEEDS (make sim, default $(SEEDS)),"
	@echo "PERF_SECONDS (make perf-cluster, default $(PERF_SECONDS)), SWIFT_BUILD_FLAGS (make build), SCRATCH (swift build"
	@echo "--scratch-path, default .build). make bench*: DURABILITY, ROUNDS, DURATION, ... (docs/dbench.md)."
	@echo "DURATION, SEED, NODES, PLANT, FAULTS, CHAOS_FLAGS (make chaos: seconds, seed, 3|5 nodes, planted bug,"
	@echo "fault kinds, more dchaos options)."

build: $(DNODE) $(DCTL) $(RELEASE_DIR)/dtop ## Release build of dnode, dctl and dtop (SCRATCH/release, SCRATCH defaults to .build)

# Each binary is rebuilt only when a source file or the manifest is newer: targets that need the binaries (join-node4,
# start-cluster, ...) start at once when nothing changed. `touch` marks a binary that swift build found up to date.
BUILD_INPUTS := Package.swift $(shell find Sources -type f 2> /dev/null)
$(RELEASE_DIR)/%: $(BUILD_INPUTS)
	$(SWIFT) build -c release --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS) --product $*
	@touch $@

start-cluster: build ## Build, start nodes 1-3 in the background (run/, logs/N/), wait for a leader
	$(DCTL) cluster start

start-secure-cluster: build ## The same with TLS, mutual TLS and roles (config/secure); makes certs/ if missing
	$(DCTL) cluster start --config-dir config/secure

stop-cluster: ## Stop every node started in the background (SIGTERM, then SIGKILL after 10 s)
	@[ -x $(DCTL) ] || $(SWIFT) build -c release --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS) --product dctl
	$(DCTL) cluster stop

status-cluster: ## The status table of the local nodes (dctl status): one row per node, or why it is down
	@[ -x $(DCTL) ] || $(SWIFT) build -c release --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS) --product dctl
	$(DCTL) status

start-node1: build ## Run node 1 in the foreground (config/n1.toml)
	CONFIG_PATH=config/n1 $(DNODE)

start-node2: build ## Run node 2 in the foreground (config/n2.toml)
	CONFIG_PATH=config/n2 $(DNODE)

start-node3: build ## Run node 3 in the foreground (config/n3.toml)
	CONFIG_PATH=config/n3 $(DNODE)

join-node4: build ## Start node 4 (config/n4.toml): it joins as a learner; then `dctl promote 4 --wait`
	$(DCTL) join 4

join-node5: build ## Start node 5 (config/n5.toml): it joins as a learner; then `dctl promote 5 --wait`
	$(DCTL) join 5

join-node4-secure: build ## join-node4 for the secure cluster (config/secure/n4.toml, certs/node.4.crt)
	$(DCTL) join 4 --config-dir config/secure

join-node5-secure: build ## join-node5 for the secure cluster (config/secure/n5.toml, certs/node.5.crt)
	$(DCTL) join 5 --config-dir config/secure

clean: ## swift package clean, and remove db/, logs/, run/ (certs/ stays: remove it by hand)
	$(SWIFT) package clean --scratch-path $(SCRATCH)
	rm -rf db logs run

clean-log-db: ## Remove db/ and logs/ (the cluster's data and logs)
	rm -rf db logs

# Suites run one at a time: the process-level suites (real dnode, dctl, dtop in tmux) share two cores and the
# port range, and a suite that blocks a thread must not starve another's timers. About a minute of tests.
test: ## swift test --no-parallel (SWIFT_TEST_FLAGS, e.g. "--skip ClusterTests" or "--filter ClusterTests")
	$(SWIFT) test --scratch-path $(SCRATCH) --no-parallel $(SWIFT_TEST_FLAGS)

# Planted bugs exist only in builds compiled with PLANTED_BUGS (debug builds, and this separate release build):
# `make sim|chaos PLANT=bug` builds there, so the release binaries of SCRATCH/release never contain them.
PLANTED_SCRATCH := $(SCRATCH)/planted
PLANTED_FLAGS := -c release --scratch-path $(PLANTED_SCRATCH) -Xswiftc -DPLANTED_BUGS $(SWIFT_BUILD_FLAGS)
SIM_FLAGS = $(if $(PLANT),$(PLANTED_FLAGS),-c release --scratch-path $(SCRATCH) $(SWIFT_BUILD_FLAGS))

sim: ## Deterministic Raft simulation over SEEDS seeds from START (release build); PLANT=bug plants a bug
	$(SWIFT) build $(SIM_FLAGS) --product raftsim
	"$$($(SWIFT) build $(SIM_FLAGS) --show-bin-path)/raftsim" --seeds $(SEEDS) --start $(START) $(if $(PLANT),--plant $(PLANT),)

# The torture test (docs/chaos.md): real nodes, a seeded nemesis, a linearizability check. Partitions need root
# (network namespaces and iptables); without it they are skipped with a note. Exit 0 valid, 1 violation, 2 unknown.
chaos: ## Torture test: DURATION (s, default 600), SEED, NODES=3|5, PLANT=bug, FAULTS=kind,... (release build)
	$(SWIFT) build $(SIM_FLAGS) --product dnode
	$(SWIFT) build $(SIM_FLAGS) --product dchaos
	bin="$$($(SWIFT) build $(SIM_FLAGS) --show-bin-path)" && "$$bin/dchaos" --duration $(DURATION) \
		--seed $(SEED) --nodes $(NODES) $(if $(PLANT),--plant $(PLANT),) $(if $(FAULTS),--faults $(FAULTS),) $(CHAOS_FLAGS)

perf-cluster: ## perf record every running node for PERF_SECONDS under load; reports in perf/DATE/nN.txt
	PERF_SECONDS=$(PERF_SECONDS) scripts/perf-cluster.sh

dtop: $(RELEASE_DIR)/dtop ## Live dashboard of the local cluster (builds dtop first)
	$(RELEASE_DIR)/dtop

# Benchmarks (docs/dbench.md): release build, a dedicated fresh three-node cluster on 9081-9083 (stop the local
# cluster first), the standard dbench scenarios; reports in benches/reports/DATE/. Knobs: DURABILITY (DiskFirst |
# MemFirst), ROUNDS, DURATION, HC_CONNS, SCENARIOS, PRELOAD (see scripts/bench.sh). Not part of make test.
bench: ## dbench scenarios against a fresh local cluster; benches/reports/DATE/report-DURABILITY.md and .csv
	scripts/bench.sh

bench-etcd: ## The same, side by side with a 3-member etcd (fsync on), alternating; prints and writes the ratios
	WITH_ETCD=1 scripts/bench.sh

bench-alloc: ## Heap allocations and CPU per put and lease get (perf uprobes on libc); benches/reports/DATE/alloc-DURABILITY.md
	scripts/bench-alloc.sh

bench-memory: ## Node RSS under a write load of MEM_SECONDS (600); benches/reports/DATE/memory-DURABILITY.md
	scripts/bench-memory.sh
