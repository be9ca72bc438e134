# santad — the commands a user types. See README.md.
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: build run test check bench perf fmt clean

build:
	$(CARGO) build --release --workspace

# santad in the foreground on its embedded default config (needs root on Linux).
run:
	$(CARGO) run --release --bin santad --

# Everything CI checks: unit, property and end-to-end tests (as root for the fanotify ones).
test:
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Micro/engine benchmarks: tables printed and written to perf/results/.
bench:
	$(CARGO) run --release -p santa-perf --bin engine-bench

# The full performance run (exec storm beside fapolicyd, flamegraphs) arrives with the perf issue;
# until then it runs every benchmark that exists.
perf: bench

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
