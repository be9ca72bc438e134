//! Which processes are compilers, for transitive rules (Santa's `SNTCompilerController`).
//!
//! **How a writer is identified.** A process becomes a compiler when santad allows its exec
//! with an `ALLOWLIST_COMPILER` rule (and `EnableTransitiveRules`): the responder registers it
//! *while the exec is still held*, with the executable's inode, the time, and a pidfd opened
//! then (so it names that process and no later one with the same pid). The fanotify
//! close-after-write event names the process that closed the file (its thread-group id). That
//! close counts as the compiler's when all of these hold:
//!
//! - the pid has a registration, and the close came in a later read of the fanotify group than
//!   the compiler's exec did: the workers' reads are numbered in the order the kernel hands out
//!   events (the number is taken under a lock held across the read), so a close the same pid
//!   made before it exec'd the compiler (its earlier image), queued before the exec, came in
//!   the same read or an earlier one, while the compiler's own closes, which can only follow
//!   santad's answer, come in later ones;
//! - the process has not exec'd anything else since: a later exec santad sees (a permission
//!   event or an exec notification) ends the registration, and `/proc/PID/exe`, while readable,
//!   must still be the registered executable;
//! - if the registered process has exited (its last close is queued before its exit, and may
//!   be read after it), its pid has not been handed out again since: the kernel allocates pids
//!   in a cycle, and the allocator's cursor (`kernel.ns_last_pid`), read when the exit is noted
//!   and again at the check, has not come round to the pid; and the read began at most a
//!   second after the exit.
//!
//! **What a process can and cannot do to fake it.** It cannot make its own closes count: its
//! executable has no compiler rule, and a close by a process that got an exited compiler's pid
//! needs the pid allocator to come round to it, which the cursor check sees (short of a whole
//! cycle of `pid_max` pids between two reads of the cursor within that second, which it does
//! not). It cannot claim a compiler's closes from before that compiler's exec. What it
//! *can* do — as on macOS — is give a compiler something to close: a file it opened for writing
//! and wrote, inherited by a compiler it then runs (`{ cat payload; exec cc ...; } > out`), or
//! a file it keeps writing while a compiler it started closes it. Each gets a rule for bytes the
//! user chose; but a user who may run a compiler can compile any program anyway, so this gives
//! nothing transitive rules did not already give. Transitive rules are for users trusted to
//! build software; compiler rules belong on compilers and linkers only (`ld` writes executables;
//! a compiler rule on a shell or an interpreter makes everything it writes runnable).

use santa_hotpath::FileKey;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Compiler processes tracked at once; more are refused (counted, logged once): their outputs
/// get no transitive rules.
const COMPILERS_MAX: usize = 4096;
/// Longest grace after a compiler's exit for its last closes (see the module docs).
const GRACE_MAX_NS: u64 = 1_000_000_000;

/// The pid allocator's cursor: the last pid handed out in santad's pid namespace.
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether the cyclic pid allocator, whose cursor moved from `from` to `to`, handed out `pid`
/// on the way (less than one full cycle assumed): pids after the cursor come first, then it
/// wraps to the low ones.
fn cursor_passed(from: u32, to: u32, pid: u32) -> bool {
    if from <= to {
        from < pid && pid <= to
    } else {
        pid > from || pid <= to
    }
}
/// How long an exited compiler's registration is kept, in graces.
const KEEP_GRACES: u64 = 4;

/// `CLOCK_MONOTONIC` now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel (vDSO) to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[derive(Debug)]
struct Entry {
    exe: FileKey,
    /// The number of the read that brought the compiler's exec.
    exec_read: u64,
    pidfd: OwnedFd,
    /// When its exit was noted, and the pid cursor then.
    dead: Option<Exit>,
}

#[derive(Debug, Clone, Copy)]
struct Exit {
    ns: u64,
    last_pid: Option<u32>,
}

impl Exit {
    fn now() -> Self {
        Self {
            ns: monotonic_ns(),
            last_pid: last_pid(),
        }
    }
}

/// Counters, exported as `compilers.*`.
#[derive(Debug, Default, serde::Serialize)]
pub struct CompilerCounters {
    /// Compiler processes registered at their exec.
    pub registered: AtomicU64,
    /// Registrations refused (table full, or no pidfd for the process).
    pub refused: AtomicU64,
    /// Closes after writing credited to a compiler.
    pub closes_credited: AtomicU64,
    /// Closes by a registered pid not credited (an earlier image, another executable now, or
    /// read too long after the compiler exited).
    pub closes_refused: AtomicU64,
}

/// The compiler processes.
#[derive(Debug)]
pub struct Compilers {
    map: Mutex<HashMap<i32, Entry>>,
    /// Entries in `map` (read without the lock on every exec and close).
    len: AtomicUsize,
    /// The reaper's wait set (`None` if epoll could not be had: exits are then noted when a
    /// close is checked).
    epoll: Option<OwnedFd>,
    grace_ns: u64,
    warned_full: AtomicBool,
    /// Counters.
    pub counters: CompilerCounters,
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `pidfd` has exited (its pidfd is readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

impl Compilers {
    /// An empty table, with the epoll set its reaper waits on.
    pub fn new() -> Arc<Self> {
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            len: AtomicUsize::new(0),
            // SAFETY: just returned by the kernel, owned by nobody else.
            epoll: (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) }),
            grace_ns: GRACE_MAX_NS,
            warned_full: AtomicBool::new(false),
            counters: CompilerCounters::default(),
        })
    }

    /// Whether any compiler is registered (one relaxed load).
    pub fn any(&self) -> bool {
        self.len.load(Ordering::Relaxed) != 0
    }

    /// Registers `pid`, whose exec of the file `exe` (brought by read number `exec_read`) santad
    /// is allowing as a compiler's. Call while the exec is held.
    pub fn register(&self, pid: i32, exe: FileKey, exec_read: u64) {
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(_) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= COMPILERS_MAX && !map.contains_key(&pid) {
            drop(map);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "{COMPILERS_MAX} compiler processes are running: the outputs of more get no \
                     transitive rules"
                );
            }
            return;
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: pid as u32 as u64 | (pidfd.as_raw_fd() as u64) << 32,
        };
        if let Some(epoll) = &self.epoll {
            // SAFETY: both fds are open; `ev` is a valid epoll_event.
            unsafe {
                libc::epoll_ctl(
                    epoll.as_raw_fd(),
                    libc::EPOLL_CTL_ADD,
                    pidfd.as_raw_fd(),
                    &mut ev,
                )
            };
        }
        map.insert(
            pid,
            Entry {
                exe,
                exec_read,
                pidfd,
                dead: None,
            },
        );
        self.len.store(map.len(), Ordering::Relaxed);
        self.counters.registered.fetch_add(1, Ordering::Relaxed);
    }

    /// `pid` executes `exe` (a permission event or an exec notification): unless that is the
    /// registered compiler's own exec, the registration ends.
    pub fn exec_seen(&self, pid: i32, exe: FileKey) {
        if !self.any() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&pid).is_some_and(|e| e.exe != exe) {
            map.remove(&pid);
            self.len.store(map.len(), Ordering::Relaxed);
        }
    }

    /// Whether a close-after-write by `pid`, brought by read number `read`, which began at
    /// `read_started_ns` (monotonic), is a compiler's (see the module docs).
    pub fn credits(&self, pid: i32, read: u64, read_started_ns: u64) -> bool {
        if !self.any() {
            return false;
        }
        let ok = self.credits_locked(pid, read, read_started_ns);
        match ok {
            Some(true) => {
                self.counters
                    .closes_credited
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(false) => {
                self.counters.closes_refused.fetch_add(1, Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    fn credits_locked(&self, pid: i32, read: u64, read_started_ns: u64) -> Option<bool> {
        let (exe, dead) = {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            let e = map.get_mut(&pid)?;
            if read <= e.exec_read {
                return Some(false);
            }
            if e.dead.is_none() && exited(&e.pidfd) {
                e.dead = Some(Exit::now());
            }
            (e.exe, e.dead)
        };
        if let Some(exit) = dead {
            if read_started_ns > exit.ns.saturating_add(self.grace_ns) {
                return Some(false);
            }
            // Handed out again since the exit: the close may be the new process's.
            match (exit.last_pid, last_pid()) {
                (Some(from), Some(to)) if !cursor_passed(from, to, pid as u32) => {}
                _ => return Some(false),
            }
        }
        // While the process (or its zombie) is there, it must still run the compiler.
        match std::fs::metadata(format!("/proc/{pid}/exe")) {
            Ok(m) => Some(m.dev() == exe.dev && m.ino() == exe.ino),
            // Exiting (its executable already released) or gone: the checks above hold, and
            // an exit not yet noted means the registered process is still there, so its pid
            // was not handed to another.
            Err(_) => Some(true),
        }
    }

    /// The reaper: notes each compiler's exit when its pidfd turns readable, and forgets exited
    /// ones a few graces later. Returns when `stop` is set (checked every second).
    pub fn spawn_reaper(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("santad-compilers".into())
            .spawn(move || {
                let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
                let epoll = me.epoll.as_ref().map_or(-1, |e| e.as_raw_fd());
                while !stop.load(Ordering::Acquire) {
                    let n = if epoll < 0 {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        0
                    } else {
                        // SAFETY: `events` is a writable array of 64 epoll_event.
                        unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 64, 1000) }
                    };
                    let now = monotonic_ns();
                    let mut map = me.map.lock().unwrap_or_else(PoisonError::into_inner);
                    for ev in events.iter().take(n.max(0) as usize) {
                        let pid = ev.u64 as u32 as i32;
                        let fd = (ev.u64 >> 32) as i32;
                        if let Some(e) = map.get_mut(&pid)
                            && e.pidfd.as_raw_fd() == fd
                        {
                            if e.dead.is_none() {
                                e.dead = Some(Exit {
                                    ns: now,
                                    last_pid: last_pid(),
                                });
                            }
                            // Level-triggered: taken out of the set now that its exit is noted.
                            // SAFETY: a valid epoll fd and a registered fd.
                            unsafe {
                                libc::epoll_ctl(
                                    epoll,
                                    libc::EPOLL_CTL_DEL,
                                    fd,
                                    std::ptr::null_mut(),
                                )
                            };
                        }
                    }
                    let keep = me.grace_ns.saturating_mul(KEEP_GRACES);
                    map.retain(|_, e| e.dead.is_none_or(|d| now.saturating_sub(d.ns) < keep));
                    me.len.store(map.len(), Ordering::Relaxed);
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(path: &str) -> FileKey {
        let m = std::fs::metadata(path).unwrap();
        FileKey {
            dev: m.dev(),
            ino: m.ino(),
        }
    }

    #[test]
    fn a_registered_live_process_running_its_executable_is_credited() {
        let c = Compilers::new();
        let me = std::process::id() as i32;
        let exe = key_of("/proc/self/exe");
        c.register(me, exe, 10);
        // The exec's own read, or an earlier one: an earlier image's close.
        assert!(!c.credits(me, 10, monotonic_ns()));
        assert!(!c.credits(me, 9, monotonic_ns()));
        assert!(c.credits(me, 11, monotonic_ns()));
        // Another executable registered for this pid: /proc/PID/exe disagrees.
        c.register(me, FileKey { dev: 1, ino: 2 }, 10);
        assert!(!c.credits(me, 11, monotonic_ns()));
        // An exec of something else ends it.
        c.exec_seen(me, FileKey { dev: 3, ino: 4 });
        assert!(!c.any());
        assert!(!c.credits(me, 11, monotonic_ns()));
    }

    #[test]
    fn an_exec_waits_for_a_pending_output_until_its_mark_drops() {
        let set = Arc::new(PendingOutputs::default());
        let key = FileKey { dev: 1, ino: 2 };
        assert!(
            !set.wait(key, std::time::Duration::from_secs(5)),
            "nothing pending"
        );
        let mark = set.add(key);
        let second = set.add(key);
        let started = std::time::Instant::now();
        let waiter = {
            let set = set.clone();
            std::thread::spawn(move || set.wait(key, std::time::Duration::from_secs(10)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(mark);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "one mark is still held");
        drop(second);
        assert!(waiter.join().unwrap());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Bounded: a mark never dropped holds a waiter only `max`.
        let _stuck = set.add(key);
        let started = std::time::Instant::now();
        assert!(set.wait(key, std::time::Duration::from_millis(100)));
        assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    }

    #[test]
    fn the_cursor_check_follows_the_cycle() {
        assert!(!cursor_passed(100, 200, 50));
        assert!(cursor_passed(100, 200, 150));
        assert!(!cursor_passed(100, 200, 250));
        // Wrapped: from 30000 round to 400.
        assert!(cursor_passed(30_000, 400, 31_000));
        assert!(cursor_passed(30_000, 400, 350));
        assert!(!cursor_passed(30_000, 400, 5_000));
        assert!(!cursor_passed(100, 100, 100));
    }

    #[test]
    fn an_exited_compiler_is_credited_only_within_the_grace() {
        let c = Compilers::new();
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        c.register(pid, key_of("/bin/sleep"), 1);
        let before_exit = monotonic_ns();
        child.kill().unwrap();
        child.wait().unwrap();
        // Read before its exit was noted: credited (the close came before the exit).
        assert!(c.credits(pid, 2, before_exit + 1));
        // Read long after: refused.
        assert!(!c.credits(pid, 3, monotonic_ns() + 2 * GRACE_MAX_NS));
    }
}

/// Compiler outputs whose transitive rule is being made (hashed on the prefetch lane or the
/// housekeeping thread), by file: an exec of one that the rules would deny waits for it (an
/// exec can race the close it follows, under load or when the linker changes the file's mode
/// after closing it, as `ld.bfd` does).
#[derive(Debug, Default)]
pub struct PendingOutputs {
    files: Mutex<HashMap<FileKey, u32>>,
    done: std::sync::Condvar,
}

/// A pending mark shared between a prefetch event and its source, which takes it back when the
/// lane does not evaluate the event.
pub type PendingCell = Arc<Mutex<Option<PendingOutput>>>;

/// One pending compiler output; dropping it (the work is done, or given up) lets waiters go.
#[derive(Debug)]
pub struct PendingOutput {
    set: Arc<PendingOutputs>,
    key: FileKey,
}

impl PendingOutputs {
    /// Marks `key` pending until the returned guard drops.
    pub fn add(self: &Arc<Self>, key: FileKey) -> PendingOutput {
        *self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default() += 1;
        PendingOutput {
            set: self.clone(),
            key,
        }
    }

    /// Waits at most `max` for no work on `key` to be pending; whether there was any.
    pub fn wait(&self, key: FileKey, max: std::time::Duration) -> bool {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if !files.contains_key(&key) {
            return false;
        }
        let _unused = self
            .done
            .wait_timeout_while(files, max, |f| f.contains_key(&key))
            .unwrap_or_else(PoisonError::into_inner);
        true
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        let mut files = self
            .set
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = files.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                files.remove(&self.key);
            }
        }
        drop(files);
        self.set.done.notify_all();
    }
}
