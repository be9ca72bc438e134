//! written-exec: the first exec of a binary written while the listener runs, as a build runs
//! what it has just linked.
//!
//! `written-exec [--quick] [--rounds N] [--execs N] [--only CONFIG,...]` (run by `make perf`
//! and `make perf-written-exec`, as root; `--help` lists the options).
//!
//! While each listener runs, every iteration writes a fresh, distinct executable (the harness's
//! static ~760 KB `exit 0`, its bytes patched with a salt unique to the run, round and
//! iteration), mode 0755, into the watched mount with a plain open/write/close — the writer is
//! a copy of `/bin/cp` that lives on the watched mount, the same in every configuration — and an
//! identical copy onto the unwatched control tmpfs, pauses 2 ms (as a build would between the
//! link and the run), then execs the two once each, alternately (PERF-NOTES' method). The
//! overhead is the trimmed mean of the per-exec (watched − control) differences minus the same
//! with no listener, in the same run; configurations are interleaved round by round in
//! rotating order, and each is compared with the minimal responder.
//!
//! santad in Lockdown cannot have an allow rule for content nobody has seen: it runs with
//! `EnableTransitiveRules = true`, and the cp copy has a compiler rule (`santactl rule
//! --compiler --sha256 …`), so what it writes and closes gets a transitive allow. fapolicyd
//! (integrity sha256) trusts the cp copy and allows execution under the output directory with a
//! `dir=` rule: it has no transitive trust.
//!
//! Safety: the listeners watch only the private ext2 image this program mounts (santad and the
//! minimal responder by mount mark, fapolicyd by `watch_fs = ext2`); each is stopped by the pid
//! we started, and both mounts are removed at the end, also on failure.
//!
//! Writes perf/results/written-exec.md and its section of perf/RESULTS.md.

santa_testkit::linux_only_main!("written-exec", "fanotify, fapolicyd");
