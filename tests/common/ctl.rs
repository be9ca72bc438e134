//! santactl runs for the end-to-end tests: as root or as another uid, with what it printed.

use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// What a santactl run printed, and its exit code (-1 if a signal ended it).
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn output(o: Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn santactl(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(super::santactl_path());
    command.arg("--socket").arg(socket).args(args);
    command
}

/// Runs santactl as root against `socket`.
pub fn ctl(socket: &Path, args: &[&str]) -> Out {
    output(santactl(socket, args).output().unwrap())
}

/// Runs santactl as `uid` (and that gid) against `socket`.
pub fn ctl_as(uid: u32, socket: &Path, args: &[&str]) -> Out {
    output(
        santactl(socket, args)
            .uid(uid)
            .gid(uid)
            .current_dir("/")
            .output()
            .unwrap(),
    )
}

/// The stdout of a run that succeeded.
pub fn ok(o: &Out) -> &str {
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    &o.stdout
}

/// The stdout of a run that succeeded, as JSON.
pub fn json(o: &Out) -> Value {
    serde_json::from_str(ok(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", o.stdout))
}
