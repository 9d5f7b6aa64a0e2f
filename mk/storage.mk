# Storage benchmark: appends/s and fsyncs/s of the WAL under DiskFirst and MemFirst at batch sizes 1, 10, 100, 1000,
# beside the raw fsync rate of the same disk. Release build; runs in ./.bench-storage (removed afterwards).
STORAGE_SCRATCH ?= $(SCRATCH)
BENCH_STORAGE_ARGS ?=

.PHONY: bench-storage
bench-storage:
	swift build -c release --scratch-path $(STORAGE_SCRATCH) --product storagebench
	$(STORAGE_SCRATCH)/release/storagebench $(BENCH_STORAGE_ARGS)
