//! `santad --check-config`: a bad file exits non-zero with a message naming the key and file.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `santad --config <path> --check-config`.
fn check_config(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_santad"))
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .output()
        .expect("run santad")
}

/// Writes `contents` to a file `name` in `dir` and checks it.
fn check_written(dir: &Path, name: &str, contents: &str) -> Output {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    check_config(&path)
}

#[test]
fn good_config_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check_written(
        dir.path(),
        "santad.toml",
        "ClientMode = \"LOCKDOWN\"\nWatchPaths = [\"/\"]\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Lockdown"));
}

#[test]
fn bad_value_names_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check_written(dir.path(), "bad.toml", "DeadlineMs = 0\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("`DeadlineMs`"),
        "{err}"
    );
}

#[test]
fn unknown_key_and_missing_file_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check_written(dir.path(), "typo.toml", "FailCosed = true\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `FailCosed`"));
    let out = check_config(&dir.path().join("none.toml"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.toml"));
}
