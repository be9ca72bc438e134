//! The run's circumstances, for the report: the source it was built from, the load, and
//! openssl's hashing rate on this machine.

use std::path::Path;
use std::process::Command;

/// openssl's SHA-256 rate on one core, bytes/s (16 KiB blocks), measured now.
pub(crate) fn openssl_rate() -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("sha256") || l.trim_start().starts_with("SHA256"))?;
    let value = line.split_whitespace().last()?.trim_end_matches('k');
    value.parse::<f64>().ok().map(|k| k * 1000.0)
}

/// The commit of this checkout and its uncommitted changes to what santad is built from.
pub(crate) fn source_state() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(commit) = git(&["log", "-1", "--format=%h %cI"]) else {
        return "santad's commit: unknown (not a git checkout).".into();
    };
    // The checkout's commit may be a perf branch's: name the commit santad's sources come from.
    let sources = git(&[
        "log",
        "-1",
        "--format=%h",
        "--",
        "src",
        "hotpath",
        "signing",
        "rules",
        "config",
        "control",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .unwrap_or_default();
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "hotpath",
        "signing",
        "rules",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .unwrap_or_default();
    let files: Vec<&str> = dirty
        .lines()
        .filter_map(|l| l.get(3..))
        .filter(|f| f.ends_with(".rs") || f.ends_with(".toml") || f.ends_with(".lock"))
        .collect();
    format!(
        "santad built from commit {commit} (its sources last changed in {sources}); uncommitted changes to its sources at the start of the run: {}.",
        if files.is_empty() {
            "none".to_string()
        } else {
            files.join(", ")
        }
    )
}

/// The 1/5/15-minute load averages, "a / b / c".
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "unknown".into())
}
