//! What santad's exec backstop (`src/linux/backstop.rs`) costs per exec, measured three ways in one
//! run, as root:
//!
//! 1. The kernel's own accounting (`kernel.bpf_stats_enabled`): the program's run time per
//!    invocation, on the path every exec of a watched filesystem takes (a marked superblock) and
//!    on the report path (a file on a filesystem no one marked, reported, not killed).
//! 2. Per-exec pairs, checks on against checks off: the program stays attached and the two
//!    alternate exec by exec (a map write between execs, outside the timing); the trimmed mean
//!    of the pairwise differences (PERF-NOTES' method).
//! 3. Loaded against not loaded: blocks of execs with the program attached and with no program
//!    at all, the order rotated round by round; medians and trimmed means of each arm.
//!
//! The exec'd file is a static binary on a private tmpfs marked with `FAN_MARK_FILESYSTEM` for
//! `FAN_OPEN_EXEC_PERM` (as santad marks every filesystem) whose inode carries an ignore mark
//! (the kernel allow cache), so fanotify adds the same small cost to every arm and no event
//! reaches user space; a thread answers allow to anything that does arrive. The report path's
//! file is on a second tmpfs nobody marks. Nothing outside these two mounts is held, and the
//! program only reports (Monitor): it kills nothing. Results: stdout and
//! perf/results/backstop-cost.md.
//!
//! Linux only (fanotify and the BPF exec backstop); elsewhere it says so and exits with a failure.

santa_testkit::linux_only_main!("backstop-cost", "fanotify and the BPF exec backstop");
