//! One process, measured: an exec timed from spawn to exit, and a listener's CPU time and
//! resident memory from /proc.

use std::ffi::CString;
use std::time::Instant;

/// Exec `path` with posix_spawn and wait; the elapsed nanoseconds, or the errno of a refusal.
pub(crate) fn spawn_wait(path: &CString) -> Result<u64, i32> {
    let argv = [path.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
    let envp: [*mut libc::c_char; 1] = [std::ptr::null_mut()];
    let start = Instant::now();
    let mut pid: libc::pid_t = 0;
    // SAFETY: path is a NUL-terminated string; argv and envp are NULL-terminated arrays of
    // NUL-terminated strings that live across the call; no file actions or attributes.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    let mut status = 0;
    // SAFETY: waits for the child we just spawned; status is a valid int.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    let elapsed = start.elapsed().as_nanos() as u64;
    if waited != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(libc::ECHILD);
    }
    Ok(elapsed)
}

/// The listener's CPU time so far (all threads), from schedstat, in nanoseconds.
pub(crate) fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// santad's resident memory (kB) from /proc/PID/status.
pub(crate) fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
