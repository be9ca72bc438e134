//! Forked attempts for the bypass suites (`tests/bypass.rs`, `tests/bypass_review.rs`): a child
//! that runs raw syscalls prepared before the fork (credentials, namespaces, mounts, memfds) and
//! ends in an exec, and reports which step failed with which errno, so "refused", "killed" and
//! "ran" cannot be confused. Its includers also include `attacker.rs` (credentials, the forked
//! child's first steps).
#![allow(dead_code, clippy::unwrap_used)] // shared by two test binaries; a failed unwrap is a failed test

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What a forked child's attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The exec succeeded and the program exited with this code.
    Ran(i32),
    /// Killed by this signal (the backstop's deny is SIGKILL).
    Killed(i32),
    /// Step `step` of the child failed with `errno` (the last step is the exec itself).
    Failed { step: u32, errno: i32 },
}

impl Attempt {
    /// Denied by fanotify (EPERM at the exec step `exec_step`) or killed by the backstop.
    pub fn stopped(self, exec_step: u32) -> bool {
        self == Attempt::Killed(libc::SIGKILL)
            || self
                == Attempt::Failed {
                    step: exec_step,
                    errno: libc::EPERM,
                }
    }
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Forks; the child closes every fd but stdio and its report pipe, runs `body` (which ends in
/// an exec), and reports the failing step and errno if it returns. Runs with the calling
/// thread's credentials.
pub fn fork_attempt(body: impl FnOnce() -> (u32, i32)) -> (Attempt, i32) {
    fork_attempt_keeping(-1, body)
}

/// [`fork_attempt`], keeping fd `keep` open in the child as well.
pub fn fork_attempt_keeping(keep: RawFd, body: impl FnOnce() -> (u32, i32)) -> (Attempt, i32) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into our array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs `body` (raw syscalls on data prepared before the fork) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        crate::attacker::prepare_forked_child([w.as_raw_fd(), keep]);
        let (step, e) = body();
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&step.to_ne_bytes());
        msg[4..].copy_from_slice(&e.to_ne_bytes());
        // SAFETY: writing our report to our pipe, then leaving without running destructors.
        unsafe {
            libc::write(w.as_raw_fd(), msg.as_ptr().cast(), 8);
            libc::_exit(127);
        }
    }
    drop(w);
    let mut file = std::fs::File::from(r);
    let mut msg = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut msg).unwrap();
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        assert_eq!(errno(), libc::EINTR);
    }
    let attempt = if msg.len() == 8 {
        Attempt::Failed {
            step: u32::from_ne_bytes(msg[..4].try_into().unwrap()),
            errno: i32::from_ne_bytes(msg[4..].try_into().unwrap()),
        }
    } else if libc::WIFEXITED(status) {
        Attempt::Ran(libc::WEXITSTATUS(status))
    } else {
        Attempt::Killed(libc::WTERMSIG(status))
    };
    (attempt, pid)
}

/// [`fork_attempt`] of `setup` (the steps that prepare the child: credentials, namespaces,
/// mounts, files) and then `exec`, which is not reached when a setup step fails.
pub fn fork_attempt_after(
    setup: impl FnOnce() -> Result<(), (u32, i32)>,
    exec: impl FnOnce() -> (u32, i32),
) -> (Attempt, i32) {
    fork_attempt(|| match setup() {
        Ok(()) => exec(),
        Err(failed) => failed,
    })
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `execve(prog, [prog, args...], env)`: returns only on failure, with step `step`.
pub fn execve_env(prog: &CString, args: &[CString], env: &[CString], step: u32) -> (u32, i32) {
    let mut argv: Vec<*const libc::c_char> = vec![prog.as_ptr()];
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: null-terminated arrays of valid C strings, alive for the call.
    unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    (step, errno())
}

/// `execve(prog, [prog, args...], [])`: returns only on failure, with step `step`.
pub fn execve(prog: &CString, args: &[CString], step: u32) -> (u32, i32) {
    execve_env(prog, args, &[], step)
}

/// Writes `bytes` to a new executable file at `path` with raw syscalls (steps `step`, `step+1`).
pub fn write_file(path: &CString, bytes: &[u8], step: u32) -> Result<(), (u32, i32)> {
    // SAFETY: a valid C path; the fd is ours and closed below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
            0o755,
        )
    };
    if fd < 0 {
        return Err((step, errno()));
    }
    // SAFETY: `bytes` is valid for its length; fd is open.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    if n != bytes.len() as isize {
        return Err((step + 1, errno()));
    }
    Ok(())
}

/// Drops the forked child to `uid`/`gid` with exactly `groups` as supplementary groups (raw
/// syscalls: the child is single-threaded). Step 90 on failure.
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> Result<(), (u32, i32)> {
    // SAFETY: raw credential syscalls with a valid array and its length.
    let rc = unsafe {
        [
            libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()),
            libc::syscall(libc::SYS_setresgid, gid, gid, gid),
            libc::syscall(libc::SYS_setresuid, uid, uid, uid),
        ]
    };
    if rc != [0, 0, 0] {
        return Err((90, errno()));
    }
    Ok(())
}

/// A memfd holding a runnable ELF, exec'd by `execveat(AT_EMPTY_PATH)`; step `step` and on.
pub fn memfd_exec(name: &CString, bytes: &[u8], step: u32) -> (u32, i32) {
    // SAFETY: raw syscalls on data prepared before the fork; `bytes` is valid for its length.
    let written = unsafe {
        let fd = libc::memfd_create(name.as_ptr(), 0);
        if fd < 0 || libc::write(fd, bytes.as_ptr().cast(), bytes.len()) != bytes.len() as isize {
            return (step, errno());
        }
        fd
    };
    crate::attacker::execve_fd(written, name);
    (step + 1, errno())
}

/// The `uid_map`/`gid_map` line of a user namespace in which `id` is root: `0 <id> 1`.
pub fn map_to_root(id: u32) -> String {
    format!("0 {id} 1")
}

/// In the forked child: a new user namespace (mapped by `maps`, see [`map_to_root`]) and mount
/// namespace, with every mount made private (nothing propagates anywhere). Steps 1..=5.
pub fn enter_userns(maps: &str) -> Result<(), (u32, i32)> {
    // SAFETY: raw syscalls in the single-threaded child on data prepared before it.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            return Err((1, errno()));
        }
        for (file, text, step) in [
            (c"/proc/self/setgroups", "deny", 2),
            (c"/proc/self/uid_map", maps, 3),
            (c"/proc/self/gid_map", maps, 4),
        ] {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                return Err((step, errno()));
            }
            libc::close(fd);
        }
    }
    mount(
        c"none",
        c"/",
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
        5,
    )
}

/// `mount(2)` in the child's own mount namespace; step `step` on failure.
fn mount(
    source: &CStr,
    target: &CStr,
    fs_type: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    step: u32,
) -> Result<(), (u32, i32)> {
    // SAFETY: valid C strings (or null where the kernel takes none), alive for the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fs_type.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err((step, errno()));
    }
    Ok(())
}

/// A tmpfs on `dir` (in the child's own mount namespace). Step `step`.
pub fn mount_tmpfs(dir: &CStr, step: u32) -> Result<(), (u32, i32)> {
    mount(c"tmpfs", dir, Some(c"tmpfs"), 0, None, step)
}

/// A bind mount of `src` on `dst` (in the child's own mount namespace). Step `step`.
pub fn bind(src: &CStr, dst: &CStr, step: u32) -> Result<(), (u32, i32)> {
    mount(src, dst, None, libc::MS_BIND, None, step)
}

/// An overlayfs on `dir` with mount options `opts` (in the child's own mount namespace). Step
/// `step`.
pub fn mount_overlay(dir: &CStr, opts: &CStr, step: u32) -> Result<(), (u32, i32)> {
    mount(c"overlay", dir, Some(c"overlay"), 0, Some(opts), step)
}
