//! `make perf-sync`: a rule download of 100,000 rules applied by a running santad, with how long
//! it takes and what execs see meanwhile.
//!
//! The repo's sync test server (`santa-sync`'s `testserver`, real HTTP on loopback) serves one
//! page of 100,000 Binary block rules (random hashes, as a fleet's block list). santad runs in
//! Monitor on a private tmpfs, synced once at start with nothing to apply. A tool on the tmpfs
//! is exec'd in a loop: first alone (the baseline), then while `santactl sync` downloads and
//! applies the rules (one SQLite transaction, the snapshot rebuilt and swapped, the caches
//! flushed: more than 1,000 block rules always flush, as in Santa). Reported: the sync's wall
//! time, the apply time santad measured, and the exec latency tails of both phases.
//!
//! Safety: santad watches only the tmpfs this program mounts and is killed by its pid at the
//! end, also on failure; the server listens on loopback only. Results: stdout and
//! perf/results/sync.md.

santa_testkit::linux_only_main!("sync-bench", "fanotify on a private tmpfs");
