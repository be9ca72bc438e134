//! Leases of answered execs kept until each exec is past the kernel's write lock, and the
//! backstop's record of each such allow.

use super::*;

/// Longest an answered exec's lease is kept waiting for the exec to get past the kernel's write
/// lock (an exec that failed after our allow never does).
const LINGER_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the linger thread looks at the execs it waits for (a stat of /proc/PID/exe each).
/// An exec reaches the kernel's write lock microseconds after the answer, so one look a
/// millisecond later almost always lets it go: per exec that is one stat and a share of one
/// wake-up (a wake-up per exec cost ~30 µs of CPU here), and a writer of the file waits about a
/// millisecond more.
const LINGER_POLL: std::time::Duration = std::time::Duration::from_millis(1);
/// How often an entry past `LINGER_MAX` is looked at (its lease is gone; it waits only to
/// remove its backstop record once the exec is over).
const LINGER_SLOW_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// Leases kept at once; beyond this, or beyond [`LINGER_PER_OWNER_MAX`] for one file owner, an
/// allow of a file root does not own is withdrawn (its owner's execs fail, nobody else's).
const LINGER_MAX_ENTRIES: usize = 4096;
/// Leases kept at once for the files of one owner: an owner whose execs keep failing after
/// our allow (each lingers `LINGER_MAX`) only withdraws allows of its own files.
const LINGER_PER_OWNER_MAX: usize = 64;

/// An answered exec whose file must stay free of writers until the exec holds the kernel's own
/// write lock on it.
#[derive(Debug)]
struct Lingering {
    /// A duplicate of the event fd: the lease lives until the last fd of its file closes.
    /// Dropped after `LINGER_MAX`.
    fd: Option<std::os::fd::OwnedFd>,
    /// The allow recorded in the backstop (process, inode), removed when this entry goes.
    noted: Option<(i32, u64)>,
    /// After `LINGER_MAX`, the next look (an entry kept for its backstop record is looked at
    /// every `LINGER_SLOW_POLL`).
    next_look: Option<std::time::Instant>,
    /// The process, to kill it if it is still inside that exec when the wait runs out.
    pidfd: Option<std::os::fd::OwnedFd>,
    /// Lockdown at the answer: an exec still not past its write lock after `LINGER_MAX` is
    /// killed before the lease goes.
    lockdown: bool,
    pid: i32,
    /// `/proc/PID/exe` before the answer (the program that called exec).
    exe_before: Option<(u64, u64)>,
    owner: u32,
    since: std::time::Instant,
}

#[derive(Debug, Default)]
struct LingerState {
    entries: Vec<Lingering>,
    per_owner: HashMap<u32, usize>,
    /// Entries the linger thread has taken out to look at (they still count).
    sweeping: usize,
}

/// Keeps the read lease of allowed execs of files root does not own until each exec is past
/// the kernel's `deny_write_access`. The kernel takes that lock just after the permission event
/// is answered; a writer who opened, wrote and closed the file before it would change what
/// runs. The lease makes such a writer wait; once `/proc/PID/exe` has changed, the exec holds
/// its write lock (taken before the new program is installed) for the life of the process.
#[derive(Debug)]
pub struct LeaseLinger {
    state: Mutex<LingerState>,
    /// Where allows are recorded for the exec's last check (see `Backstop::note_allow`).
    backstop: Option<Arc<crate::linux::backstop::Backstop>>,
    thread: OnceLock<std::thread::Thread>,
    /// Allows withdrawn because the linger table or an owner's share of it was full.
    pub overflows: AtomicU64,
    /// Processes killed because their exec was still not past the kernel's write lock when the
    /// wait ran out (Lockdown).
    pub kills: AtomicU64,
}

/// Whether a thread of `pid` is blocked inside `execve`/`execveat`: `/proc/PID/task/*/syscall`
/// names the syscall a blocked thread is in. A thread on or waiting for a CPU reads `running`,
/// which cannot be told from a program running its own code (a failed exec's caller going on):
/// that does not count, so a process kept off the CPU past the lease is caught only by the
/// backstop's record (see `LeaseLinger::hold`).
fn still_in_exec(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let Ok(text) = std::fs::read_to_string(t.path().join("syscall")) else {
            return false;
        };
        let nr = text
            .split(' ')
            .next()
            .and_then(|n| n.trim().parse::<i64>().ok());
        matches!(nr, Some(n) if n == libc::SYS_execve || n == libc::SYS_execveat)
    })
}

/// `AT_EXECVE_CHECK` (Linux 6.14): execveat checks the file as an exec would and runs nothing.
const AT_EXECVE_CHECK: u64 = 0x1_0000;

/// Whether `pid`, held in its exec, is in an `execveat(..., AT_EXECVE_CHECK)`: a check, not an
/// execution (from `/proc/PID/syscall`: the number, then the arguments in hex).
pub(super) fn is_execve_check(pid: i32) -> bool {
    // fanotify names the process, not the thread: with more than one thread the one read here
    // may not be the one exec'ing (another can be in a check of its own meanwhile).
    let single = std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|d| d.count() == 1);
    if !single {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = text.split(' ');
    let nr = fields.next().and_then(|n| n.trim().parse::<i64>().ok());
    if nr != Some(libc::SYS_execveat) {
        return false;
    }
    fields
        .nth(4)
        .and_then(|f| u64::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & AT_EXECVE_CHECK != 0)
}

fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a new fd owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_kill(pidfd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pidfd; a NULL siginfo sends a plain SIGKILL.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

pub(super) fn exe_of(pid: i32) -> Option<(u64, u64)> {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl LeaseLinger {
    /// Starts the thread; it ends when the last reference is dropped. With a backstop, each
    /// held allow is also recorded there for the exec's last check.
    pub fn spawn(
        backstop: Option<Arc<crate::linux::backstop::Backstop>>,
    ) -> std::io::Result<Arc<Self>> {
        let linger = Arc::new(Self {
            backstop,
            state: Mutex::new(LingerState {
                entries: Vec::with_capacity(LINGER_MAX_ENTRIES),
                per_owner: HashMap::new(),
                sweeping: 0,
            }),
            thread: OnceLock::new(),
            overflows: AtomicU64::new(0),
            kills: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&linger);
        let handle = std::thread::Builder::new()
            .name("santad-linger".into())
            .spawn(move || {
                let mut work = Vec::with_capacity(LINGER_MAX_ENTRIES);
                let mut finished = Vec::with_capacity(LINGER_MAX_ENTRIES);
                while let Some(l) = weak.upgrade() {
                    let waiting = l.sweep(&mut work, &mut finished);
                    drop(l);
                    if !waiting {
                        // Until something is held (unparked by `hold`), then one tick more:
                        // a look right away would find the exec not yet past its write lock.
                        std::thread::park_timeout(std::time::Duration::from_millis(100));
                    }
                    std::thread::sleep(LINGER_POLL);
                }
            })?;
        let _ = linger.thread.set(handle.thread().clone());
        Ok(linger)
    }

    /// Drops the leases whose exec is past the write lock, whose process is gone, or that
    /// waited `LINGER_MAX`; true if some still wait.
    fn sweep(&self, work: &mut Vec<Lingering>, finished: &mut Vec<u32>) -> bool {
        // The stats, kills and closes happen outside the lock: a worker answering an exec
        // (`hold`) or a status request (`len`) never waits for them.
        {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut st.entries, work);
            st.sweeping = work.len();
        }
        finished.clear();
        let kills = &self.kills;
        let backstop = self.backstop.as_deref();
        let now_t = std::time::Instant::now();
        work.retain_mut(|e| {
            if e.next_look.is_some_and(|t| now_t < t) {
                return true;
            }
            let now = exe_of(e.pid);
            let expired = e.since.elapsed() >= LINGER_MAX;
            // Over: the process is gone, its program changed, or (with the backstop) the exec's
            // last check took the record (which also covers a program exec'ing itself).
            let over = now.is_none()
                || now != e.exe_before
                || matches!((backstop, e.noted), (Some(b), Some((pid, ino))) if !b.allow_pending(pid, ino));
            if over {
                if let (Some(b), Some((pid, ino))) = (backstop, e.noted) {
                    b.forget_allow(pid, ino);
                }
                finished.push(e.owner);
                return false;
            }
            if !expired {
                return true;
            }
            if e.noted.is_some() {
                // The lease goes; the backstop's record stays until the exec is over, and a
                // file changed meanwhile is caught at the exec's last check. Looked at seldom.
                e.fd = None;
                e.next_look = Some(now_t + LINGER_SLOW_POLL);
                return true;
            }
            if e.lockdown && still_in_exec(e.pid) {
                // Still not past its write lock (kept off the CPU on purpose?): once the lease
                // goes a writer could change what it runs. A pending SIGKILL means the new image
                // never runs an instruction.
                if let Some(pidfd) = &e.pidfd
                    && pidfd_kill(pidfd.as_fd())
                {
                    bump(kills);
                    log::warn!(
                        "killed pid {}: its exec was not past the kernel's write lock {} ms after \
                         the answer",
                        e.pid,
                        LINGER_MAX.as_millis()
                    );
                }
            }
            finished.push(e.owner);
            false
        });
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let LingerState {
            entries,
            per_owner,
            sweeping,
        } = &mut *st;
        for owner in finished.iter() {
            if let Some(n) = per_owner.get_mut(owner) {
                *n -= 1;
                if *n == 0 {
                    per_owner.remove(owner);
                }
            }
        }
        entries.append(work);
        *sweeping = 0;
        !entries.is_empty()
    }

    /// Keeps `event`'s lease until its exec is past the kernel's write lock; false (counted)
    /// if the table or the owner's share of it is full.
    pub(super) fn hold(
        &self,
        event: &ExecEvent,
        exe_before: Option<(u64, u64)>,
        lockdown: bool,
    ) -> bool {
        let Ok(fd) = event.file.as_fd().try_clone_to_owned() else {
            bump(&self.overflows);
            return false;
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let owner = event.facts.uid;
        let mine = st.per_owner.get(&owner).copied().unwrap_or(0);
        if st.entries.len() + st.sweeping >= LINGER_MAX_ENTRIES || mine >= LINGER_PER_OWNER_MAX {
            bump(&self.overflows);
            return false;
        }
        // The exec's last check (the backstop) compares the file with the stamp decided on:
        // a change in a window the lease cannot cover (a process kept off the CPU past it) is
        // caught there. No room for the record: the allow does not stand.
        let noted = match &self.backstop {
            Some(b) => {
                let stamp = event.decided_stamp();
                if b.note_allow(event.pid, event.key.ino, stamp.ctime_ns, stamp.size_bytes)
                    .is_err()
                {
                    bump(&self.overflows);
                    return false;
                }
                Some((event.pid, event.key.ino))
            }
            None => None,
        };
        st.entries.push(Lingering {
            fd: Some(fd),
            noted,
            next_look: None,
            pidfd: if lockdown {
                pidfd_open(event.pid)
            } else {
                None
            },
            lockdown,
            pid: event.pid,
            exe_before,
            owner,
            since: std::time::Instant::now(),
        });
        *st.per_owner.entry(owner).or_insert(0) += 1;
        drop(st);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
        true
    }

    /// Leases kept right now.
    pub fn len(&self) -> usize {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.entries.len() + st.sweeping
    }

    /// Whether no lease is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
