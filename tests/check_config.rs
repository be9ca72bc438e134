//! `santad --check-config`: a bad file exits non-zero with a message naming the key and file.

use std::process::Command;

fn santad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_santad"))
}

#[test]
fn good_config_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("santad.toml");
    std::fs::write(&path, "ClientMode = \"LOCKDOWN\"\nWatchPaths = [\"/\"]\n").expect("write");
    let out = santad()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .expect("run santad");
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
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "DeadlineMs = 0\n").expect("write");
    let out = santad()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .expect("run santad");
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
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "FailCosed = true\n").expect("write");
    let out = santad()
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .expect("run santad");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `FailCosed`"));
    let out = santad()
        .arg("--config")
        .arg(dir.path().join("none.toml"))
        .arg("--check-config")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none.toml"));
}
