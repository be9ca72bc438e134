//! `make demo`: santad in Lockdown on a private tmpfs — one binary allowed by a rule, one
//! unknown binary denied — with the decision log lines it wrote.
//!
//! Safety: santad watches only the tmpfs this program mounts; it is stopped by its pid and the
//! mount is removed when the program ends, also on failure.
//!
//! Linux only (fanotify on a private tmpfs); elsewhere it says so and exits with a failure.

#[cfg(target_os = "linux")]
#[cfg_attr(test, allow(dead_code))] // a test build has no entry point to call it
mod linux;
#[cfg(target_os = "linux")]
use linux::main;

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    santa_testkit::linux_only("demo", "fanotify on a private tmpfs")
}
