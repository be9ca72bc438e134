//! Two attacker reviews of the Lockdown bypass suite: santad with its default (whole-host)
//! coverage, the backstop loaded, Lockdown scoped to one uid per test ([`scoped`], uids no host
//! process uses), and techniques the suite in `tests/bypass.rs` does not try — the first review's
//! (interpreter replacement, paths spoofed through mount namespaces, ...), then the second's
//! (an exec starved past the lease, a thread's exec beside a check, an overlay interpreter).
//! Each test asserts the SECURE outcome, so a real bypass makes it FAIL.
//!
//! Safety: as in `tests/bypass.rs`. Lockdown applies to those uids alone; every mount an attack
//! makes lives in a user + mount namespace of a forked child and dies with it (nothing is mounted
//! on the host); santad is killed by its pid when the harness drops.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "common/attacker.rs"]
mod attacker;
mod common;
#[path = "common/fork.rs"]
mod fork;

use attacker::User;
use common::{field, start_covering};
use fork::{
    Attempt, bind, cstr, enter_userns, errno, execve, fork_attempt, fork_attempt_after,
    map_to_root, mount_overlay, mount_tmpfs, write_file,
};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The user Lockdown is scoped to, one per test (uids 64721..=64760: no passwd entry, no host
/// process). Each santad these tests start watches the whole host, so two tests running at once
/// (nextest runs each test in its own process, in parallel) would otherwise answer each other's
/// execs: a rule one test adds is unknown to the other's santad, which denies it. A test whose
/// uid is outside another santad's scope gets that santad's Monitor answer. Tests that only
/// expect denials share [`SHARED_DENY_ONLY`].
static SCOPED_UID: AtomicU32 = AtomicU32::new(0);

const SHARED_DENY_ONLY: u32 = 64_730;

fn scoped() -> User {
    let uid = SCOPED_UID.load(Ordering::Relaxed);
    assert!((64_721..=64_760).contains(&uid), "santad_for() first");
    User { uid, gid: uid }
}

/// Exit code of the attacker's own code (a copy of `true` exits 0).
const PWNED: u8 = 57;

fn santad_for(uid: u32) -> common::Santad {
    assert!((64_721..=64_760).contains(&uid));
    SCOPED_UID.store(uid, Ordering::Relaxed);
    start_covering(
        "LOCKDOWN",
        &format!("LockdownScope = {{ Users = [{uid}] }}"),
    )
}

/// [`santad_for`]`(uid)`, or `None` where unprivileged user namespaces are disabled (the
/// attacks that need one have nothing to try there).
fn santad_for_userns(uid: u32) -> Option<common::Santad> {
    userns_allowed().then(|| santad_for(uid))
}

fn userns_allowed() -> bool {
    if santad::linux::coverage::unprivileged_userns() != "allowed" {
        eprintln!("unprivileged user namespaces are disabled here: nothing to try");
        return false;
    }
    true
}

/// A 64-bit x86 ELF (ET_DYN, one R+X PT_LOAD, no PT_INTERP) whose whole program is
/// `exit_group(code)`: the attacker's own code, in 132 bytes.
fn tiny_elf(code: u8) -> Vec<u8> {
    let text: [u8; 12] = [
        0xbf, code, 0, 0, 0, // mov edi, code
        0xb8, 0xe7, 0, 0, 0, // mov eax, 231 (exit_group)
        0x0f, 0x05, // syscall
    ];
    let total = (64 + 56 + text.len()) as u64;
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    b.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&120u64.to_le_bytes()); // e_entry
    b.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    assert_eq!(b.len(), 64);
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R+X
    b.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    b.extend_from_slice(&0u64.to_le_bytes()); // p_vaddr
    b.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
    b.extend_from_slice(&total.to_le_bytes()); // p_filesz
    b.extend_from_slice(&total.to_le_bytes()); // p_memsz
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    b.extend_from_slice(&text);
    b
}

fn lines_of(s: &common::Santad, pid: i32) -> Vec<String> {
    let pid = pid.to_string();
    s.log_lines()
        .into_iter()
        .filter(|l| field(l, "pid") == Some(pid.as_str()))
        .collect()
}

fn user_files(s: &common::Santad, name: &str) -> PathBuf {
    attacker::user_dir(s.mount.path(), name, scoped())
}

/// The attacker's payload, [`tiny_elf`]`(PWNED)`, written by the scoped user at `dir/name`.
fn payload(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let bytes = tiny_elf(PWNED);
    attacker::as_user(scoped(), || attacker::write_exe(&path, &bytes));
    path
}

/// Waits until `exe` (allowed) runs for the scoped user.
fn wait_runs(s: &common::Santad, exe: &Path) {
    let start = std::time::Instant::now();
    loop {
        let (outcome, pid) = attacker::as_user(scoped(), || attacker::exec(exe));
        if outcome == attacker::Outcome::Ran(0) {
            return;
        }
        assert!(
            start.elapsed() < common::WAIT,
            "{} never ran: {outcome:?} {:#?}",
            exe.display(),
            lines_of(s, pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The scoped user's program `dir/name` (a copy of `true` salted by `salt`), allowed and shown
/// to run (the reload is asynchronous).
fn allowed_exe(s: &mut common::Santad, dir: &Path, name: &str, salt: &str) -> PathBuf {
    let exe = attacker::as_user(scoped(), || attacker::exe(dir, name, salt));
    common::settle();
    s.allow_binary(&exe);
    wait_runs(s, &exe);
    exe
}

/// [`santad_for_userns`]`(uid)` and an allowed, dynamically linked program of the user's (a
/// copy of `true`), shown to run: (santad, the user's directory, the program, its ELF
/// interpreter).
fn santad_with_an_allowed_program(uid: u32) -> Option<(common::Santad, PathBuf, PathBuf, PathBuf)> {
    let mut s = santad_for_userns(uid)?;
    let dir = user_files(&s, "u");
    let exe = allowed_exe(&mut s, &dir, "allowed", "review-allowed");
    let interp = santad::linux::coverage::elf_interpreter(&exe).unwrap();
    Some((s, dir, exe, interp))
}

/// Root's `true`, allowed by its hash (so its allow is also held in the kernel cache) and shown
/// to run for the scoped user.
fn allowed_system_binary(s: &mut common::Santad) -> PathBuf {
    let sys = common::true_binary().to_path_buf();
    s.allow_binary(&sys);
    wait_runs(s, &sys);
    sys
}

/// Forks as the scoped user into a user + mount namespace of its own ([`enter_userns`], steps
/// 1..=5; everything the attack mounts there dies with the child), runs the attack's `setup`
/// there (steps 6 and on), then execs `prog` as step `exec_step`.
fn in_userns(
    setup: impl FnOnce() -> Result<(), (u32, i32)> + Send,
    prog: &CStr,
    exec_step: u32,
) -> UsernsAttempt {
    let maps = map_to_root(scoped().uid);
    let prog = prog.to_owned();
    let (attempt, pid) = attacker::as_user(scoped(), || {
        fork_attempt_after(
            || {
                enter_userns(&maps)?;
                setup()
            },
            || execve(&prog, &[], exec_step),
        )
    });
    UsernsAttempt {
        attempt,
        pid,
        exec_step,
    }
}

/// What an attack in a user namespace ([`in_userns`]) came to.
#[derive(Debug, Clone, Copy)]
struct UsernsAttempt {
    attempt: Attempt,
    /// The forked child's pid (its exec's log lines carry it).
    pid: i32,
    /// The step of its exec.
    exec_step: u32,
}

impl UsernsAttempt {
    /// Stopped at its exec: denied by fanotify or killed by the backstop.
    fn stopped(&self) -> bool {
        self.attempt.stopped(self.exec_step)
    }

    /// The attack must have been stopped at its exec; otherwise `bypass` says what the attacker
    /// got.
    fn assert_stopped(&self, s: &common::Santad, bypass: &str) {
        common::settle();
        let lines = lines_of(s, self.pid);
        eprintln!("{:?} {lines:#?}", self.attempt);
        assert!(
            self.stopped(),
            "BYPASS: {bypass}: {:?}; santad logged: {lines:#?}",
            self.attempt
        );
    }
}

/// Execs `program` (allowed) as the scoped user in a user + mount namespace whose tmpfs over the
/// directory of `program`'s ELF interpreter holds the payload at the interpreter's name.
fn exec_with_the_interpreter_on_a_userns_tmpfs(program: &Path) -> UsernsAttempt {
    let interp = santad::linux::coverage::elf_interpreter(program).unwrap();
    let interp_dir = cstr(interp.parent().unwrap());
    let interp_c = cstr(&interp);
    let fake = tiny_elf(PWNED);
    in_userns(
        || {
            // A tmpfs over the loader's directory (/lib64 on Debian), and the payload at the
            // loader's name in it.
            mount_tmpfs(&interp_dir, 6)?;
            write_file(&interp_c, &fake, 7)
        },
        &cstr(program),
        9,
    )
}

/// The user's payload `name` (on the watched mount) bind-mounted over `target` in a user + mount
/// namespace, and exec'd there by `target`'s path.
fn exec_a_payload_bind_mounted_over(
    s: &common::Santad,
    name: &str,
    target: &Path,
) -> UsernsAttempt {
    let payload = payload(&user_files(s, "u"), name);
    common::settle();
    let (src, dst) = (cstr(&payload), cstr(target));
    in_userns(|| bind(&src, &dst, 6), &dst, 9)
}

/// Sanity: the attacker's tiny ELF is denied like any unknown binary when exec'd directly.
#[test]
fn the_attackers_tiny_elf_is_denied_when_executed_directly() {
    let s = santad_for(SHARED_DENY_ONLY);
    let p = payload(&user_files(&s, "u"), "tiny");
    let (outcome, pid) = attacker::as_user(scoped(), || attacker::exec(&p));
    assert!(outcome.is_eperm(), "{outcome:?}");
    s.logged(pid, "DENY");
    // And out of scope (root) it runs: the payload itself works.
    let (outcome, _) = attacker::exec(&p);
    assert_eq!(outcome, attacker::Outcome::Ran(PWNED as i32));
}

/// The ELF interpreter of an ALLOWED program, replaced inside the user's own mount namespace by
/// a file on a tmpfs of that namespace: the kernel loads and runs the attacker's "loader"
/// (PT_INTERP is resolved in the exec'ing process's mount namespace). fanotify sees nothing
/// (the tmpfs is not marked) and the backstop looks only at bprm->file (the allowed program) and
/// bprm->executable, never at the interpreter the ELF loader opened.
#[test]
fn an_allowed_programs_interpreter_replaced_in_a_user_mount_namespace_is_stopped() {
    let Some((s, _, exe, _)) = santad_with_an_allowed_program(64_721) else {
        return;
    };
    exec_with_the_interpreter_on_a_userns_tmpfs(&exe).assert_stopped(
        &s,
        "the attacker's interpreter ran as the allowed program's loader",
    );
}

/// The same hijack with an allowed SYSTEM binary (root's `true`, allowed by its hash, so its
/// allow is also held in the kernel cache): the attacker needs no file of its own on the host.
#[test]
fn a_system_binarys_interpreter_replaced_in_a_user_mount_namespace_is_stopped() {
    let Some(mut s) = santad_for_userns(64_722) else {
        return;
    };
    let sys = allowed_system_binary(&mut s);
    exec_with_the_interpreter_on_a_userns_tmpfs(&sys).assert_stopped(
        &s,
        &format!("{} ran the attacker's interpreter", sys.display()),
    );
}

/// The same with the fake interpreter bind-mounted from the user's file on a WATCHED filesystem
/// (a control: fanotify sees the interpreter's exec open and denies it).
#[test]
fn an_interpreter_bind_mounted_from_a_watched_filesystem_is_denied() {
    let Some((s, dir, exe, interp)) = santad_with_an_allowed_program(64_723) else {
        return;
    };
    let real = std::fs::canonicalize(&interp).unwrap();
    let fake_path = payload(&dir, "fake-ld");
    common::settle();
    let (src, dst) = (cstr(&fake_path), cstr(&real));
    let a = in_userns(|| bind(&src, &dst, 6), &cstr(&exe), 9);
    assert!(a.stopped(), "{:?}", a.attempt);
    let line = s.logged(a.pid, "DENY");
    eprintln!(
        "bind-mounted interpreter: {:?} {:#?}",
        a.attempt,
        lines_of(&s, a.pid)
    );
    // The deny holds, but the line must name the file denied (the user's fake-ld), not the
    // path the user mounted it over in their own namespace (the system's loader).
    assert!(
        line.contains("fake-ld"),
        "FALSE LOG: the denied file is the user's {}, the line names another: {line}",
        fake_path.display()
    );
}

/// pivot_root / chroot flavour: the allowed program bind-mounted into a root of the user's own
/// (a tmpfs in the user namespace) whose /lib64 holds the payload.
#[test]
fn an_allowed_program_chrooted_into_a_user_namespace_root_is_stopped() {
    let Some((s, dir, exe, interp)) = santad_with_an_allowed_program(64_724) else {
        return;
    };
    let root = dir.join("root");
    attacker::as_user(scoped(), || std::fs::create_dir(&root).unwrap());
    let root_c = cstr(&root);
    let exe_c = cstr(&exe);
    let in_root_exe = cstr(&root.join("allowed"));
    let in_root_interp_dir = cstr(&root.join(interp.parent().unwrap().strip_prefix("/").unwrap()));
    let in_root_interp = cstr(&root.join(interp.strip_prefix("/").unwrap()));
    let fake = tiny_elf(PWNED);
    in_userns(
        || {
            mount_tmpfs(&root_c, 6)?;
            // SAFETY: raw syscalls on valid C strings in the single-threaded child.
            unsafe {
                if libc::mkdir(in_root_interp_dir.as_ptr(), 0o755) != 0 {
                    return Err((7, errno()));
                }
                let fd = libc::open(in_root_exe.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o755);
                if fd < 0 {
                    return Err((8, errno()));
                }
                libc::close(fd);
            }
            bind(&exe_c, &in_root_exe, 9)?;
            write_file(&in_root_interp, &fake, 10)?;
            // SAFETY: chroot and chdir with valid C strings (CAP_SYS_CHROOT in our userns).
            unsafe {
                if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err((12, errno()));
                }
            }
            Ok(())
        },
        c"/allowed",
        13,
    )
    .assert_stopped(
        &s,
        "the allowed program ran with the attacker's interpreter in a chroot",
    );
}

/// `execveat(AT_EXECVE_CHECK)` (Linux 6.14+) asks "could this run?" and runs nothing. A
/// refused check is logged as such (`explain=execveat AT_EXECVE_CHECK: a check, nothing was
/// executed`) and sends no block message to the terminal. (An allowed check is logged as the
/// allow it is; README, "What remains uncovered".)
#[test]
fn a_refused_execve_check_is_logged_as_a_check() {
    const AT_EXECVE_CHECK: libc::c_int = 0x10000;
    let s = santad_for(64_727);
    let dir = user_files(&s, "u");
    let unknown = attacker::as_user(scoped(), || attacker::exe(&dir, "unknown", "check"));
    common::settle();
    let t = cstr(&unknown);
    let (attempt, pid) = attacker::as_user(scoped(), || {
        fork_attempt(|| {
            let argv = [t.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            // SAFETY: valid C strings and arrays.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    libc::AT_FDCWD,
                    t.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    AT_EXECVE_CHECK,
                )
            };
            if rc == 0 { (100, 0) } else { (101, errno()) }
        })
    });
    if attempt
        == (Attempt::Failed {
            step: 101,
            errno: libc::EINVAL,
        })
    {
        eprintln!("no AT_EXECVE_CHECK on this kernel");
        return;
    }
    assert_eq!(
        attempt,
        Attempt::Failed {
            step: 101,
            errno: libc::EPERM
        },
        "the check of an unknown file is refused"
    );
    let line = s.logged(pid, "DENY");
    assert!(
        field(&line, "explain")
            .is_some_and(|e| e.contains("AT_EXECVE_CHECK: a check, nothing was executed")),
        "{line}"
    );
}

/// Control: an overlayfs made in the user's namespace over the user's own unknown binary (lower
/// layer on a watched filesystem): the overlay is a superblock santad never marked.
#[test]
fn an_overlay_in_a_user_namespace_over_a_watched_unknown_binary_is_stopped() {
    let Some(s) = santad_for_userns(SHARED_DENY_ONLY) else {
        return;
    };
    let dir = user_files(&s, "u");
    let lower = dir.join("lower");
    let work = dir.join("w");
    let merged = dir.join("merged");
    attacker::as_user(scoped(), || {
        for d in [&lower, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        attacker::exe(&lower, "tool", "overlay");
    });
    let tmp = dir.join("t");
    attacker::as_user(scoped(), || std::fs::create_dir(&tmp).unwrap());
    let tmp_c = cstr(&tmp);
    let opts = CString::new(format!(
        "lowerdir={},upperdir={}/up,workdir={}/wk",
        lower.display(),
        tmp.display(),
        tmp.display()
    ))
    .unwrap();
    let up = cstr(&tmp.join("up"));
    let wk = cstr(&tmp.join("wk"));
    let merged_c = cstr(&merged);
    let a = in_userns(
        || {
            mount_tmpfs(&tmp_c, 6)?;
            // SAFETY: raw syscalls with valid C strings.
            unsafe {
                libc::mkdir(up.as_ptr(), 0o755);
                libc::mkdir(wk.as_ptr(), 0o755);
            }
            mount_overlay(&merged_c, &opts, 7)
        },
        &cstr(&merged.join("tool")),
        9,
    );
    eprintln!("{:?} {:#?}", a.attempt, lines_of(&s, a.pid));
    assert!(a.stopped(), "{:?}", a.attempt);
}

/// Control: `#!` naming the dynamic loader, the script on the user namespace's tmpfs (the
/// script file itself is unseen; the loader is bprm->file).
#[test]
fn a_script_whose_interpreter_is_the_loader_is_killed() {
    let Some(s) = santad_for_userns(SHARED_DENY_ONLY) else {
        return;
    };
    let dir = user_files(&s, "u");
    let unknown = attacker::as_user(scoped(), || attacker::exe(&dir, "unknown", "shebang-ld"));
    let mnt = dir.join("mnt");
    attacker::as_user(scoped(), || std::fs::create_dir(&mnt).unwrap());
    let loader = santad::linux::coverage::elf_interpreter(Path::new("/bin/sh")).unwrap();
    let script = format!("#!{} {}\n", loader.display(), unknown.display());
    let mnt_c = cstr(&mnt);
    let script_c = cstr(&mnt.join("s"));
    let a = in_userns(
        || {
            mount_tmpfs(&mnt_c, 6)?;
            write_file(&script_c, script.as_bytes(), 7)
        },
        &script_c,
        9,
    );
    assert!(a.stopped(), "{:?}", a.attempt);
    let line = s.logged(a.pid, "DENY");
    eprintln!("{line}");
}

/// Control: an O_PATH fd of an unknown binary, exec'd by execveat(AT_EMPTY_PATH) and through
/// /proc/self/fd.
#[test]
fn an_o_path_fd_exec_of_an_unknown_binary_is_denied() {
    let s = santad_for(SHARED_DENY_ONLY);
    let dir = user_files(&s, "u");
    let unknown = attacker::as_user(scoped(), || attacker::exe(&dir, "unknown", "opath"));
    common::settle();
    let u = cstr(&unknown);
    for via_proc in [false, true] {
        let (attempt, pid) = attacker::as_user(scoped(), || {
            fork_attempt(|| {
                // SAFETY: open with a valid C string.
                let fd = unsafe { libc::open(u.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
                if fd < 0 {
                    return (1, errno());
                }
                if via_proc {
                    let p = CString::new(format!("/proc/self/fd/{fd}")).unwrap();
                    return execve(&p, &[], 2);
                }
                attacker::execve_fd(fd, &u);
                (2, errno())
            })
        });
        assert!(attempt.stopped(2), "via /proc: {via_proc}: {attempt:?}");
        s.logged(pid, "DENY");
    }
}

/// Control: a hard link to the loader (protected_hardlinks refuses it for a file the user does
/// not own; were it made, it is the same inode).
#[test]
fn a_hard_link_to_the_loader_is_refused_or_the_same_inode() {
    SCOPED_UID.store(SHARED_DENY_ONLY, Ordering::Relaxed);
    let loader = santad::linux::coverage::elf_interpreter(Path::new("/bin/sh")).unwrap();
    let real = std::fs::canonicalize(&loader).unwrap();
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(scoped().uid), Some(scoped().gid)).unwrap();
    let link = tmp.path().join("ld");
    let r = attacker::as_user(scoped(), || std::fs::hard_link(&real, &link));
    if r.is_ok() {
        // It would be the loader's inode: the backstop's (dev, ino) match holds.
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            std::fs::metadata(&real).unwrap(),
            std::fs::metadata(&link).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    }
}

/// santad names files by the path the kernel gives for its event fd (`/proc/self/fd/N`), and
/// for a file reached through a mount of another mount namespace that path is the one in THAT
/// namespace: the attacker chooses it. The failsafe list allows santad's own binaries BY PATH,
/// so the user's unknown binary (on a watched filesystem: fanotify asks, the backstop passes it)
/// bind-mounted over santad's own path in a user namespace is allowed as "failsafe path".
#[test]
fn an_unknown_binary_bind_mounted_over_santads_own_path_is_denied() {
    let Some(s) = santad_for_userns(64_728) else {
        return;
    };
    let santad_path = std::fs::canonicalize(env!("CARGO_BIN_EXE_santad")).unwrap();
    exec_a_payload_bind_mounted_over(&s, "payload", &santad_path).assert_stopped(
        &s,
        "the user's unknown binary ran as santad's failsafe path",
    );
}

/// The same path spoofing against `AllowedPathRegex`: the admin allows one root-owned file by
/// its path (`^/usr/bin/true$`, for the scoped user only: harmless on the host); the user
/// bind-mounts their unknown binary (on a watched filesystem) over it in a user namespace.
#[test]
fn an_unknown_binary_bind_mounted_under_an_allowed_path_regex_is_denied() {
    if !userns_allowed() {
        return;
    }
    let uid = 64_729;
    SCOPED_UID.store(uid, Ordering::Relaxed);
    let target = std::fs::canonicalize(common::true_binary()).unwrap();
    let s = start_covering(
        "LOCKDOWN",
        &format!(
            "LockdownScope = {{ Users = [{uid}] }}\nAllowedPathRegex = \"^{}$\"",
            target.display()
        ),
    );
    // (Not exec'd directly first: santad caches a decision by inode, and a cached DENY would
    // answer the spoofed exec too.)
    exec_a_payload_bind_mounted_over(&s, "tool", &target)
        .assert_stopped(&s, "the user's unknown binary ran under AllowedPathRegex");
}

// The second review.

/// The ELF interpreter of an allowed SYSTEM binary replaced, in the user's own mount namespace,
/// by an overlayfs whose upper-most lower layer is a directory of the user's on a WATCHED
/// filesystem holding the payload under the loader's name. The overlay's superblock is not
/// marked (fanotify sees no open of the interpreter on it), and overlayfs maps the REAL file
/// into the process (`vma->vm_file` is the lower layer's file, on a watched filesystem), so the
/// entry-point check (`bpf_find_vma` at the first instruction) finds a file on a watched
/// filesystem and passes it. The real file is opened by overlayfs as a backing file, which
/// generates no fanotify event on the lower filesystem either.
#[test]
fn an_interpreter_replaced_by_an_overlay_over_a_watched_lower_file_is_stopped() {
    let Some(mut s) = santad_for_userns(64_741) else {
        return;
    };
    let sys = allowed_system_binary(&mut s);
    let interp = santad::linux::coverage::elf_interpreter(&sys).unwrap();
    let interp_dir = interp.parent().unwrap().to_path_buf();
    let dir = user_files(&s, "u");
    let low = dir.join("low");
    attacker::as_user(scoped(), || std::fs::create_dir(&low).unwrap());
    payload(&low, interp.file_name().unwrap().to_str().unwrap());
    common::settle();
    let opts = CString::new(format!(
        "lowerdir={}:{}",
        low.display(),
        interp_dir.display()
    ))
    .unwrap();
    let dst = cstr(&interp_dir);
    in_userns(|| mount_overlay(&dst, &opts, 6), &cstr(&sys), 9).assert_stopped(
        &s,
        &format!(
            "{} ran the attacker's interpreter from an overlay",
            sys.display()
        ),
    );
}

/// The environment variable that turns [`helper`] on (it is a no-op test otherwise).
const HELPER_ENV: &str = "SANTAD_REVIEW2_HELPER";

/// Runs this test binary's [`helper`] as a separate process (root exec, outside the scope),
/// which drops to the scoped user and runs `role` with `args`; returns its wait status.
fn run_helper(role: &str, args: &[&str]) -> std::process::ExitStatus {
    let me = std::env::current_exe().unwrap();
    std::process::Command::new(me)
        .args(["--exact", "helper", "--nocapture", "--test-threads", "1"])
        .env(HELPER_ENV, role)
        .env("REVIEW2_UID", scoped().uid.to_string())
        .env("REVIEW2_ARGS", args.join("\n"))
        .status()
        .unwrap()
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it; the call reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

/// Forks, and in the parent waits for the child and leaves with its exit code (or
/// `code_if_killed(signal)` if a signal ended it): the caller goes on as the child, a fresh
/// single-threaded process whose leader is the calling thread.
fn go_on_in_a_fresh_process(what: &str, code_if_killed: fn(i32) -> i32) {
    // SAFETY: the child only spawns threads and makes syscalls; the parent reaps it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        return;
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    eprintln!("helper: {what} child {pid} status {status:#x}");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        code_if_killed(libc::WTERMSIG(status))
    };
    // SAFETY: leaving with the child's outcome.
    unsafe { libc::_exit(code) };
}

/// The leases `/proc/locks` lists on inode `ino`.
fn leases_on(ino: u64) -> usize {
    let tail = format!(":{ino} ");
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("LEASE") && (l.to_string() + " ").contains(&tail))
        .count()
}

/// The attacker's side of the races below, in a process of its own (threads: std's, freely).
#[test]
fn helper() {
    let Ok(role) = std::env::var(HELPER_ENV) else {
        return;
    };
    let uid: u32 = std::env::var("REVIEW2_UID").unwrap().parse().unwrap();
    let args: Vec<String> = std::env::var("REVIEW2_ARGS")
        .unwrap()
        .split('\n')
        .map(str::to_string)
        .collect();
    // SAFETY: glibc's set*id wrappers change every thread of the process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(uid, uid, uid), 0);
        assert_eq!(libc::setresuid(uid, uid, uid), 0);
    }
    match role.as_str() {
        "linger" => helper_linger(&args),
        "check" => helper_check(&args),
        other => panic!("unknown helper role {other}"),
    }
}

/// A non-leader thread of a process execs the user's own ALLOWED file while it is starved of
/// CPU (SCHED_IDLE, pinned to a CPU other threads of the process keep busy): santad answers
/// allow under a read lease and keeps the lease `LINGER_MAX` (1 s) after the answer; an exec
/// still not past the kernel's write lock then is killed — but the check is
/// `still_in_exec(event.pid)`, which reads `/proc/PID/syscall` of the thread-group LEADER
/// (fanotify reports the tgid), not of the thread that execs. The leader sleeps in another
/// syscall, so nothing is killed and the lease goes; the attacker rewrites the file with the
/// payload, stops the spinners, and the starved exec reads the new bytes.
fn helper_linger(args: &[String]) {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let exe = PathBuf::from(&args[0]);
    let payload = std::fs::read(&args[1]).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&exe).unwrap());
    let attack_cpu = 1;
    if args.get(2).map(String::as_str) == Some("leader") {
        // A fresh single-threaded process whose only thread, the leader, is the one to exec.
        go_on_in_a_fresh_process("leader", |signal| 200 + signal);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut spinners = Vec::new();
    for _ in 0..64 {
        let stop = stop.clone();
        spinners.push(std::thread::spawn(move || {
            pin_to_cpu(attack_cpu);
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }));
    }
    let exe_c = cstr(&exe);
    // The starved exec: from a thread (the attack) or from the leader itself (the control).
    let from_leader = args.get(2).map(String::as_str) == Some("leader");
    let starved_exec = move || {
        pin_to_cpu(attack_cpu);
        // SAFETY: sched_param is plain data; 0 is this thread.
        unsafe {
            let p = libc::sched_param { sched_priority: 0 };
            assert_eq!(libc::sched_setscheduler(0, libc::SCHED_IDLE, &p), 0);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (_, e) = execve(&exe_c, &[], 1);
        // SAFETY: leaving the process with a code the test reads.
        unsafe { libc::_exit(100 + e) };
    };
    let observer = move || {
        pin_to_cpu(0);
        let start = std::time::Instant::now();
        // The lease santad takes while it answers, then its release.
        while leases_on(ino) == 0 {
            if start.elapsed() > std::time::Duration::from_secs(40) {
                eprintln!("helper: never saw santad's lease");
                // SAFETY: leaving.
                unsafe { libc::_exit(91) };
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let seen = std::time::Instant::now();
        while leases_on(ino) != 0 {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        eprintln!("helper: lease held {:?}", seen.elapsed());
        let c = cstr(&exe);
        match write_file(&c, &payload, 1) {
            Ok(()) => eprintln!("helper: rewrote the allowed file while its exec was starved"),
            Err((step, e)) => eprintln!("helper: rewrite failed at {step}: errno {e}"),
        }
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_secs(30));
        // SAFETY: leaving.
        unsafe { libc::_exit(92) };
    };
    if from_leader {
        // SAFETY: gettid and getpid have no preconditions.
        let (tid, pid) = unsafe { (libc::gettid(), libc::getpid()) };
        assert_eq!(tid, pid, "not the leader");
        std::thread::spawn(observer);
        starved_exec();
    } else {
        std::thread::spawn(starved_exec);
        observer();
    }
}

/// The leader of a fresh process sits in `execveat(big, AT_EXECVE_CHECK)` (held while santad
/// hashes a large file nobody decided yet) while a second thread execs the payload for real.
fn helper_check(args: &[String]) {
    let big = cstr(Path::new(&args[0]));
    let payload = cstr(Path::new(&args[1]));
    go_on_in_a_fresh_process("check", |_| 99);
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let (_, e) = execve(&payload, &[], 1);
        // SAFETY: leaving with the payload exec's errno.
        unsafe { libc::_exit(100 + e) };
    });
    let argv = [big.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: valid C strings and null-terminated arrays.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            libc::AT_FDCWD,
            big.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            0x1_0000, // AT_EXECVE_CHECK
        )
    };
    std::thread::sleep(std::time::Duration::from_secs(5));
    // SAFETY: leaving.
    unsafe { libc::_exit(98) };
}

/// `is_execve_check(event.pid)` reads `/proc/PID/syscall` of the thread-group LEADER (fanotify
/// reports the tgid). A process whose leader is held in an `execveat(AT_EXECVE_CHECK)` while
/// another of its threads execs the attacker's file for real gets that real, denied exec logged
/// as `execveat AT_EXECVE_CHECK: a check, nothing was executed`, and no block message.
#[test]
fn a_real_exec_from_a_thread_is_not_logged_as_a_check_because_its_leader_checks() {
    let s = santad_for(64_744);
    let dir = user_files(&s, "u");
    let payload = payload(&dir, "payload");
    // A large root-owned executable santad has not decided yet (any such file of the host
    // does: a big vendor binary); sparse, so it costs nothing but hashing time.
    let big = dir.join("big-root-tool");
    {
        let f = std::fs::File::create(&big).unwrap();
        std::io::Write::write_all(&mut &f, &tiny_elf(0)).unwrap();
        f.set_len(1000 << 20).unwrap();
    }
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    common::settle();
    let status = run_helper("check", &[big.to_str().unwrap(), payload.to_str().unwrap()]);
    eprintln!("check: {status:?}");
    assert_eq!(
        status.code(),
        Some(100 + libc::EPERM),
        "the payload's exec is denied either way: {status:?}"
    );
    let line = s
        .wait_log(1, |l| {
            l.contains("path=") && l.contains("/payload") && l.contains("DENY")
        })
        .remove(0);
    eprintln!("{line}");
    assert!(
        !line.contains("AT_EXECVE_CHECK"),
        "FALSE LOG: a real exec of {} (denied) is logged as a check that executed nothing: {line}",
        payload.display()
    );
}

/// The starved exec of [`helper_linger`] from a `thread` or from the `leader`, in three rounds,
/// each on a fresh allowed program of the user's (salted `review2-<salt>-<round>`) that the
/// helper rewrites with the payload; `check` gets each round's helper status.
fn starved_exec_rounds(
    s: &mut common::Santad,
    from: &str,
    salt: &str,
    mut check: impl FnMut(&common::Santad, u32, std::process::ExitStatus),
) {
    let dir = user_files(s, "u");
    let payload = dir.join("payload-bytes");
    std::fs::write(&payload, tiny_elf(PWNED)).unwrap();
    for round in 0..3 {
        let exe = allowed_exe(
            s,
            &dir,
            &format!("allowed{round}"),
            &format!("review2-{salt}-{round}"),
        );
        let status = run_helper(
            "linger",
            &[exe.to_str().unwrap(), payload.to_str().unwrap(), from],
        );
        check(s, round, status);
    }
}

#[test]
fn a_starved_non_leader_threads_exec_cannot_run_a_file_rewritten_after_the_allow() {
    let mut s = santad_for(64_742);
    let mut outcomes = Vec::new();
    starved_exec_rounds(&mut s, "thread", "linger", |s, round, status| {
        eprintln!("round {round}: {status:?}");
        outcomes.push(status);
        assert_ne!(
            status.code(),
            Some(PWNED as i32),
            "BYPASS: a starved exec ran the file rewritten after santad's allow (round \
             {round}); santad logged: {:#?}",
            s.log_lines()
                .into_iter()
                .filter(|l| l.contains(&format!("allowed{round}")))
                .collect::<Vec<_>>()
        );
    });
    eprintln!("outcomes: {outcomes:?}");
}

/// The same starved exec from the thread-group LEADER (a single-threaded process): santad reads
/// the right thread's `/proc/PID/syscall` here, but a task that is runnable and merely off the
/// CPU reads as `running` there (the kernel's `task_current_syscall` answers -EAGAIN for any
/// TASK_RUNNING task), so `still_in_exec` is false for exactly the starved exec it is meant to
/// catch, nothing is killed, and the payload runs. Secure outcomes: `true` ran (0) or the
/// process was killed.
#[test]
fn a_starved_leaders_exec_is_killed_when_the_lease_wait_runs_out() {
    let mut s = santad_for(64_743);
    starved_exec_rounds(&mut s, "leader", "leader", |_, round, status| {
        eprintln!("leader round {round}: {status:?}");
        assert_ne!(
            status.code(),
            Some(PWNED as i32),
            "BYPASS: a starved single-threaded exec ran the file rewritten after santad's allow \
             (round {round})"
        );
        assert!(
            matches!(status.code(), Some(0) | Some(209)),
            "the leader's exec ran `true` (0) or was killed (200 + SIGKILL): {status:?}"
        );
    });
}
