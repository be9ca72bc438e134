//! End-to-end tests of `santad::linux::fanotify` against the running kernel, as root.
//!
//! Safety: every test marks only a private tmpfs it mounted itself (`PrivateMount`), never `/` or
//! a host mount. The listener thread polls with a short timeout and stops when its guard drops —
//! also on a failed assertion — and dropping the group makes the kernel release every held exec.
//! Tests run one at a time (a global lock) so each can count this process's open fds before and
//! after and show that every event fd and pidfd was closed.
#![cfg(target_os = "linux")]

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use santa_rules::Action;
use santa_testkit::{PrivateMount, TmpfsOptions};
use santad::linux::fanotify::{
    EVENT_BUFFER_BYTES_DEFAULT, EventBuffer, Events, Fanotify, IgnoreFlavor, InitOptions,
    MASK_CLOSE_WRITE, MASK_OPEN_EXEC, MASK_OPEN_EXEC_PERM, MarkScope, PidFd, WakeFd,
};

/// How long a test waits for an expected event before failing (not hanging).
const EVENT_WAIT: Duration = Duration::from_secs(5);
/// The listener's poll timeout: how quickly it notices its stop flag.
const POLL_MS: i32 = 50;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "fanotify permission tests need root (CAP_SYS_ADMIN); run `cargo test` as root (CI does)"
    );
}

/// Whether the running kernel is at least `major.minor` (from uname's release string).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let found_major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let found_minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (found_major, found_minor) >= (major, minor)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs `test` as root, one test at a time, on a private tmpfs of its own; once the test and its
/// mount are gone, every fd it opened (groups, event fds, pidfds) must be closed again.
fn on_a_private_mount(test: impl FnOnce(&PrivateMount)) {
    let _serial = serial();
    require_root();
    let fds_before = open_fds();
    {
        let mount = PrivateMount::tmpfs(TmpfsOptions::default()).expect("private tmpfs");
        test(&mount);
    }
    assert_eq!(open_fds(), fds_before, "every event fd and pidfd closed");
}

/// A fanotify group with a mount mark on `mount` for `mask`.
fn group_on(mount: &Path, mask: u64) -> Fanotify {
    let group = Fanotify::new(InitOptions::default()).expect("fanotify_init");
    group
        .add_watch(mount, MarkScope::Mount, mask)
        .expect("mark the private mount");
    group
}

/// Reads `group`'s events a batch at a time, handing each batch to `done`, until `done` says
/// the test has what it waited for; fails the test if that takes longer than [`EVENT_WAIT`]
/// (`what` names the awaited event in the message).
fn read_until(group: &Fanotify, what: &str, mut done: impl FnMut(Events<'_>) -> bool) {
    let wake = WakeFd::new().expect("eventfd");
    let mut buf = EventBuffer::new(EVENT_BUFFER_BYTES_DEFAULT).expect("buffer");
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        assert!(Instant::now() < deadline, "no {what} within {EVENT_WAIT:?}");
        if group.wait(&wake, POLL_MS).expect("poll").events
            && done(group.read(&mut buf).expect("read"))
        {
            return;
        }
    }
}

/// One event as the listener saw it.
#[derive(Debug, Clone)]
struct Seen {
    mask: u64,
    ino: u64,
    pid: i32,
    /// The pid the pidfd refers to (from /proc/self/fdinfo), when there was one.
    pidfd_pid: Option<i32>,
}

/// A listener thread on one group. Answers permission events from `deny`; adds an ignore mark on
/// each allow when `ignore_on_allow` is set.
struct Listener {
    group: Arc<Fanotify>,
    deny: Arc<AtomicBool>,
    ignore_on_allow: Arc<AtomicBool>,
    ignore_errors: Arc<AtomicU64>,
    wake: Arc<WakeFd>,
    thread: Option<JoinHandle<()>>,
    seen: Receiver<Seen>,
    backlog: VecDeque<Seen>,
}

impl Listener {
    fn start(mount: &Path, mask: u64) -> Listener {
        let group = Arc::new(group_on(mount, mask));
        let wake = Arc::new(WakeFd::new().expect("eventfd"));
        let deny = Arc::new(AtomicBool::new(false));
        let ignore_on_allow = Arc::new(AtomicBool::new(false));
        let ignore_errors = Arc::new(AtomicU64::new(0));
        let (tx, rx) = channel();
        let thread = {
            let (group, wake, deny, ignore_on_allow, ignore_errors) = (
                group.clone(),
                wake.clone(),
                deny.clone(),
                ignore_on_allow.clone(),
                ignore_errors.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = EventBuffer::new(EVENT_BUFFER_BYTES_DEFAULT).expect("buffer");
                loop {
                    let ready = group.wait(&wake, POLL_MS).expect("poll");
                    if ready.woken {
                        return;
                    }
                    if !ready.events {
                        continue;
                    }
                    for event in group.read(&mut buf).expect("read") {
                        let event = event.expect("well-formed event");
                        let Some(fd) = &event.fd else { continue };
                        let ino =
                            std::fs::File::from(fd.as_fd().try_clone_to_owned().expect("dup"))
                                .metadata()
                                .expect("fstat")
                                .ino();
                        let pidfd_pid = match &event.pidfd {
                            Some(PidFd::Fd(p)) => fdinfo_pid(p),
                            _ => None,
                        };
                        let _ = tx.send(Seen {
                            mask: event.mask,
                            ino,
                            pid: event.pid,
                            pidfd_pid,
                        });
                        if event.is_permission() {
                            let response = if deny.load(Ordering::SeqCst) {
                                Action::Deny
                            } else {
                                Action::Allow
                            };
                            if response == Action::Allow
                                && ignore_on_allow.load(Ordering::SeqCst)
                                && group.ignore_inode(fd.as_fd(), MASK_OPEN_EXEC_PERM).is_err()
                            {
                                ignore_errors.fetch_add(1, Ordering::SeqCst);
                            }
                            group.respond(fd.as_fd(), response, false).expect("respond");
                        }
                    }
                }
            })
        };
        Listener {
            group,
            deny,
            ignore_on_allow,
            ignore_errors,
            wake,
            thread: Some(thread),
            seen: rx,
            backlog: VecDeque::new(),
        }
    }

    /// Waits for the next event whose mask has `bit`, keeping the others for later.
    fn expect_event(&mut self, bit: u64) -> Seen {
        if let Some(i) = self.backlog.iter().position(|s| s.mask & bit != 0) {
            return self.backlog.remove(i).expect("index from position");
        }
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.seen.recv_timeout(left) {
                Ok(s) if s.mask & bit != 0 => return s,
                Ok(s) => self.backlog.push_back(s),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no event with mask {bit:#x} within {EVENT_WAIT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("listener thread died"),
            }
        }
    }

    /// Everything received so far (after a short settle time), including the backlog.
    fn drain(&mut self) -> Vec<Seen> {
        std::thread::sleep(Duration::from_millis(100));
        let mut all: Vec<Seen> = self.backlog.drain(..).collect();
        all.extend(self.seen.try_iter());
        all
    }

    fn stop(&mut self) {
        let _ = self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fdinfo_pid(fd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A copy of /bin/true on the private mount.
fn binary_on(mount: &PrivateMount, name: &str) -> (PathBuf, u64) {
    let path = mount.join(name);
    std::fs::copy("/bin/true", &path).expect("copy /bin/true onto the private mount");
    let ino = std::fs::metadata(&path).expect("stat").ino();
    (path, ino)
}

fn run(path: &Path) -> std::io::Result<(i32, bool)> {
    let mut child = Command::new(path).spawn()?;
    let pid = child.id() as i32;
    Ok((pid, child.wait()?.success()))
}

/// Rewrites the first byte of the file with itself: a real write (the kernel sends a modify
/// event) that leaves the binary runnable.
fn modify_in_place(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for write");
    let mut first = [0u8; 1];
    f.read_exact_at(&mut first, 0).expect("read");
    f.write_all_at(&first, 0).expect("write");
}

fn count(seen: &[Seen], bit: u64, ino: u64) -> usize {
    seen.iter()
        .filter(|s| s.mask & bit != 0 && s.ino == ino)
        .count()
}

#[test]
fn allow_runs_and_deny_fails_with_eperm() {
    on_a_private_mount(|mount| {
        let (bin, ino) = binary_on(mount, "true");
        let mut listener = Listener::start(mount.path(), MASK_OPEN_EXEC_PERM);

        let (pid, ok) = run(&bin).expect("allowed exec runs");
        assert!(ok, "/bin/true copy exits 0");
        let seen = listener.expect_event(MASK_OPEN_EXEC_PERM);
        assert_eq!(seen.ino, ino, "event fd is the executed file");
        assert_eq!(seen.pid, pid, "event pid is the exec'ing process");
        if kernel_at_least(5, 15) {
            assert!(
                listener.group.reports_pidfd(),
                "FAN_REPORT_PIDFD accepted on Linux >= 5.15"
            );
        }
        if listener.group.reports_pidfd() {
            assert_eq!(
                seen.pidfd_pid,
                Some(pid),
                "pidfd record refers to the process"
            );
        }

        listener.deny.store(true, Ordering::SeqCst);
        let err = run(&bin).expect_err("denied exec fails");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EPERM),
            "deny → execve returns EPERM: {err}"
        );
        assert_eq!(listener.expect_event(MASK_OPEN_EXEC_PERM).ino, ino);
        listener.stop();
    });
}

#[test]
fn ignore_mark_holds_until_file_is_modified() {
    on_a_private_mount(|mount| {
        let (bin, ino) = binary_on(mount, "true");
        let mut listener = Listener::start(mount.path(), MASK_OPEN_EXEC_PERM | MASK_OPEN_EXEC);
        listener.ignore_on_allow.store(true, Ordering::SeqCst);

        // First exec: asked, allowed, ignore mark added; the notification follows.
        assert!(run(&bin).expect("exec 1").1);
        listener.expect_event(MASK_OPEN_EXEC_PERM);
        listener.expect_event(MASK_OPEN_EXEC);
        assert_eq!(
            listener.ignore_errors.load(Ordering::SeqCst),
            0,
            "ignore mark accepted"
        );
        if kernel_at_least(6, 0) {
            assert_eq!(
                listener.group.ignore_flavor(),
                IgnoreFlavor::IgnoreEvictable,
                "FAN_MARK_IGNORE | FAN_MARK_EVICTABLE accepted on Linux >= 6.0"
            );
        }

        // Second and third exec: answered by the kernel, but still reported by the notification.
        for _ in 0..2 {
            let (pid, ok) = run(&bin).expect("cached exec");
            assert!(ok);
            let note = listener.expect_event(MASK_OPEN_EXEC);
            assert_eq!(
                (note.ino, note.pid),
                (ino, pid),
                "notification for the cached exec"
            );
        }
        let seen = listener.drain();
        assert_eq!(
            count(&seen, MASK_OPEN_EXEC_PERM, ino),
            0,
            "no permission event while ignored: {seen:?}"
        );

        // A write clears the ignore mark: the kernel asks again.
        modify_in_place(&bin);
        assert!(run(&bin).expect("exec after modify").1);
        assert_eq!(
            listener.expect_event(MASK_OPEN_EXEC_PERM).ino,
            ino,
            "asked again after the file changed"
        );
        listener.stop();
    });
}

#[test]
fn flush_drops_ignore_marks_and_keeps_watching() {
    on_a_private_mount(|mount| {
        let (bin_a, ino_a) = binary_on(mount, "a");
        let (bin_b, ino_b) = binary_on(mount, "b");
        let mut listener = Listener::start(mount.path(), MASK_OPEN_EXEC_PERM | MASK_OPEN_EXEC);
        listener.ignore_on_allow.store(true, Ordering::SeqCst);

        for bin in [&bin_a, &bin_b] {
            assert!(run(bin).expect("first exec").1);
            listener.expect_event(MASK_OPEN_EXEC_PERM);
            listener.expect_event(MASK_OPEN_EXEC);
        }
        listener.ignore_on_allow.store(false, Ordering::SeqCst);
        for bin in [&bin_a, &bin_b] {
            assert!(run(bin).expect("cached exec").1);
            listener.expect_event(MASK_OPEN_EXEC);
        }
        let seen = listener.drain();
        assert_eq!(
            count(&seen, MASK_OPEN_EXEC_PERM, ino_a) + count(&seen, MASK_OPEN_EXEC_PERM, ino_b),
            0
        );

        listener.group.flush_ignores().expect("flush inode marks");

        // Both files are asked about again (ignore marks gone), and the mount mark still works.
        for (bin, ino) in [(&bin_a, ino_a), (&bin_b, ino_b)] {
            assert!(run(bin).expect("exec after flush").1);
            assert_eq!(listener.expect_event(MASK_OPEN_EXEC_PERM).ino, ino);
        }
        // And again, as nothing re-added an ignore mark.
        assert!(run(&bin_a).expect("exec").1);
        assert_eq!(listener.expect_event(MASK_OPEN_EXEC_PERM).ino, ino_a);
        listener.stop();
    });
}

#[test]
fn close_after_write_is_reported() {
    on_a_private_mount(|mount| {
        let mut listener = Listener::start(mount.path(), MASK_OPEN_EXEC_PERM | MASK_CLOSE_WRITE);
        let path = mount.join("written");
        std::fs::write(&path, b"new contents").expect("write");
        let ino = std::fs::metadata(&path).expect("stat").ino();
        let seen = listener.expect_event(MASK_CLOSE_WRITE);
        assert_eq!(seen.ino, ino);
        assert_eq!(
            seen.pid,
            std::process::id() as i32,
            "the writer is this process"
        );

        // Reading only does not produce a close-after-write.
        let _ = std::fs::read(&path).expect("read");
        let seen = listener.drain();
        assert_eq!(count(&seen, MASK_CLOSE_WRITE, ino), 0, "{seen:?}");
        listener.stop();
    });
}

#[test]
fn unmarked_mount_is_not_watched() {
    let _serial = serial();
    require_root();
    let watched = PrivateMount::tmpfs(TmpfsOptions::default()).expect("private tmpfs");
    let other = PrivateMount::tmpfs(TmpfsOptions::default()).expect("second tmpfs");
    let (bin, _) = binary_on(&other, "true");
    let mut listener = Listener::start(watched.path(), MASK_OPEN_EXEC_PERM | MASK_OPEN_EXEC);
    listener.deny.store(true, Ordering::SeqCst);
    assert!(
        run(&bin)
            .expect("exec on the unwatched mount is not held")
            .1
    );
    let seen = listener.drain();
    assert!(seen.is_empty(), "no events from another mount: {seen:?}");
}

#[test]
fn events_not_taken_are_answered_allow_when_iterator_drops() {
    on_a_private_mount(|mount| {
        let (bin, _) = binary_on(mount, "true");
        let group = group_on(mount.path(), MASK_OPEN_EXEC_PERM);
        let child = std::thread::spawn(move || run(&bin).map(|r| r.1));
        read_until(&group, "event", |events| {
            // Not one event taken: dropping the iterator must answer them.
            events.bytes_read() > 0
        });
        let ok = child
            .join()
            .expect("exec thread")
            .expect("exec was released, not failed");
        assert!(ok);
    });
}

#[test]
fn process_facts_during_and_after_a_held_exec() {
    use santad::eventlog::{ARGS_BYTES_MAX, Record, Text};
    use santad::linux::procinfo::{
        NameCache, exec_completed, fd_path_into, fill_process, read_cmdline_into,
    };
    on_a_private_mount(|mount| {
        let bin = mount.join("sleep");
        std::fs::copy("/bin/sleep", &bin).expect("copy /bin/sleep");
        let meta = std::fs::metadata(&bin).expect("stat");
        let group = group_on(mount.path(), MASK_OPEN_EXEC_PERM);
        // std's spawn returns only once the exec succeeded, and this thread holds the exec:
        // spawn from another thread (if this one panics, the group closes and releases it).
        let spawner = {
            let bin = bin.clone();
            std::thread::spawn(move || Command::new(&bin).arg("0.3").spawn())
        };
        let mut pid = 0;
        read_until(&group, "permission event", |events| {
            let mut answered = false;
            for event in events {
                let event = event.expect("event");
                let Some(fd) = &event.fd else { continue };
                pid = event.pid;
                // While held: facts that survive exec are right, the path comes from the fd, and
                // cmdline still shows the program before the exec (not "sleep 0.3").
                let mut rec = Record::new();
                let mut names = NameCache::new();
                let stat = fill_process(pid, &mut rec, &mut names).expect("process facts");
                assert_eq!(rec.ppid, std::process::id() as i32);
                assert_eq!((rec.uid, rec.user.as_bytes()), (0, &b"root"[..]));
                assert!(stat.start_ticks > 0);
                fd_path_into(fd.as_fd(), &mut rec.path).expect("fd path");
                assert_eq!(rec.path.as_bytes(), bin.as_os_str().as_encoded_bytes());
                assert!(
                    !exec_completed(pid, meta.dev(), meta.ino()),
                    "exec cannot have completed while held"
                );
                let mut before: Text<ARGS_BYTES_MAX> = Text::new();
                read_cmdline_into(pid, &mut before).expect("cmdline");
                assert!(
                    !before.as_bytes().ends_with(b"\x000.3\x00"),
                    "pre-exec cmdline: {before:?}"
                );
                group
                    .respond(fd.as_fd(), Action::Allow, false)
                    .expect("respond");
                answered = true;
            }
            answered
        });
        // After the answer: once /proc/PID/exe is the file, cmdline is the new program's.
        let deadline = Instant::now() + EVENT_WAIT;
        while !exec_completed(pid, meta.dev(), meta.ino()) {
            assert!(Instant::now() < deadline, "exec did not complete");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut args: Text<ARGS_BYTES_MAX> = Text::new();
        read_cmdline_into(pid, &mut args).expect("cmdline");
        let mut want = bin.as_os_str().as_encoded_bytes().to_vec();
        want.extend_from_slice(b"\x000.3\x00");
        assert_eq!(args.as_bytes(), &want[..]);
        let mut child = spawner.join().expect("spawner thread").expect("spawn");
        assert_eq!(
            child.id() as i32,
            pid,
            "the event came from the spawned child"
        );
        assert!(child.wait().expect("wait").success());
    });
}
