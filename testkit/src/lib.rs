//! santa-testkit, dev-only: what santad's tests, benchmarks and demo share, so that none of them
//! touches the host. Nothing here is linked into santad or santactl.
//!
//! [`PrivateMount`] is a mount that exists only for one test, benchmark or demo, and is gone
//! afterwards — also when the code using it panics or fails half-way.
//!
//! Why: a fanotify permission listener that hangs blocks every exec it watches. Tests and
//! benchmarks therefore mark only a mount they created themselves, never `/` or any mount of the
//! host. A fresh tmpfs is the usual choice; a loop-mounted ext2 image gives a filesystem type that
//! nothing else on the host uses (fapolicyd's `watch_fs` can then be pointed at it alone).
//!
//! Creation: a new directory under the system temp dir (`mkdtemp`, mode 0700), then `mount(2)`.
//! Drop: `umount2(dir, 0)`, falling back to `MNT_DETACH` (lazy) when the mount is busy — a test
//! thread may still hold an fd on it — then `rmdir` and, for an image, removal of the image file.
//! Needs root (`CAP_SYS_ADMIN`). Linux only (the mount calls are Linux's).
//!
//! Also [`Rng`], the seeded generator of the randomized tests, [`count_in_parallel`], the
//! thread pool of the storm tests, [`BplistTrailer`], for hand-built binary plists, and
//! [`universal`], for universal Mach-O files assembled from the slices of real ones, and
//! [`moroz`], the Santa sync server Moroz built and run for the sync tests, and
//! [`promtool_check_metrics`], Prometheus's linter over an exposition.

mod bplist;
pub mod moroz;
#[cfg(target_os = "linux")]
mod mount;
mod parallel;
mod process;
mod promtool;
mod rng;
mod universal;

pub use bplist::BplistTrailer;
#[cfg(target_os = "linux")]
pub use mount::*;
pub use parallel::count_in_parallel;
pub use process::{KillOnDrop, built_binary, start_santad};
pub use promtool::promtool_check_metrics;
pub use rng::Rng;
pub use universal::{FatSlice, slices_of, universal};

/// What a Linux-only benchmark or example does elsewhere: says so and fails.
pub fn linux_only(program: &str, needs: &str) -> std::process::ExitCode {
    eprintln!("{program}: Linux only ({needs})");
    std::process::ExitCode::FAILURE
}

/// The `main.rs` of a Linux-only program whose code is its `linux.rs` (with a `main`): on Linux
/// that `main`, elsewhere [`linux_only`], so the workspace still type-checks for macOS.
#[macro_export]
macro_rules! linux_only_main {
    ($program:literal, $needs:literal) => {
        #[cfg(target_os = "linux")]
        #[cfg_attr(test, allow(dead_code))] // a test build has no entry point to call it
        mod linux;
        #[cfg(target_os = "linux")]
        use linux::main;
        #[cfg(not(target_os = "linux"))]
        fn main() -> std::process::ExitCode {
            $crate::linux_only($program, $needs)
        }
    };
}
