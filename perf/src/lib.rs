//! santad's benchmarks and harnesses: shared helpers for the binaries in `src/bin/`.
//!
//! Every benchmark prints a markdown table and writes it to `perf/results/`, with the machine it
//! ran on and the command that reproduces it. Figures are tails (p50/p99/p99.9/max) and ratios
//! against a baseline measured in the same run: these machines are shared and noisy.

#[cfg(target_os = "linux")]
pub mod fapolicyd;
#[cfg(target_os = "linux")]
pub mod image;
#[cfg(target_os = "linux")]
pub mod listen;
pub mod stats;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace's counting allocator, shared with the signing tests, the fuzz targets and the
/// hot path's no-allocation test (included by path: it depends on `std` alone).
#[path = "../../signing/tests/common/counting_alloc.rs"]
mod counting_alloc;

/// A global allocator that counts allocations (and reallocations) and defers to the system's.
/// Install it with `#[global_allocator]` in a benchmark binary, read it with [`allocations`].
pub use counting_alloc::Counting as CountingAlloc;
/// Allocations so far in this process (when [`CountingAlloc`] is the global allocator).
pub use counting_alloc::allocations;

/// One line naming the machine: CPU model, cores, kernel, date.
pub fn machine_summary() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("Machine: {cpu}, {cores} cores, Linux {kernel}; run {date}.")
}

/// The `perf/results` directory of this checkout.
pub fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Writes `text` to `perf/results/<name>`, creating the directory; returns the path.
pub fn write_result(name: &str, text: &str) -> std::io::Result<PathBuf> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// How many tasks the kernel has runnable right now, machine-wide (`procs_running` in
/// /proc/stat; the reader itself is one of them).
pub fn procs_running() -> Option<u32> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("procs_running "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits, at most `max`, until the machine is quiet: at most `running_max` runnable tasks in
/// five samples 100 ms apart (other builds share these cores, in bursts). Returns how long it
/// waited and whether it got there.
pub fn wait_quiet(running_max: u32, max: std::time::Duration) -> (std::time::Duration, bool) {
    let start = Instant::now();
    let mut calm = 0;
    while start.elapsed() < max {
        if procs_running().is_some_and(|n| n <= running_max) {
            calm += 1;
            if calm >= 5 {
                return (start.elapsed(), true);
            }
        } else {
            calm = 0;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (start.elapsed(), false)
}

/// `perf/RESULTS.md` of this checkout.
pub fn results_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")
}

fn section_markers(key: &str) -> (String, String) {
    (
        format!("<!-- section {key}: written by its benchmark, kept by exec-storm -->"),
        format!("<!-- end of section {key} -->"),
    )
}

/// The sections of `text` that a benchmark other than exec-storm wrote (see
/// [`write_results_section`]), each with its markers, in order.
pub fn results_sections(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- section ") {
        let after = &rest[start + "<!-- section ".len()..];
        let Some(key) = after.split(':').next().map(str::to_string) else {
            break;
        };
        let (_, end) = section_markers(&key);
        let Some(stop) = rest[start..].find(&end) else {
            break;
        };
        let stop = start + stop + end.len();
        out.push((key, rest[start..stop].to_string()));
        rest = &rest[stop..];
    }
    out
}

/// `report` (exec-storm's new RESULTS.md) followed by every section of `old` (the file it
/// replaces) that `report` does not have: the other benchmarks' sections survive a rerun of
/// exec-storm.
pub fn keep_results_sections(report: &str, old: &str) -> String {
    let mut out = report.trim_end().to_string();
    out.push('\n');
    let have: Vec<String> = results_sections(report)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (key, section) in results_sections(old) {
        if !have.contains(&key) {
            out.push('\n');
            out.push_str(&section);
            out.push('\n');
        }
    }
    out
}

/// Replaces section `key` of `perf/RESULTS.md` with `text` (appended when the file has no such
/// section yet; the file is created when missing); returns its path.
pub fn write_results_section(key: &str, text: &str) -> std::io::Result<PathBuf> {
    let path = results_md();
    let old = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let (begin, end) = section_markers(key);
    let section = format!("{begin}\n{}\n{end}", text.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{section}{}", &old[..b], &old[e + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    std::fs::write(&path, new)?;
    Ok(path)
}

/// Exec `path` with posix_spawn and wait; the elapsed nanoseconds, or the errno of a refusal
/// (`ECHILD`: it ran but did not exit 0).
pub fn spawn_wait(path: &CString) -> Result<u64, i32> {
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

/// Compiles a static binary that exits 0 into `dir` (`exit0`), with the C compiler.
pub fn build_static_binary(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("exit0.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let out = dir.join("exit0");
    let status = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .map_err(|e| {
            format!("cc: {e} (the harness builds a static test binary with the C compiler)")
        })?;
    if !status.success() {
        return Err("cc -static failed (is libc6-dev installed?)".into());
    }
    Ok(out)
}
