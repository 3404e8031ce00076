# The capture benchmark of issue 5 (bench/README.md). Included by the top-level Makefile.
# BENCH_ARGS passes options through, e.g. `make bench BENCH_ARGS=--quick`.
BENCH_ARGS ?=
PROFILE_ARGS ?=

.PHONY: bench
bench: install pgbouncer ## Benchmark: wrk + pgbench on the local PostgreSQL, table and bench/results/<date>.md
	$(BIN)/python bench/run.py $(BENCH_ARGS)

.PHONY: profile
profile: install ## py-spy profile of the capture endpoint under wrk -> bench/results/profile-<date>.txt
	$(BIN)/python bench/run.py --profile $(PROFILE_ARGS)

BENCH_IMPORT_ARGS ?=

.PHONY: bench-import
bench-import: install ## Import/export benchmark: 1M generated rows on SQLite and PostgreSQL -> bench/results/import-<date>.md
	$(BIN)/python bench/import_run.py $(BENCH_IMPORT_ARGS)
