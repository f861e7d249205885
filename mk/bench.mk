# mk/bench.mk — `make bench` and its tools (included by the Makefile).
# ---- bench: `make bench` (never part of `make test`) ----------------------------------------------------------
# followupd vs graphile-worker end to end, the scheduler vs PostgreSQL's INSERT rate, callback executions/s and
# the trigger's cost, same machine, same run (bench/run.py; results in bench/RESULTS.md). Uses the PostgreSQL
# that PG* points at when PGHOST is set and reachable, else a throwaway one from pg_virtualenv. BENCH_ARGS passes
# options to bench/run.py (e.g. BENCH_ARGS=--quick); BENCH_PG_WHERE describes the server in RESULTS.md.
BENCH_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                -Wformat=2 -Werror
BENCH_TOOLS := $(BUILD)/bench/sink $(BUILD)/bench/loadgen
GRAPHILE_STAMP := bench/graphile/node_modules/.package-lock.json

$(BUILD)/bench/sink: bench/src/sink.c
	@mkdir -p $(dir $@)
	$(QUIET_LINK)$(CC) $(BENCH_CFLAGS) $(shell pkg-config --cflags jansson) -o $@ $< $(shell pkg-config --libs jansson)

$(BUILD)/bench/loadgen: bench/src/loadgen.c
	@mkdir -p $(dir $@)
	$(QUIET_LINK)$(CC) $(BENCH_CFLAGS) $(shell pkg-config --cflags libpq) -o $@ $< $(shell pkg-config --libs libpq) -pthread

$(GRAPHILE_STAMP): bench/graphile/package.json bench/graphile/package-lock.json
	cd bench/graphile && npm ci --no-audit --no-fund --loglevel=error

.PHONY: bench bench-deps bench-tools
bench-deps: deps
	@missing=$$($(call missing_pkgs,wrk)); \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null || { echo "apt-get install failed" >&2; exit 1; }; \
	fi

bench-tools: $(BIN) $(BENCH_TOOLS)

bench: bench-deps
	$(MAKE) bench-tools $(GRAPHILE_STAMP)
	@if [ -n "$$PGHOST" ] && pg_isready -q; then \
	  BENCH_PG_WHERE="$${BENCH_PG_WHERE:-PGHOST=$$PGHOST:$${PGPORT:-5432}}" $(PYTHON) bench/run.py $(BENCH_ARGS); \
	else BENCH_PG_WHERE="pg_virtualenv -v 15 -o fsync=on" pg_virtualenv -v 15 -o fsync=on $(PYTHON) bench/run.py $(BENCH_ARGS); fi
# ---- end of bench --------------------------------------------------------------------------------------------
