//! fapolicyd beside santad, safely (../shared/PERF-NOTES.md), for every benchmark that runs it:
//! - installed from Debian when missing, with service starts forbidden (`policy-rc.d`): the
//!   package ships "deny every execute" and an enabled unit;
//! - `/etc/fapolicyd` and `/var/lib/fapolicyd` backed up before the first start and restored
//!   when the listener's guard stops it (also on failure);
//! - `watch_fs` set to a filesystem type only the benchmark's private image uses (ext2 or XFS,
//!   checked in /proc/mounts first), `uid = gid = 0` (these VMs lack CAP_SYS_RESOURCE in the
//!   bounding set);
//! - run in the foreground (`--debug-deny`) under `timeout`, stopped by the pid we started.

use crate::listen::{Listener, wait_line};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ETC: &str = "/etc/fapolicyd";
const LIB: &str = "/var/lib/fapolicyd";
/// The longest fapolicyd may run (`timeout`): a hung benchmark cannot leave it enforcing.
const TIMEOUT_S: &str = "3600";

/// What fapolicyd is started with.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `permissive = 1`: decide and log, never deny.
    pub permissive: bool,
    /// `integrity`: `none`, `size` or `sha256`.
    pub integrity: &'static str,
    /// The rules, in fapolicyd's syntax, one per line (written as `rules.d/50-harness.rules`
    /// and `compiled.rules`).
    pub rules: String,
    /// The trusted files: each goes into the trust file with its size and SHA-256.
    pub trust: Vec<PathBuf>,
    /// `watch_fs`: the type of the benchmark's private image, which no other mount may have.
    pub watch_fs: &'static str,
}

/// Trusted files execute, anything else is denied, plain opens are allowed.
pub const RULES_TRUSTED_ONLY: &str = "allow perm=execute all : trust=1\ndeny_audit perm=execute all : all\nallow perm=open all : all\n";

fn ensure_installed() -> Result<(), String> {
    if Path::new("/usr/sbin/fapolicyd").exists() {
        return Ok(());
    }
    let guard = Path::new("/usr/sbin/policy-rc.d");
    let had_guard = guard.exists();
    if !had_guard {
        std::fs::write(guard, "#!/bin/sh\nexit 101\n").map_err(|e| format!("policy-rc.d: {e}"))?;
        let _ = Command::new("chmod")
            .args(["+x", "/usr/sbin/policy-rc.d"])
            .status();
    }
    let _ = Command::new("apt-get")
        .args(["update", "-qq"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "fapolicyd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !had_guard {
        let _ = std::fs::remove_file(guard);
    }
    match status {
        Ok(s) if s.success() && Path::new("/usr/sbin/fapolicyd").exists() => Ok(()),
        _ => Err("fapolicyd is not installed and `apt-get install fapolicyd` failed".into()),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Puts a directory back exactly as backed up.
fn restore(backup: &Path, dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    if backup.exists() {
        let _ = copy_dir(backup, dir);
    }
}

/// Starts fapolicyd with `setup`, watching only `setup.watch_fs` (`watched`, the benchmark's
/// private image, must be the only mount of that type); `scratch` holds the backup of its
/// configuration.
pub fn start(setup: &Setup, watched: &Path, scratch: &Path) -> Result<Listener, String> {
    ensure_installed()?;
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
    let watched_str = watched.to_string_lossy();
    let fs = setup.watch_fs;
    if let Some(other) = mounts.lines().find(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[2] == fs && f[1] != watched_str
    }) {
        return Err(format!(
            "another {fs} mount exists ({other}); fapolicyd would watch it too"
        ));
    }
    if !mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[2] == fs && f[1] == watched_str
    }) {
        return Err(format!("{watched_str} is not an {fs} mount"));
    }
    let backup = scratch.join("fapolicyd-backup");
    let etc_backup = backup.join("etc");
    let lib_backup = backup.join("lib");
    if !etc_backup.exists() {
        copy_dir(Path::new(ETC), &etc_backup).map_err(|e| format!("backing up {ETC}: {e}"))?;
        if Path::new(LIB).exists() {
            copy_dir(Path::new(LIB), &lib_backup).map_err(|e| format!("backing up {LIB}: {e}"))?;
        }
    }
    let restore_all = move || {
        restore(&etc_backup, Path::new(ETC));
        restore(&lib_backup, Path::new(LIB));
    };
    match configure(setup).and_then(|()| launch()) {
        Ok(child) => Ok(Listener::wrapped(child, Box::new(restore_all))),
        Err(e) => {
            restore_all();
            Err(e)
        }
    }
}

fn configure(setup: &Setup) -> Result<(), String> {
    let conf = format!(
        "permissive = {}\nnice_val = 0\nq_size = 640\nuid = 0\ngid = 0\ndo_stat_report = 0\n\
         detailed_report = 0\ndb_max_size = 100\nsubj_cache_size = 1549\nobj_cache_size = 8191\n\
         watch_fs = {}\ntrust = file\nintegrity = {}\n\
         syslog_format = rule,dec,perm,auid,pid,exe,:,path,ftype,trust\nrpm_sha256_only = 0\nallow_filesystem_mark = 0\n",
        u8::from(setup.permissive),
        setup.watch_fs,
        setup.integrity
    );
    std::fs::write(Path::new(ETC).join("fapolicyd.conf"), conf).map_err(|e| e.to_string())?;
    let rules_d = Path::new(ETC).join("rules.d");
    let _ = std::fs::remove_dir_all(&rules_d);
    std::fs::create_dir_all(&rules_d).map_err(|e| e.to_string())?;
    std::fs::write(rules_d.join("50-harness.rules"), &setup.rules).map_err(|e| e.to_string())?;
    std::fs::write(Path::new(ETC).join("compiled.rules"), &setup.rules)
        .map_err(|e| e.to_string())?;
    let mut trust = String::from("# santa-perf harness\n");
    for path in &setup.trust {
        let hash = santa_signing::hash_path(path, &Default::default())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        trust.push_str(&format!(
            "{} {} {}\n",
            path.display(),
            hash.stamp.size_bytes,
            hash.sha256
        ));
    }
    std::fs::write(Path::new(ETC).join("fapolicyd.trust"), trust).map_err(|e| e.to_string())?;
    let trust_d = Path::new(ETC).join("trust.d");
    let _ = std::fs::remove_dir_all(&trust_d);
    let _ = std::fs::create_dir_all(&trust_d);
    // A fresh trust database, built from the trust file at start.
    let _ = std::fs::remove_dir_all(LIB);
    std::fs::create_dir_all(LIB).map_err(|e| e.to_string())?;
    Ok(())
}

fn launch() -> Result<std::process::Child, String> {
    let mut child = Command::new("timeout")
        .args([
            "-s",
            "TERM",
            TIMEOUT_S,
            "/usr/sbin/fapolicyd",
            "--debug-deny",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("fapolicyd: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    match wait_line(stderr, "Starting to listen for events") {
        Ok(()) => Ok(child),
        Err(e) => {
            // SAFETY: signalling the `timeout` we started (it passes SIGTERM to fapolicyd).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(std::time::Duration::from_millis(500));
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("fapolicyd did not start: {e}"))
        }
    }
}
