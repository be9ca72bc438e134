//! The mechanism's floor: a minimal allow-everything fanotify responder (one thread, one mark,
//! `FAN_OPEN_EXEC_PERM` only), as the exec-storm harness compares santad against it.
//!
//! `min-responder MOUNT`: marks only MOUNT (the harness's private mount, never `/`), answers
//! every exec with allow, and stops on SIGTERM/SIGINT (the kernel releases anything held).
//!
//! Linux only (fanotify); elsewhere it says so and exits with a failure.

#[cfg(target_os = "linux")]
#[cfg_attr(test, allow(dead_code))] // a test build has no entry point to call it
mod linux;
#[cfg(target_os = "linux")]
use linux::main;

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    santa_testkit::linux_only("min-responder", "fanotify")
}
