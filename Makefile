# santad — the commands a user types. See README.md.
CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: deps build run demo demo-sync test check check-macos bench perf perf-backstop perf-sync perf-written-exec perf-configure perf-tools perf-quick flamegraph fuzz-smoke fmt clean

# The system packages the build and tests need, from Debian's packages: clang (it builds santad's
# BPF exec backstop, build.rs), golang-go (the sync tests build Moroz, the Santa sync server
# vendored in ../shared/sync-servers/moroz, offline), prometheus (its promtool checks the
# metrics santad exports: tests/metrics.rs, control/src/metrics.rs), libdbus-1-dev and
# pkg-config (santa-notify links libdbus), and for the desktop-notice tests (tests/notify.rs) a
# session bus, an X server and a notification server: dbus-daemon, dbus-bin (dbus-monitor,
# dbus-send), xvfb, dunst, and systemd's busctl, which `dunstctl history` calls.
deps:
	@missing=; \
	command -v $${CLANG:-clang} >/dev/null 2>&1 || missing="$$missing clang"; \
	command -v go >/dev/null 2>&1 || missing="$$missing golang-go"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	pkg-config --exists dbus-1 2>/dev/null || missing="$$missing libdbus-1-dev"; \
	command -v dbus-daemon >/dev/null 2>&1 || missing="$$missing dbus-daemon"; \
	command -v dbus-monitor >/dev/null 2>&1 || missing="$$missing dbus-bin"; \
	command -v Xvfb >/dev/null 2>&1 || missing="$$missing xvfb"; \
	command -v dunstctl >/dev/null 2>&1 || missing="$$missing dunst"; \
	command -v busctl >/dev/null 2>&1 || missing="$$missing systemd"; \
	[ -z "$$missing" ] || { \
		echo "installing$$missing from Debian's packages"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; }

build: deps
	$(CARGO) build --release --workspace

# santad in the foreground on its embedded default config (needs root on Linux).
run: deps
	$(CARGO) run --release --bin santad --

# An allow and a deny in Lockdown on a private tmpfs, with the log lines (needs root).
demo: deps
	$(CARGO) build --release --bin santad --example demo
	$(TARGET_DIR)/release/examples/demo

# The same host steered by a sync server: the repo's test server sets Lockdown and the rule, and
# receives the blocked execution (needs root).
demo-sync: deps
	$(CARGO) build --release --bin santad --example demo
	$(TARGET_DIR)/release/examples/demo --sync

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

# The whole workspace type-checked and linted for both Apple targets, on this Linux machine:
# nothing is linked or run, and no Apple SDK is needed. Debian's rustc-web, cargo-web,
# rust-web-src and rust-web-clippy (1.96, bookworm-security; rust-web-src carries the standard
# library's source for -Zbuild-std) and the libraries they load are unpacked into
# $(MACOS_TOOLCHAIN), never installed; the system toolchain is untouched. Per-check settings,
# all here (a real Mac build is unaffected):
# - RUSTC_BOOTSTRAP=1: -Zbuild-std, since no prebuilt std for an Apple target is at hand;
# - libsqlite3-sys: told to link a system SQLite (LIBSQLITE3_SYS_USE_PKG_CONFIG, a
#   SQLITE3_LIB_DIR with nothing in it) so that its build script compiles no C and copies its
#   bundled bindings;
# - ring: its build script, which compiles C and assembly for the target, is replaced by an
#   empty override of its `links` key (nothing links, so nothing needs the objects).
MACOS_TOOLCHAIN := $(abspath $(TARGET_DIR))/macos-toolchain
MACOS_TARGETS := aarch64-apple-darwin x86_64-apple-darwin
MACOS_PACKAGES := rustc-web cargo-web rust-web-src rust-web-clippy libstd-rust-web-1.96 \
	libstd-rust-web-dev libllvm22 libgit2-1.5 libmbedtls14 libmbedx509-1 libmbedcrypto7 \
	libhttp-parser2.9
RING_LINKS = ring_core_$(shell sed -n '/^name = "ring"$$/{n;s/^version = "\(.*\)"/\1/p}' Cargo.lock | tr . _)_
check-macos:
	@if [ ! -f $(MACOS_TOOLCHAIN)/.unpacked ]; then \
		echo "fetching $(MACOS_PACKAGES) into $(MACOS_TOOLCHAIN)"; \
		rm -rf $(MACOS_TOOLCHAIN) && mkdir -p $(MACOS_TOOLCHAIN)/debs && cd $(MACOS_TOOLCHAIN)/debs && \
		{ apt-get download $(MACOS_PACKAGES) >/dev/null 2>&1 || \
		  { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get update -qq && \
		    apt-get download $(MACOS_PACKAGES) >/dev/null; }; } && \
		for d in *.deb; do dpkg-deb -x $$d $(MACOS_TOOLCHAIN)/root || exit 1; done && \
		touch $(MACOS_TOOLCHAIN)/.unpacked; \
	fi
	@mkdir -p $(MACOS_TOOLCHAIN)/no-sqlite
	@for t in $(MACOS_TARGETS); do \
		echo "== clippy for $$t"; \
		env PATH=$(MACOS_TOOLCHAIN)/root/usr/bin:$$PATH \
		  LD_LIBRARY_PATH=$(MACOS_TOOLCHAIN)/root/usr/lib/x86_64-linux-gnu \
		  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(MACOS_TOOLCHAIN)/target \
		  LIBSQLITE3_SYS_USE_PKG_CONFIG=1 SQLITE3_LIB_DIR=$(MACOS_TOOLCHAIN)/no-sqlite \
		  cargo clippy -Zbuild-std=std,panic_abort --target $$t --workspace --all-targets \
		    --config "target.$$t.$(RING_LINKS).rustc-link-search=[]" -- -D warnings || exit 1; \
	done

# Benchmarks of the engine, hashing and rules: tables printed and written to perf/results/.
BENCHES := engine-bench hash-bench rules-bench
bench: deps
	$(CARGO) build --release -p santa-perf --bins
	@for b in $(BENCHES); do echo "== $$b"; $(CARGO) run --release -q -p santa-perf --bin $$b || exit 1; done

# The full performance run, as root: the benchmarks above, the first exec of binaries written
# while the listener runs and jemalloc's configure under each listener (their sections of
# perf/RESULTS.md), then the exec storm beside the minimal responder and fapolicyd (installed
# from Debian if missing), santad's RSS; rewrites perf/RESULTS.md (keeping the other benchmarks'
# sections) and perf/results/exec-overhead.svg.
perf: bench perf-backstop perf-sync perf-written-exec perf-configure
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin exec-storm --bin min-responder
	$(TARGET_DIR)/release/exec-storm

# What the exec backstop costs per exec (kernel accounting, checks on/off pairs, loaded against
# not loaded): perf/results/backstop-cost.md. Root. QUICK=1 for a short run.
perf-backstop: deps
	$(CARGO) build --release -p santa-perf --bin backstop-cost
	$(TARGET_DIR)/release/backstop-cost $(if $(QUICK),--quick)

# A sync of 100,000 rules applied by a running santad while execs run: perf/results/sync.md.
perf-sync: deps
	$(CARGO) build --release -p santad -p santa-perf --bin santad --bin sync-bench
	$(TARGET_DIR)/release/sync-bench

# The first exec of a binary written (by a cp copy on the watched image) while the listener runs,
# 2 ms before it: no listener, the minimal responder, santad Monitor, santad Lockdown (transitive
# rules from a compiler-ruled writer), fapolicyd: perf/results/written-exec.md and its section of
# perf/RESULTS.md. Root; needs xfsprogs (the watched image is XFS). QUICK=1 for a short run.
perf-written-exec: deps perf-tools
	$(CARGO) build --release -p santad -p santactl -p santa-perf --bin santad --bin santactl --bin written-exec --bin min-responder
	$(TARGET_DIR)/release/written-exec $(if $(QUICK),--quick)

# jemalloc's autoconf configure (from the crates.io crate tikv-jemalloc-sys, downloaded into the
# build directory once) with a gcc toolchain copied onto the watched image, under each listener:
# wall time, execs, listener CPU; perf/results/configure.md and its section of perf/RESULTS.md.
# Root; needs strace, gcc and xfsprogs. QUICK=1 for a short run; CONFIGURE_LD=gold copies ld.gold
# as the toolchain's ld instead of ld.bfd (perf/results/configure-gold.md).
perf-configure: deps perf-tools
	$(CARGO) build --release -p santad -p santactl -p santa-perf --bin santad --bin santactl --bin configure-bench --bin min-responder
	$(TARGET_DIR)/release/configure-bench $(if $(QUICK),--quick) $(if $(CONFIGURE_LD),--ld $(CONFIGURE_LD))

# What written-exec and configure-bench run besides the build's tools, from Debian's packages:
# mkfs.xfs (xfsprogs: their watched image is XFS) and strace (configure-bench checks the
# toolchain and counts execs with it).
perf-tools:
	@missing=; command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	command -v mkfs.xfs >/dev/null 2>&1 || missing="$$missing xfsprogs"; \
	[ -z "$$missing" ] || { echo "installing$$missing from Debian's packages"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; }

# The same, smaller (a few minutes).
perf-quick: deps perf-tools
	$(CARGO) build --release -p santad -p santactl -p santa-perf --bin santad --bin santactl --bin exec-storm --bin min-responder --bin written-exec --bin configure-bench
	$(TARGET_DIR)/release/written-exec --quick
	$(TARGET_DIR)/release/configure-bench --quick
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
