//! santa-notify: a per-user agent that shows santad's block notices for its user as desktop
//! notifications.
//!
//! Data flow: a thread keeps one connection to santad's control socket open with
//! [`santa_control::Request::WatchBlocks`] (reconnecting with backoff when santad restarts) and
//! passes each [`santa_control::BlockEvent`] over a bounded channel to the main thread, which
//! turns it into a notice ([`notice::Notice`]: Santa's block message, the file, the reason) and
//! calls `Notify` on the session bus's `org.freedesktop.Notifications`, with the event detail
//! URL as an action. When the user invokes it (`ActionInvoked`), the URL is opened with
//! `xdg-open` (or `--opener`).
//!
//! santad decides who sees what: a watcher gets the blocks of its own uid's executions, and only
//! those santad did not silence (silent rules, `EnableSilentMode`).
// On macOS only `main` below is built into a program; the rest is type-checked.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

mod notice;
mod watch;

#[cfg(target_os = "linux")]
mod desktop;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    // The workspace type-checks for macOS; this agent does not run there (Santa's own GUI
    // shows block notices on macOS).
    eprintln!("santa-notify: Linux only (freedesktop desktop notifications over D-Bus)");
    std::process::ExitCode::FAILURE
}
