# santad — the commands a user types. See README.md.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: deps build run demo test check bench perf perf-backstop perf-quick flamegraph fuzz-smoke fmt clean

# The one system package the build needs: clang, for santad's BPF exec backstop (build.rs).
deps:
	@command -v $${CLANG:-clang} >/dev/null 2>&1 || { \
		echo "installing clang from Debian's packages (it builds santad's BPF exec backstop)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq clang; }

build: deps
	$(CARGO) build --release --workspace

# santad in the foreground on its embedded default config (needs root on Linux).
run: deps
	$(CARGO) run --release --bin santad --

# An allow and a deny in Lockdown on a private tmpfs, with the log lines (needs root).
demo: deps
	$(CARGO) build --release --bin santad --example demo
	$(TARGET_DIR)/release/examples/demo

# Everything CI checks: unit, property and end-to-end tests (as root for the fanotify ones).
test: deps
	$(CARGO) build --bins
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
else
	$(CARGO) test --workspace --no-fail-fast
endif

check: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Benchmarks of the engine, hashing and rules: tables printed and written to perf/results/.
BENCHES := engine-bench hash-bench rules-bench
bench: deps
	$(CARGO) build --release -p santa-perf --bins
	@for b in $(BENCHES); do echo "== $$b"; $(CARGO) run --release -q -p santa-perf --bin $$b || exit 1; done

# The full performance run, as root: the benchmarks above, then the exec storm beside the minimal
# responder and fapolicyd (installed from Debian if missing), santad's RSS; rewrites
# perf/RESULTS.md and perf/results/exec-overhead.svg.
perf: bench perf-backstop
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm

# What the exec backstop costs per exec (kernel accounting, checks on/off pairs, loaded against
# not loaded): perf/results/backstop-cost.md. Root. QUICK=1 for a short run.
perf-backstop: deps
	$(CARGO) build --release -p santa-perf --bin backstop-cost
	$(TARGET_DIR)/release/backstop-cost $(if $(QUICK),--quick)

# The same, smaller (a few minutes).
perf-quick: deps
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm --quick

# santad under the exec storm, sampled with `perf record -e cpu-clock`: perf/results/flamegraph.svg.
flamegraph: deps
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm --quick --flamegraph

# Every fuzz target of fuzz/ (its own workspace; one [[bin]] each in fuzz/Cargo.toml), built by
# cargo-fuzz on the stable toolchain (no sanitizer, debug assertions on: see fuzz/README.md) and
# run FUZZ_SECONDS seconds each from its seeds (fuzz/seeds/NAME, plus the real Mach-O fixtures
# for the targets in FUZZ_FIXTURE_TARGETS); new inputs go to fuzz/corpus/NAME, crashes to
# fuzz/artifacts/NAME. Installs cargo-fuzz from crates.io when it is missing.
FUZZ_SECONDS ?= 20
FUZZ_FIXTURES ?= ../shared/fixtures/macho
FUZZ_FIXTURE_TARGETS := macho
fuzz-smoke: deps
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(CARGO) fuzz build -s none -a --target-dir $(TARGET_DIR)/fuzz
	@for t in $$($(CARGO) fuzz list); do \
		mkdir -p fuzz/corpus/$$t; \
		seeds=""; [ -d fuzz/seeds/$$t ] && seeds=fuzz/seeds/$$t; \
		case " $(FUZZ_FIXTURE_TARGETS) " in *" $$t "*) seeds="$$seeds $(FUZZ_FIXTURES)";; esac; \
		echo "== fuzz $$t: $(FUZZ_SECONDS) s from fuzz/corpus/$$t $$seeds"; \
		$(CARGO) fuzz run -s none -a --target-dir $(TARGET_DIR)/fuzz $$t fuzz/corpus/$$t $$seeds -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=262144 -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 || exit 1; \
	done

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
