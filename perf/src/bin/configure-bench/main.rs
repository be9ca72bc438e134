//! configure-bench: a real autoconf `configure` run inside the watched mount, under each
//! listener.
//!
//! `configure-bench [--quick] [--rounds N] [--only CONFIG,...]` (run by `make perf` and
//! `make perf-configure`, as root; `--help` lists the options).
//!
//! The script is jemalloc's, as vendored (with its generated `configure`) in the crates.io crate
//! `tikv-jemalloc-sys`, downloaded at run time into the build directory (`perf-downloads/`,
//! cached, checked against the SHA-256 in the crates.io index) and never committed. Each run
//! copies the sources into a fresh directory on a private ext2 image (the watched mount) and
//! runs `sh configure` there with the arguments the crate's build script gives it, with
//! `CC="<image>/toolchain/gcc -B<image>/toolchain/"`: copies of the gcc driver, cc1, as, collect2
//! and ld.bfd (`--ld gold`: ld.gold) on the watched image, so that the compiler's execs are ones the listeners see
//! (checked at setup with strace: a test compile runs those five and nothing else). Everything
//! else configure runs (sh, sed, grep, rm, …) lives on the unwatched root filesystem.
//!
//! Configurations, interleaved run by run in rotating order: no listener, the minimal
//! responder, santad Monitor, santad Lockdown (`EnableTransitiveRules = true`, a compiler rule
//! for each toolchain copy, binary allow rules for the scripts of the source tree), fapolicyd
//! (enforcing, `integrity = sha256`, the toolchain copies trusted, a `dir=` rule for the build
//! directories). Reported: wall time (median and spread), execs (counted once, with strace, on a
//! separate run with no listener; and santad's own log lines in each of its runs), the
//! listener's CPU time (/proc/PID/stat utime + stime), and whether each run's results (the
//! generated headers) match the run with no listener.
//!
//! Safety: the listeners watch only the private ext2 image this program mounts (santad and the
//! minimal responder by mount mark, fapolicyd by `watch_fs = ext2`); each is stopped by the pid
//! we started, and the image is unmounted at the end, also on failure.
//!
//! Writes perf/results/configure.md and its section of perf/RESULTS.md.

santa_testkit::linux_only_main!("configure-bench", "fanotify, fapolicyd");
