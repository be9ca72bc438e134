//! The attacker's side of `tests/attacks.rs`: an unprivileged user's thread, its files on the
//! test mount, and a raw `fork` + `execve` so a test sees exactly what the exec returned.
//!
//! Credentials. [`as_user`] runs a closure on a fresh thread that first drops to the user with
//! the raw `setgroups`/`setresgid`/`setresuid` syscalls. Linux credentials belong to a task (a
//! thread), and the raw syscalls change the calling thread only — glibc's wrappers would change
//! every thread of the test process, santad's harness threads included. After the drop the
//! thread has no capabilities (checked from `/proc/thread-self/status`), so everything it does —
//! creating, writing, mapping and truncating its files, and the processes it forks — is done by
//! an ordinary unprivileged user, as the threat model in DESIGN.md has it. Root (the test's main
//! thread) only creates the user's directory, reads hashes and changes rules.
//!
//! Execs. [`spawn_exec`] forks and `execve`s at once; the child reports a failed exec's errno
//! through a close-on-exec pipe (as `std::process` does), so "the exec ran" and "the exec was
//! refused with EPERM" cannot be confused with an exit code. `std::process::Command::spawn`
//! would block until the exec is over, and the tests need the pid while santad holds it.
#![allow(dead_code, clippy::unwrap_used)] // a failed unwrap is a failed test

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A uid/gid pair to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

/// The attacker: `nobody`/`nogroup`.
pub const NOBODY: User = User {
    uid: 65534,
    gid: 65534,
};

/// A second unprivileged user with no passwd entry (santad logs it without a name).
pub const VICTIM: User = User {
    uid: 64_000,
    gid: 64_000,
};

/// How long one exec may take to be answered before the test calls santad hung: four times the
/// default `DeadlineMs` (5 s), so a deadline answer on a loaded machine still fits.
pub const EXEC_ANSWER_MAX: Duration = Duration::from_secs(20);

/// Runs `f` as `user` on a fresh thread (see the module comment); a panic in `f` is re-raised.
pub fn as_user<T: Send>(user: User, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            drop_privileges(user);
            f()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Spawns a thread that runs `f` as `user` (for attacks that run while the test does other
/// things); join it to get the result.
pub fn spawn_as_user<T: Send + 'static>(
    user: User,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        drop_privileges(user);
        f()
    })
}

/// Joins a thread, re-raising its panic.
pub fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn drop_privileges(user: User) {
    // SAFETY: raw credential syscalls with plain integer arguments (and a null list for
    // setgroups with size 0); they change only the calling thread, which is ours alone.
    let rc = unsafe {
        [
            libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()),
            libc::syscall(libc::SYS_setresgid, user.gid, user.gid, user.gid),
            libc::syscall(libc::SYS_setresuid, user.uid, user.uid, user.uid),
        ]
    };
    assert_eq!(
        rc,
        [0, 0, 0],
        "dropping to {user:?}: {}",
        std::io::Error::last_os_error()
    );
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    let uid = user.uid.to_string();
    assert_eq!(value("Uid:"), [uid.as_str(); 4], "{status}");
    assert_eq!(
        value("CapEff:"),
        ["0000000000000000"],
        "the attacker thread must hold no capability: {status}"
    );
}

/// Root creates `<mount>/<name>` owned by `user` (mode 0755) for the user's files.
pub fn user_dir(mount: &Path, name: &str, user: User) -> PathBuf {
    let dir = mount.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// coreutils `true` followed by `\nsalt:<salt>\n`: a runnable ELF whose SHA-256 depends on
/// `salt` (the kernel loads the segments the ELF headers name; trailing bytes are not read).
pub fn elf_bytes(salt: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(crate::common::true_binary()).unwrap();
    bytes.extend_from_slice(format!("\nsalt:{salt}\n").as_bytes());
    bytes
}

/// Writes `bytes` to `path` (created 0755 by the calling thread's user, or truncated).
pub fn write_exe(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
}

/// [`write_exe`] of `head`, then the file extended to `len` bytes with a hole: a large file
/// that costs no memory until something reads it (tmpfs allocates a page for each hole read
/// through a mapping).
pub fn write_sparse_exe(path: &Path, head: &[u8], len: u64) {
    write_exe(path, head);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// `write_exe` of [`elf_bytes`]`(salt)` at `dir/name`.
pub fn exe(dir: &Path, name: &str, salt: &str) -> PathBuf {
    let path = dir.join(name);
    write_exe(&path, &elf_bytes(salt));
    path
}

/// Overwrites `bytes` at `offset` with `pwrite` (the size does not change if it fits).
pub fn pwrite_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// SHA-256 of a file as lowercase hex, streamed (the large test files are hundreds of MiB).
pub fn sha256_file(path: &Path) -> String {
    let mut f = File::open(path).unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub use crate::common::mapping::SharedMap;

/// Rewrites `bytes` at `offset` through a shared mapping (open, mmap, close, write, munmap).
pub fn mmap_rewrite(path: &Path, offset: usize, bytes: &[u8]) {
    let mut map = SharedMap::new(path);
    map.write(offset, bytes);
}

/// What happened to one exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The exec succeeded and the program exited with this code.
    Ran(i32),
    /// The program was killed by this signal after the exec succeeded.
    Killed(i32),
    /// `execve` failed with this errno.
    Refused(i32),
}

impl Outcome {
    pub fn is_eperm(self) -> bool {
        self == Outcome::Refused(libc::EPERM)
    }
    pub fn ran(self) -> bool {
        matches!(self, Outcome::Ran(_) | Outcome::Killed(_))
    }
    /// The decision santad must have logged for this outcome: the kernel returns EPERM for a
    /// fanotify deny and nothing else here; any other outcome means santad's answer was allow
    /// (the kernel may still refuse the exec later, e.g. ETXTBSY or ENOEXEC).
    pub fn decision(self) -> &'static str {
        if self.is_eperm() { "DENY" } else { "ALLOW" }
    }
}

/// The first thing a child forked by a test does: it makes itself dumpable again and closes
/// every fd but stdio and `keep` (-1 for none). Async-signal-safe (raw syscalls only), as a
/// child of a multi-threaded process must be.
///
/// Dumpable: the test process is not dumpable once a thread changed its credentials, and a fork
/// inherits that: /proc/PID would be root's. The attacker owns its process, and can see in
/// /proc/PID/wchan whether santad still holds its exec. (exec resets the flag anyway; this covers
/// the time before.)
///
/// Closed: the fork copied every other thread's fds too (pipes of santactl calls, other execs'
/// error pipes), and close-on-exec closes them only once the exec is past santad — which can be
/// seconds when santad is hashing a slow file — so their readers would wait on this child.
pub fn prepare_forked_child(mut keep: [RawFd; 2]) {
    keep.sort_unstable();
    // SAFETY: prctl with plain integers and close_range on fd ranges of this child, which is
    // single-threaded: no other thread of it can be using them.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        let mut first: libc::c_uint = 3;
        for k in keep {
            if k >= 3 {
                let k = k as libc::c_uint;
                if k > first {
                    libc::syscall(libc::SYS_close_range, first, k - 1, 0);
                }
                first = first.max(k + 1);
            }
        }
        libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0);
    }
}

/// `execveat(fd, "", [argv0], [], AT_EMPTY_PATH)`: fexecve of the open fd `fd`. Returns only if
/// the exec failed (the reason is in errno). Async-signal-safe: no allocation.
pub fn execve_fd(fd: RawFd, argv0: &CStr) {
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: an empty path and null-terminated arrays of valid C strings, alive for the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
}

/// What to exec.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    Path(&'a Path),
    /// `execveat(fd, "", AT_EMPTY_PATH)`: fexecve of an open fd.
    Fd(RawFd),
}

/// An exec in progress: the forked child and the pipe its exec error comes through.
#[derive(Debug)]
pub struct Exec {
    pub pid: i32,
    err: Option<File>,
    pub started: Instant,
}

/// Forks and execs `path` at once (argv = [path], empty environment). The child inherits the
/// calling thread's credentials.
pub fn spawn_exec(path: &Path) -> Exec {
    spawn(Target::Path(path))
}

pub fn spawn(target: Target<'_>) -> Exec {
    let program = match target {
        Target::Path(p) => CString::new(p.as_os_str().as_bytes()).unwrap(),
        Target::Fd(_) => CString::new("fd-exec").unwrap(),
    };
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into our array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are fresh and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let started = Instant::now();
    // SAFETY: the child only calls async-signal-safe functions (prctl, close_range,
    // execve/execveat, write, _exit) on memory prepared before the fork, so the other threads'
    // locks cannot matter.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // The fd to exec stays open too.
        let keep = match target {
            Target::Fd(fd) => fd,
            Target::Path(_) => -1,
        };
        prepare_forked_child([write_end.as_raw_fd(), keep]);
        // SAFETY: see the fork above; argv/envp are null-terminated arrays of valid C strings.
        unsafe {
            match target {
                Target::Path(_) => {
                    libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
                Target::Fd(fd) => execve_fd(fd, &program),
            }
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    drop(write_end);
    Exec {
        pid,
        err: Some(File::from(read_end)),
        started,
    }
}

impl Exec {
    /// Whether the exec is over (it failed, or the new program started); does not block.
    pub fn exec_done(&self) -> bool {
        let Some(err) = &self.err else { return true };
        let mut p = libc::pollfd {
            fd: err.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of ours, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0
    }

    /// Waits for the exec's result and, if it ran, the program's exit.
    pub fn wait(mut self) -> Outcome {
        let err = self.err.take().unwrap();
        let mut p = libc::pollfd {
            fd: err.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = i32::try_from(EXEC_ANSWER_MAX.as_millis()).unwrap();
        // SAFETY: one pollfd of ours.
        let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if n == 0 {
            // SAFETY: the child we forked and have not reaped; a task held in a fanotify
            // permission wait is killable.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            reap(self.pid);
            panic!(
                "exec by pid {} was not answered within {EXEC_ANSWER_MAX:?}: santad hung",
                self.pid
            );
        }
        let mut buf = [0u8; 4];
        let mut err = err;
        let got = err.read(&mut buf).unwrap();
        let status = reap(self.pid);
        if got == 4 {
            return Outcome::Refused(i32::from_ne_bytes(buf));
        }
        if libc::WIFEXITED(status) {
            Outcome::Ran(libc::WEXITSTATUS(status))
        } else {
            Outcome::Killed(libc::WTERMSIG(status))
        }
    }
}

fn reap(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid({pid}): {e}");
    }
}

/// Execs `target` and waits: (outcome, pid, how long until the outcome was known).
pub fn exec_timed(target: Target<'_>) -> (Outcome, i32, Duration) {
    let e = spawn(target);
    let (pid, started) = (e.pid, e.started);
    let outcome = e.wait();
    (outcome, pid, started.elapsed())
}

/// Execs `path` and waits; returns the outcome and the child's pid (for its log line).
pub fn exec(path: &Path) -> (Outcome, i32) {
    let (o, pid, _) = exec_timed(Target::Path(path));
    (o, pid)
}

/// Whether `pid` is asleep in a fanotify permission wait, i.e. santad has not answered its
/// exec yet. Read from `/proc/PID/wchan`, the kernel function the task sleeps in.
pub fn held_by_fanotify(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("fanotify"))
}

/// Polls until santad holds `exec` (true) or the exec is over without having been seen held
/// (false: santad answered before the first look).
pub fn wait_held(exec: &Exec) -> bool {
    let start = Instant::now();
    loop {
        if held_by_fanotify(exec.pid) {
            return true;
        }
        if exec.exec_done() {
            return false;
        }
        assert!(
            start.elapsed() < EXEC_ANSWER_MAX,
            "exec by pid {} neither held nor done; wchan {:?}",
            exec.pid,
            std::fs::read_to_string(format!("/proc/{}/wchan", exec.pid))
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Execs `path` and, once santad is seen holding the exec, waits `delay` (the attack's timing,
/// not a synchronisation: where in santad's work it lands) and runs `attack` on the exec's pid;
/// `attack` returns whether it landed while santad still held the exec. An exec answered before
/// the first look is not attacked (`attack` is dropped unrun, before the exec is waited for).
/// Returns (pid, whether the attack landed while held, outcome).
pub fn attack_while_held(
    path: &Path,
    delay: Duration,
    attack: impl FnOnce(i32) -> bool,
) -> (i32, bool, Outcome) {
    let e = spawn_exec(path);
    let pid = e.pid;
    let landed_while_held = if wait_held(&e) {
        std::thread::sleep(delay);
        attack(pid)
    } else {
        drop(attack);
        false
    };
    (pid, landed_while_held, e.wait())
}

/// A Lockdown santad (with config lines `extra`) and the attacker's own directory on its mount.
pub fn lockdown(extra: &str) -> (crate::common::Santad, PathBuf) {
    let s = crate::common::start("LOCKDOWN", extra);
    let dir = user_dir(s.mount.path(), "attacker", NOBODY);
    (s, dir)
}

/// Root allows `path`'s current content with a Binary rule through santactl, which returns once
/// the new policy is in force (no reload sleep).
pub fn allow(s: &crate::common::Santad, path: &Path) {
    santactl(
        &s.socket_path,
        &["rule", "--allow", "--sha256", &sha256_file(path)],
    );
}

/// What the write-during-hashing attacks put over an allowed file's first bytes: a script
/// nobody approved, which exits [`SCRIPT_EXIT`] if it ever runs.
pub const SCRIPT: &[u8] = b"#!/bin/sh\nexit 7\n";
pub const SCRIPT_EXIT: i32 = 7;

/// A Lockdown santad and the attacker's large file `name` (an ELF head salted by `name`, then
/// a hole up to `bytes`), whose content root allows: (santad, the file, its ELF head).
pub fn lockdown_with_allowed_big_file(
    name: &str,
    bytes: u64,
) -> (crate::common::Santad, PathBuf, Vec<u8>) {
    let (s, dir) = lockdown("");
    let big = dir.join(name);
    let head = elf_bytes(name);
    as_user(NOBODY, || write_sparse_exe(&big, &head, bytes));
    allow(&s, &big);
    (s, big, head)
}

/// Whether process `pid` (santad, our child) still exists and is neither a zombie nor on its way
/// out: a process killed by a signal takes a while to exit (its other threads, its mappings), and
/// until then it is no longer serving.
pub fn alive(pid: i32) -> bool {
    /// `PF_EXITING` and `PF_DUMPCORE` in the task flags (`include/linux/sched.h`).
    const PF_EXITING_OR_DUMPING: u64 = 0x0000_0004 | 0x0000_0200;
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // After the parenthesised command name: state, ppid, pgrp, session, tty, tpgid, flags.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
        !matches!(fields.first(), Some(&"Z") | Some(&"X")) && flags & PF_EXITING_OR_DUMPING == 0
    })
}

/// Runs santactl as root against `socket`; returns stdout, failing the test on a non-zero exit.
pub fn santactl(socket: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(crate::common::santactl_path())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "santactl {args:?}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Percentile `p` (0..=100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let i = (samples.len() * p).div_ceil(100).saturating_sub(1);
    samples[i.min(samples.len() - 1)]
}
