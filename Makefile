# santad — the commands a user types. See README.md.
CARGO ?= cargo
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: build run demo test check bench perf fmt clean

build:
	$(CARGO) build --release --workspace

# santad in the foreground on its embedded default config (needs root on Linux).
run:
	$(CARGO) run --release --bin santad --

# An allow and a deny in Lockdown on a private tmpfs, with the log lines (needs root).
demo:
	$(CARGO) build --release --bin santad --example demo
	$(or $(CARGO_TARGET_DIR),target)/release/examples/demo

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

# Benchmarks of the engine, hashing and rules: tables printed and written to perf/results/.
BENCHES := engine-bench hash-bench rules-bench
bench:
	$(CARGO) build --release -p santa-perf --bins
	@for b in $(BENCHES); do echo "== $$b"; $(CARGO) run --release -q -p santa-perf --bin $$b || exit 1; done

# The full performance run (exec storm beside fapolicyd, flamegraphs) arrives with the perf issue;
# until then it runs every benchmark that exists.
perf: bench

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
