# santad — the commands a user types. See README.md.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: build run demo test check bench perf perf-quick flamegraph fmt clean

build:
	$(CARGO) build --release --workspace

# santad in the foreground on its embedded default config (needs root on Linux).
run:
	$(CARGO) run --release --bin santad --

# An allow and a deny in Lockdown on a private tmpfs, with the log lines (needs root).
demo:
	$(CARGO) build --release --bin santad --example demo
	$(TARGET_DIR)/release/examples/demo

# Everything CI checks: unit, property and end-to-end tests (as root for the fanotify ones).
test:
	$(CARGO) build --bins
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks of the engine, hashing and rules: tables printed and written to perf/results/.
BENCHES := engine-bench hash-bench rules-bench
bench:
	$(CARGO) build --release -p santa-perf --bins
	@for b in $(BENCHES); do echo "== $$b"; $(CARGO) run --release -q -p santa-perf --bin $$b || exit 1; done

# The full performance run, as root: the benchmarks above, then the exec storm beside the minimal
# responder and fapolicyd (installed from Debian if missing), santad's RSS; rewrites
# perf/RESULTS.md and perf/results/exec-overhead.svg.
perf: bench
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm

# The same, smaller (a few minutes).
perf-quick:
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm --quick

# santad under the exec storm, sampled with `perf record -e cpu-clock`: perf/results/flamegraph.svg.
flamegraph:
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm --quick --flamegraph

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
