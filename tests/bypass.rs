//! The Lockdown bypass suite: santad with its default coverage (every filesystem of the host,
//! the backstop loaded), Lockdown scoped to a user only these tests' processes run as, and each
//! way around an exec check tried by that unprivileged user: another filesystem, a mount made
//! after start, a bind mount, a memfd, a tmpfs in the user's own user namespace, a direct run of the dynamic loader, a rewrite through a shared mapping after an
//! allow. Each must be denied and logged.
//!
//! Safety: Lockdown applies to [`SCOPED`] alone (`LockdownScope`), a uid no host process uses;
//! every other exec of the host gets Monitor's answer (allowed; block rules exist only for these
//! tests' own files). Each test makes its own mounts (a private tmpfs, a bind mount, a user
//! namespace's tmpfs that dies with its process) and guards remove them, also on failure; the
//! santad each test starts is killed by its pid when the harness drops.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "common/attacker.rs"]
mod attacker;
mod common;
#[path = "common/fork.rs"]
mod fork;

use attacker::User;
use common::{field, santactl_path, start_covering};
use fork::{
    Attempt, become_user, cstr, enter_userns, errno, execve, fork_attempt, fork_attempt_after,
    fork_attempt_keeping, map_to_root, memfd_exec, mount_tmpfs, write_file,
};
use santa_testkit::{PrivateMount, TmpfsOptions};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The user Lockdown is scoped to: no passwd entry, no host process.
const SCOPED: User = User {
    uid: 64_711,
    gid: 64_711,
};

const SCOPE: &str = "LockdownScope = { Users = [64711] }";

fn santad() -> common::Santad {
    start_covering("LOCKDOWN", SCOPE)
}

/// `santactl status --json` of `s`.
fn status_json(s: &common::Santad) -> serde_json::Value {
    let out = std::process::Command::new(santactl_path())
        .arg("--socket")
        .arg(&s.socket_path)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn user_files(s: &common::Santad, name: &str) -> PathBuf {
    attacker::user_dir(s.mount.path(), name, SCOPED)
}

/// The scoped user execs `path`: (outcome, pid).
fn scoped_exec(path: &Path) -> (attacker::Outcome, i32) {
    attacker::as_user(SCOPED, || attacker::exec(path))
}

/// A [`santad`] and the scoped user's program `tool` (a copy of `true` salted by `salt`), which
/// root allows: (santad, the user's directory, the tool).
fn santad_with_allowed_tool(salt: &str) -> (common::Santad, PathBuf, PathBuf) {
    let mut s = santad();
    let dir = user_files(&s, "u");
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "tool", salt));
    s.allow_binary(&exe);
    (s, dir, exe)
}

/// `user` runs an ELF (salted by `salt`) from a memfd named `name`: (attempt, pid).
fn memfd_as(user: User, name: &str, salt: &str) -> (Attempt, i32) {
    let bytes = attacker::elf_bytes(salt);
    let name = CString::new(name).unwrap();
    attacker::as_user(user, || fork_attempt(|| memfd_exec(&name, &bytes, 1)))
}

/// The attempt was killed by the backstop (`ran` says what ran otherwise), and `pid`'s exec is
/// logged as a deny explained `backstop: <explain>…`; returns the line.
fn killed_by_the_backstop(
    s: &common::Santad,
    (attempt, pid): (Attempt, i32),
    ran: &str,
    explain: &str,
) -> String {
    assert_eq!(attempt, Attempt::Killed(libc::SIGKILL), "{ran}");
    let line = s.logged(pid, "DENY");
    let explain = format!("backstop: {explain}");
    assert!(
        field(&line, "explain").is_some_and(|e| e.starts_with(&explain)),
        "{line}"
    );
    line
}

/// The backstop's explanation of a kill for an exec from a filesystem santad does not watch.
const UNWATCHED: &str = "file on a filesystem";

/// A bind mount, removed (lazily) when dropped.
struct BindMount {
    target: PathBuf,
    _dir: tempfile::TempDir,
}

impl BindMount {
    fn new(source: &Path) -> BindMount {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bind");
        std::fs::create_dir(&target).unwrap();
        let (src, dst) = (cstr(source), cstr(&target));
        // SAFETY: valid C paths; a bind mount of our own test directory onto our temp dir.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "bind mount: {}", std::io::Error::last_os_error());
        BindMount { target, _dir: dir }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let t = cstr(&self.target);
        // SAFETY: unmounting the bind mount we made.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn an_unknown_binary_on_a_filesystem_santad_found_itself_is_denied_and_logged() {
    let s = santad();
    let dir = user_files(&s, "u");
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "tool", "found-fs"));
    let (outcome, pid) = scoped_exec(&exe);
    assert!(outcome.is_eperm(), "{outcome:?}");
    let line = s.logged(pid, "DENY");
    assert_eq!(field(&line, "reason"), Some("UNKNOWN"), "{line}");
    assert_eq!(field(&line, "mode"), Some("L"), "{line}");
    assert_eq!(field(&line, "path"), Some(exe.to_str().unwrap()), "{line}");
}

#[test]
fn a_mount_made_after_start_is_marked_and_its_unknown_binary_denied() {
    let mut s = santad();
    let later = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 16 << 20,
        exec: true,
    })
    .unwrap();
    s.wait_stderr(&format!("coverage: watching {}", later.path().display()));
    let dir = attacker::user_dir(later.path(), "u", SCOPED);
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "late", "late-mount"));
    let (outcome, pid) = scoped_exec(&exe);
    assert!(outcome.is_eperm(), "{outcome:?}");
    let line = s.logged(pid, "DENY");
    assert_eq!(field(&line, "path"), Some(exe.to_str().unwrap()), "{line}");
    drop(s);
    later.close().unwrap();
}

#[test]
fn a_bind_mount_of_a_watched_directory_is_the_same_filesystem_and_denied() {
    let s = santad();
    let dir = user_files(&s, "u");
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "tool", "bind"));
    let bind = BindMount::new(&dir);
    let through = bind.target.join("tool");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&through).unwrap().ino(),
        std::fs::metadata(&exe).unwrap().ino(),
        "the bind mount shows the same file"
    );
    let (outcome, pid) = scoped_exec(&through);
    assert!(outcome.is_eperm(), "{outcome:?}");
    s.logged(pid, "DENY");
}

#[test]
fn a_memfd_exec_is_killed_by_the_backstop_and_logged() {
    let s = santad();
    let attempt = memfd_as(SCOPED, "payload", "memfd");
    let line = killed_by_the_backstop(&s, attempt, "the memfd program ran", UNWATCHED);
    assert_eq!(field(&line, "uid"), Some("64711"), "{line}");
}

#[test]
fn a_tmpfs_in_the_users_own_user_namespace_is_killed_by_the_backstop() {
    if santad::linux::coverage::unprivileged_userns() != "allowed" {
        eprintln!("unprivileged user namespaces are disabled here: nothing to bypass with");
        return;
    }
    let s = santad();
    let dir = user_files(&s, "u");
    let mnt = dir.join("mnt");
    attacker::as_user(SCOPED, || std::fs::create_dir(&mnt).unwrap());
    let mnt_c = cstr(&mnt);
    let exe_c = cstr(&mnt.join("tool"));
    let bytes = attacker::elf_bytes("userns");
    let maps = map_to_root(SCOPED.uid);
    let attempt = attacker::as_user(SCOPED, || {
        fork_attempt_after(
            || {
                enter_userns(&maps)?;
                mount_tmpfs(&mnt_c, 6)?;
                write_file(&exe_c, &bytes, 7)
            },
            || execve(&exe_c, &[], 9),
        )
    });
    killed_by_the_backstop(&s, attempt, "the userns binary ran", UNWATCHED);
    // The namespace and its tmpfs died with the child: the directory is empty on the host.
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
}

#[test]
fn a_direct_run_of_the_dynamic_loader_is_killed_even_for_an_allowed_program() {
    let (s, dir, exe) = santad_with_allowed_tool("loader");
    let (outcome, _) = scoped_exec(&exe);
    assert_eq!(
        outcome,
        attacker::Outcome::Ran(0),
        "the allowed program runs itself"
    );
    // And an unknown one through the loader: ld.so maps it with no exec check of its own.
    let unknown = attacker::as_user(SCOPED, || attacker::exe(&dir, "unknown", "loader-2"));
    let loader = santad::linux::coverage::elf_interpreter(Path::new("/bin/sh")).unwrap();
    for target in [&exe, &unknown] {
        let (loader_c, arg) = (cstr(&loader), cstr(target));
        let attempt = attacker::as_user(SCOPED, || fork_attempt(|| execve(&loader_c, &[arg], 1)));
        killed_by_the_backstop(
            &s,
            attempt,
            &format!("{target:?} ran"),
            "direct execution of the dynamic loader",
        );
    }
}

#[test]
fn a_rewrite_through_a_shared_mapping_after_an_allow_is_denied_at_the_next_exec() {
    let (s, _, exe) = santad_with_allowed_tool("mmap");
    let (outcome, pid) = scoped_exec(&exe);
    assert_eq!(outcome, attacker::Outcome::Ran(0));
    s.logged(pid, "ALLOW");
    // Past the ELF's loaded segments (its trailing salt): the program still runs if it runs.
    let len = std::fs::metadata(&exe).unwrap().len() as usize;
    attacker::as_user(SCOPED, || attacker::mmap_rewrite(&exe, len - 4, b"XXXX"));
    let (outcome, pid) = scoped_exec(&exe);
    assert!(outcome.is_eperm(), "{outcome:?}");
    s.logged(pid, "DENY");
}

#[test]
fn an_allowed_dynamic_binary_runs_with_no_rule_for_its_loader_and_logs_one_line() {
    let mut s = santad();
    let dir = user_files(&s, "u");
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "dyn", "one-line"));
    assert!(
        santad::linux::coverage::elf_interpreter(&exe).is_some(),
        "the test binary must be dynamically linked"
    );
    s.allow_binary(&exe);
    for _ in 0..3 {
        let (outcome, pid) = scoped_exec(&exe);
        assert_eq!(outcome, attacker::Outcome::Ran(0), "its loader has no rule");
        s.logged(pid, "ALLOW");
        common::settle();
        let pid = pid.to_string();
        let lines: Vec<String> = s
            .log_lines()
            .into_iter()
            .filter(|l| field(l, "pid") == Some(pid.as_str()))
            .collect();
        assert_eq!(lines.len(), 1, "one exec, one EXEC line: {lines:#?}");
    }
    let loader_lines: Vec<String> = s
        .log_lines()
        .into_iter()
        .filter(|l| field(l, "path").is_some_and(|p| p.contains("/ld-")))
        .collect();
    assert!(loader_lines.is_empty(), "{loader_lines:#?}");
}

#[test]
fn outside_the_scope_an_unknown_binary_and_a_memfd_run_and_are_logged_as_monitor() {
    let s = santad();
    let exe = s.binary("roots", "outside-scope");
    let (outcome, pid) = attacker::exec(&exe);
    assert_eq!(outcome, attacker::Outcome::Ran(0));
    let line = s.logged(pid, "ALLOW");
    assert_eq!(field(&line, "mode"), Some("M"), "{line}");
    assert_eq!(
        field(&line, "explain"),
        Some("outside LockdownScope"),
        "{line}"
    );
    // The same file for the scoped user: denied.
    let (outcome, _) = scoped_exec(&exe);
    assert!(outcome.is_eperm(), "{outcome:?}");
    // A memfd exec by root (out of scope) is reported, not killed.
    let bytes = attacker::elf_bytes("memfd-root");
    let name = CString::new("root-payload").unwrap();
    let (attempt, pid) = fork_attempt(|| {
        // SAFETY: raw syscalls on data prepared before the fork.
        unsafe {
            let fd = libc::memfd_create(name.as_ptr(), 0);
            if fd < 0 || libc::write(fd, bytes.as_ptr().cast(), bytes.len()) < 0 {
                return (1, errno());
            }
            let path = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
            execve(&path, &[], 2)
        }
    });
    assert_eq!(attempt, Attempt::Ran(0));
    let line = s.logged(pid, "ALLOW");
    assert!(
        field(&line, "explain").is_some_and(|e| e.starts_with("backstop:")),
        "{line}"
    );
}

#[test]
fn status_shows_coverage_the_backstop_and_its_denials() {
    let s = santad();
    let (attempt, _) = memfd_as(SCOPED, "p", "status");
    assert_eq!(attempt, Attempt::Killed(libc::SIGKILL));
    let st = status_json(&s);
    let c = &st["coverage"];
    assert_eq!(c["mode"], "every filesystem", "{c}");
    let watched = c["watched"].as_array().unwrap();
    assert!(watched.iter().any(|f| f["mount_point"] == "/"), "{c}");
    let mount = s.mount.path().display().to_string();
    assert!(
        watched.iter().any(|f| f["mount_point"] == mount.as_str()),
        "{c}"
    );
    let skipped = c["skipped"].as_array().unwrap();
    let proc_fs = skipped
        .iter()
        .find(|f| f["fs_type"] == "proc")
        .expect("proc skipped");
    assert!(
        proc_fs["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{c}"
    );
    assert_eq!(c["backstop"]["state"], "active", "{c}");
    assert!(c["backstop"]["denied"].as_u64().unwrap() >= 1, "{c}");
    assert!(!c["loaders"].as_array().unwrap().is_empty(), "{c}");
    assert_eq!(c["lockdown_scope"], "users [64711]", "{c}");
    let text = String::from_utf8(
        std::process::Command::new(santactl_path())
            .arg("--socket")
            .arg(&s.socket_path)
            .arg("status")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains(">>> Exec Backstop"), "{text}");
    assert!(text.contains(">>> Coverage"), "{text}");
}

#[test]
fn a_supplementary_group_in_scope_holds_whatever_the_real_group() {
    let s = start_covering("LOCKDOWN", "LockdownScope = { Groups = [64712] }");
    let unknown = s.binary("unknown", "group-scope");
    let unknown_c = cstr(&unknown);
    let bytes = attacker::elf_bytes("group-scope-memfd");
    let name = CString::new("g").unwrap();
    // In scope through a supplementary group only (real group 64713, as after `newgrp`).
    for (groups, in_scope) in [(&[64712u32][..], true), (&[][..], false)] {
        let newgrp = || become_user(64713, 64713, groups);
        let (file, _) = fork_attempt_after(newgrp, || execve(&unknown_c, &[], 1));
        let (memfd, _) = fork_attempt_after(newgrp, || memfd_exec(&name, &bytes, 2));
        if in_scope {
            assert_eq!(
                file,
                Attempt::Failed {
                    step: 1,
                    errno: libc::EPERM
                },
                "fanotify: an unknown binary in scope"
            );
            assert_eq!(
                memfd,
                Attempt::Killed(libc::SIGKILL),
                "backstop: a memfd in scope"
            );
        } else {
            assert_eq!(file, Attempt::Ran(0), "out of scope: Monitor");
            assert_eq!(memfd, Attempt::Ran(0), "out of scope: reported only");
        }
    }
}

/// A cgroup v2 directory of the test's, with one child cgroup; removed when dropped.
struct TestCgroup {
    outer: PathBuf,
    inner: PathBuf,
    /// Its path from the hierarchy's root.
    name: String,
}

impl TestCgroup {
    fn new() -> TestCgroup {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = santad::linux::mountinfo::parse(&mountinfo)
            .unwrap()
            .into_iter()
            .find(|m| m.fs_type == "cgroup2")
            .expect("a cgroup v2 hierarchy")
            .mount_point;
        let name = format!("/santad-bypass-{}", std::process::id());
        let outer = root.join(&name[1..]);
        let inner = outer.join("inner");
        std::fs::create_dir(&outer).unwrap();
        std::fs::create_dir(&inner).unwrap();
        TestCgroup { outer, inner, name }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.inner);
        let _ = std::fs::remove_dir(&self.outer);
    }
}

#[test]
fn a_cgroup_in_scope_holds_for_its_processes_and_those_below_it() {
    let cg = TestCgroup::new();
    let s = start_covering(
        "LOCKDOWN",
        &format!("LockdownScope = {{ Cgroups = [\"{}\"] }}", cg.name),
    );
    let unknown = s.binary("unknown", "cgroup-scope");
    let unknown_c = cstr(&unknown);
    let procs = cstr(&cg.inner.join("cgroup.procs"));
    let bytes = attacker::elf_bytes("cgroup-scope-memfd");
    let name = CString::new("c").unwrap();
    let join = || -> Result<(), (u32, i32)> {
        // SAFETY: a valid C path; "0" moves the writing process.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err((80, errno()));
            }
            libc::close(fd);
        }
        Ok(())
    };
    // Root, so only the cgroup puts these in scope.
    let (file, _) = fork_attempt_after(join, || execve(&unknown_c, &[], 1));
    assert_eq!(
        file,
        Attempt::Failed {
            step: 1,
            errno: libc::EPERM
        }
    );
    let (memfd, _) = fork_attempt_after(join, || memfd_exec(&name, &bytes, 2));
    assert_eq!(memfd, Attempt::Killed(libc::SIGKILL));
    // Outside the cgroup, the same root process runs both.
    let (file, _) = fork_attempt(|| execve(&unknown_c, &[], 1));
    assert_eq!(file, Attempt::Ran(0));
    let (memfd, _) = fork_attempt(|| memfd_exec(&name, &bytes, 2));
    assert_eq!(memfd, Attempt::Ran(0));
}

/// A tmpfs mounted over `dir`, covering what was mounted there; unmounted when dropped.
struct Cover(PathBuf);

impl Cover {
    fn new(dir: &Path) -> Cover {
        let (t, d) = (c"tmpfs", cstr(dir));
        // SAFETY: valid C strings; a tmpfs over our own test mount.
        let rc = unsafe { libc::mount(t.as_ptr(), d.as_ptr(), t.as_ptr(), 0, std::ptr::null()) };
        assert_eq!(rc, 0, "cover mount: {}", std::io::Error::last_os_error());
        Cover(dir.to_path_buf())
    }
}

impl Drop for Cover {
    fn drop(&mut self) {
        let d = cstr(&self.0);
        // SAFETY: unmounting the mount we made.
        unsafe { libc::umount2(d.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn a_filesystem_whose_every_mount_point_is_covered_is_reported_and_an_exec_from_it_killed() {
    let lower = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 16 << 20,
        exec: true,
    })
    .unwrap();
    let dir = attacker::user_dir(lower.path(), "u", SCOPED);
    let exe = attacker::as_user(SCOPED, || attacker::exe(&dir, "tool", "covered"));
    // The attacker holds an fd to the file; then the mount point is covered (as a second
    // /dev/shm mount covers the first): the path now names the other filesystem.
    let fd = attacker::as_user(SCOPED, || std::fs::File::open(&exe).unwrap());
    let cover = Cover::new(lower.path());
    let s = santad();
    let st = status_json(&s);
    let lower_dev = {
        use std::os::unix::fs::MetadataExt;
        let d = fd.metadata().unwrap().dev();
        format!("{}:{}", libc::major(d), libc::minor(d))
    };
    let entry = st["coverage"]["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dev"] == lower_dev.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{lower_dev} not reported as skipped: {}", st["coverage"]));
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("covered by another mount")),
        "{entry}"
    );
    let raw = fd.as_raw_fd();
    let attempt = attacker::as_user(SCOPED, || {
        fork_attempt_keeping(raw, || {
            // fexecve of the fd the child kept.
            attacker::execve_fd(raw, c"tool");
            (1, errno())
        })
    });
    killed_by_the_backstop(&s, attempt, "the covered file ran", UNWATCHED);
    drop(s);
    drop(cover);
    drop(fd);
    lower.close().unwrap();
}

#[test]
fn memfd_noexec_2_refuses_every_memfd_exec_in_its_pid_namespace() {
    common::require_root();
    let Some(host_value) = santad::linux::coverage::memfd_noexec() else {
        eprintln!("this kernel has no vm.memfd_noexec");
        return;
    };
    // vm.memfd_noexec belongs to a pid namespace: set it in a new one of the test's own (the
    // host's stays as it is), then try a memfd exec there.
    let bytes = attacker::elf_bytes("memfd-noexec");
    let name = CString::new("n").unwrap();
    let (attempt, _) = fork_attempt(|| {
        // SAFETY: raw calls in the single-threaded child; the grandchild is pid 1 of the new
        // namespace and reports through the same pipe (inherited).
        unsafe {
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return (1, errno());
            }
            let pid = libc::fork();
            if pid < 0 {
                return (2, errno());
            }
            if pid > 0 {
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                libc::_exit(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    100 + libc::WTERMSIG(status)
                });
            }
        }
        if let Err(e) = santad::linux::coverage::set_memfd_noexec() {
            return (3, e.raw_os_error().unwrap_or(0));
        }
        memfd_exec(&name, &bytes, 4)
    });
    // memfd_create without MFD_EXEC makes a non-executable memfd under 2: the exec is refused.
    assert!(
        matches!(attempt, Attempt::Failed { step: 5, errno } if errno == libc::EACCES || errno == libc::EPERM),
        "{attempt:?}"
    );
    assert_eq!(
        santad::linux::coverage::memfd_noexec(),
        Some(host_value),
        "the host's own value is untouched"
    );
}

#[test]
fn the_backstop_goes_with_santad_when_it_is_killed() {
    let mut s = santad();
    let try_memfd = || memfd_as(SCOPED, "k", "after-kill").0;
    assert_eq!(try_memfd(), Attempt::Killed(libc::SIGKILL));
    s.kill9();
    // The kernel detaches a program whose last fd closed: nothing is left to kill the exec
    // (and fanotify's marks went with the group: the host fails open, as documented).
    let start = std::time::Instant::now();
    loop {
        match try_memfd() {
            Attempt::Ran(0) => break,
            other => assert!(
                start.elapsed() < common::WAIT,
                "the backstop outlived santad: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn with_watch_paths_and_a_scope_the_backstop_holds_the_rest_of_the_host_for_the_scope() {
    let user = User {
        uid: 64_715,
        gid: 64_715,
    };
    let mut s = common::start("LOCKDOWN", "LockdownScope = { Users = [64715] }");
    let dir = attacker::user_dir(s.mount.path(), "u", user);
    let unknown = attacker::as_user(user, || attacker::exe(&dir, "unknown", "wp-unknown"));
    let allowed = attacker::as_user(user, || attacker::exe(&dir, "allowed", "wp-allowed"));
    s.allow_binary(&allowed);
    let (o, _) = attacker::as_user(user, || attacker::exec(&unknown));
    assert!(o.is_eperm(), "fanotify on the watched mount: {o:?}");
    let (o, _) = attacker::as_user(user, || attacker::exec(&allowed));
    assert_eq!(
        o,
        attacker::Outcome::Ran(0),
        "allowed, with its loader from elsewhere"
    );
    let (a, _) = memfd_as(user, "w", "wp-memfd");
    assert_eq!(a, Attempt::Killed(libc::SIGKILL), "memfd");
    // Outside the watched mount: nothing holds it but the backstop, which the scope asked for.
    let t = cstr(common::true_binary());
    let (a, pid) = attacker::as_user(user, || fork_attempt(|| execve(&t, &[], 1)));
    assert_eq!(
        a,
        Attempt::Killed(libc::SIGKILL),
        "a binary outside WatchPaths"
    );
    s.logged(pid, "DENY");
}

#[test]
fn with_the_backstop_off_santad_says_so_in_status() {
    let mut s = start_covering(
        "LOCKDOWN",
        "LockdownScope = { Users = [64716] }\nBackstop = \"off\"",
    );
    let st = status_json(&s);
    let b = &st["coverage"]["backstop"];
    assert_eq!(b["state"], "inactive", "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| d.starts_with("off")),
        "{b}"
    );
    assert_eq!(st["coverage"]["mode"], "every filesystem");
    assert_eq!(s.stop().code(), Some(0));
}
