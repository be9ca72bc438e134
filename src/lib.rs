//! santad: the daemon's library half (config, event sources, wiring, control protocol).
//!
//! Building blocks that do not depend on the engine, signing or rules crates:
//! - [`fanotify`]: the Linux event source (group, marks, reads, responses, kernel allow cache).
//! - [`mount`]: a private tmpfs or loop-mounted ext2 guard for tests, benchmarks and the demo.
//! - [`eventlog`]: the decision log (Santa's line format, JSON lines, bounded ring, logger thread).
//! - [`procinfo`]: process facts from /proc (ids, names, args, tty) into fixed-size records.
//! - [`blockmsg`]: Santa's block message on the blocked process's terminal (queue + thread).
//! - [`config`]: the TOML configuration with Santa's key names, validated key by key.

#[cfg(target_os = "linux")]
pub mod fanotify;
#[cfg(target_os = "linux")]
pub mod mount;
#[cfg(target_os = "linux")]
pub mod procinfo;

pub mod blockmsg;
pub mod config;
pub mod eventlog;
