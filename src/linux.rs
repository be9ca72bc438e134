//! Linux: fanotify as the engine's event source and responder.
//!
//! Every worker reads the fanotify group itself (`poll`: non-blocking read into its own
//! preallocated buffer) and submits onto its own queue, so the common path has no hand-off
//! between threads. Per event the source does one `fstat` (statx) for the cache key; nothing
//! else. The responder answers first (the exec waits on nothing else), then adds the kernel's
//! allow cache (an evictable inode ignore mark, dropped by the kernel when the file is written),
//! then writes the log record and, on a deny, hands the block message and the bundle hash to
//! their own threads.
//!
//! The kernel allow cache only holds what cannot change unseen. The kernel drops an ignore mark
//! on `write()`-style modification but not on a write through a shared mapping, so a mark is
//! placed only for files nobody but root can modify (owner root, no group or other write bit
//! unless the group is root, no POSIX ACL) on local filesystems whose contents change only
//! through this kernel ([`KERNEL_CACHE_FILESYSTEMS`]). The mark is placed before the answer,
//! then the stamp and the cache epoch are checked again: if either moved (the file was written,
//! or a flush raced us), the mark is withdrawn. Every other allow is answered from the
//! user-space cache, whose stamp (ctime, multigrain on 6.13+) moves on every write path; to be
//! sure no writer could change the file through a mapping it made beforehand, an evaluation
//! holds a read lease (granted only while nobody has the file open for writing; a new writer
//! waits until it is released), and a decision made without one is not cached.
//!
//! Santa logs every execution. Execs the kernel cache answered never reach us as permission
//! events; the `FAN_OPEN_EXEC` notification mark catches them. Such an exec is logged as the
//! allow the kernel applied, with the decision that placed the mark — never re-evaluated. If
//! the file no longer has the stamp it had then (root rewrote it through a mapping), that is an
//! alert: its own `explain=`, a counter, the mark removed and, in Lockdown, the process killed
//! through a pidfd. A notification for an exec that we have just allowed ourselves would log it
//! twice, so allows are remembered briefly by `(pid, file)` and such notifications are dropped.

use crate::blockmsg::{BlockMessenger, BlockNotice, BlockReason};
use crate::eventlog::{self, EventLog, Record, Text};
use crate::fanotify::{self, EventBuffer, Fanotify, Response, WakeFd};
use crate::identity::{Subject, Verdict, WriteHold};
use crate::procinfo::{self, NameCache};
use crate::report::{self, block_reason};
use crossbeam_queue::ArrayQueue;
use santa_hotpath::{
    Answer, AnsweredBy, DefaultReason, Epoch, Event, FileKey, FileStamp, Principal, Responder,
    Source, Submit,
};
use santa_rules as rules;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

/// How long a worker sleeps in `poll(2)` before re-checking: a safety net only (the kernel and
/// the wake fd wake it).
const WAIT_TIMEOUT_MS: i32 = 1_000;
/// Remembered allows for dropping duplicate notifications. A notification follows its
/// permission event within microseconds, so a small table suffices; a collision at worst logs a
/// line twice.
const RECENT_ALLOWS: usize = 4_096;
/// Denied paths waiting for the bundle task; beyond this they are dropped and counted.
const BUNDLE_QUEUE_DEPTH: usize = 64;
/// Kernel allow-cache marks remembered with the decision that placed them (so an exec the
/// kernel answered is logged with it, and a changed file is caught). Beyond this no more marks
/// are placed until the next flush: those files are answered from the user-space cache. 65,536
/// entries are ~5 MiB at most, far more distinct root-owned binaries than a host runs.
const KERNEL_MARKS_MAX: usize = 65_536;

/// Filesystems whose file contents change only through a write this kernel performs (so a
/// root-only file stays as root left it), by `statfs` magic: ext2/3/4, XFS, Btrfs, tmpfs,
/// ramfs, F2FS, and the read-only SquashFS and EROFS. Not FUSE, NFS, CIFS, 9p, virtiofs, Ceph
/// and the like (a server or another host can change the bytes), nor overlayfs (its lower
/// layers can be written behind it).
pub const KERNEL_CACHE_FILESYSTEMS: [(i64, &str); 8] = [
    (0xEF53, "ext2/ext3/ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58f6, "ramfs"),
    (0xF2F5_2010, "f2fs"),
    (0x7371_7368, "squashfs"),
    (0xE0F5_E1E2, "erofs"),
];

/// What the kernel cache needs to know about an executed file, from the one `statx` per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFacts {
    /// Cache key.
    pub key: FileKey,
    /// Stamp when the event was read.
    pub stamp: FileStamp,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_mode`.
    pub mode: u32,
}

impl FileFacts {
    /// Whether the mode bits leave writing to root alone (owner root; group write only for
    /// group root; no other write). ACLs and the filesystem are checked separately.
    pub fn mode_root_only(&self) -> bool {
        self.uid == 0 && self.mode & 0o002 == 0 && (self.mode & 0o020 == 0 || self.gid == 0)
    }
}

/// Whether `file` has a POSIX access ACL (which could grant someone else write).
fn has_acl(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: the name is a NUL-terminated literal; a NULL buffer of size 0 asks for the size.
    let rc = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc >= 0 {
        return true;
    }
    // ENODATA: no ACL; EOPNOTSUPP: the filesystem has none. Anything else: cannot tell.
    !matches!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP)
    )
}

/// The `statfs` magic of the filesystem holding `file`.
fn fs_magic(file: &File) -> Option<i64> {
    use std::os::fd::AsRawFd;
    // SAFETY: `st` is a zeroed statfs the kernel fills; the fd is valid for the call.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::fstatfs(file.as_raw_fd(), &mut st) == 0).then_some(st.f_type as i64)
    }
}

/// Whether nobody but root can change `file`'s contents: then the kernel may cache an allow.
pub fn only_root_can_modify(file: &File, facts: &FileFacts) -> bool {
    facts.mode_root_only()
        && fs_magic(file).is_some_and(|m| KERNEL_CACHE_FILESYSTEMS.iter().any(|(k, _)| *k == m))
        && !has_acl(file)
}

/// Takes a read lease on `file` (santad opened it read-only): granted only if nobody has the
/// file open for writing; while held, an open for writing or a truncate waits for us (the
/// kernel breaks the lease by signalling us, SIGIO, ignored); it ends when the fd closes.
fn take_read_lease(file: &File) -> Lease {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a valid fd with integer arguments.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) } == 0 {
        return Lease::Held;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EBUSY) => Lease::Writers,
        // EINVAL: the filesystem has no leases, or `fs.leases-enable = 0`; EACCES: no
        // CAP_LEASE; ENOLCK: out of lock memory.
        _ => Lease::Unsupported,
    }
}

/// Whether this host gives read leases (`fs.leases-enable`, CAP_LEASE), tried on santad's own
/// binary. Without them, allows of files root does not own cannot hold writers off until the
/// exec has its write lock: santad says so at start.
pub fn leases_available() -> bool {
    let Ok(file) = File::open("/proc/self/exe") else {
        return false;
    };
    take_read_lease(&file) == Lease::Held
}

/// What a read lease attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    /// Held: nobody has the file open for writing, and a new writer waits for us.
    Held,
    /// Someone has the file open for writing.
    Writers,
    /// Leases cannot be had here: nothing is known about writers.
    Unsupported,
}

/// The mount ids of santad's own mount table (set by [`crate::coverage`]); `None` until then.
static OWN_MOUNTS: arc_swap::ArcSwapOption<Vec<u32>> = arc_swap::ArcSwapOption::const_empty();

/// For each superblock of santad's mount table, a mount point of it that shows it.
static OWN_SUPERBLOCKS: arc_swap::ArcSwapOption<Vec<((u32, u32), PathBuf)>> =
    arc_swap::ArcSwapOption::const_empty();

/// Replaces the set of santad's own mounts (ids from `/proc/self/mountinfo`) and, per
/// superblock (`major:minor`), a mount point of it.
pub fn set_own_mounts(mut ids: Vec<u32>, superblocks: Vec<((u32, u32), PathBuf)>) {
    ids.sort_unstable();
    OWN_MOUNTS.store(Some(Arc::new(ids)));
    OWN_SUPERBLOCKS.store(Some(Arc::new(superblocks)));
}

/// The path of `file` in santad's own mount namespace, found through a file handle opened on
/// one of santad's mounts of the same superblock (for a file exec'd through a mount only
/// another namespace has, whose own path is that namespace's choice).
fn own_path_into(file: &File, out: &mut Text<{ eventlog::PATH_BYTES_MAX }>) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let Some(point) = OWN_SUPERBLOCKS
        .load()
        .as_deref()
        .and_then(|sbs| sbs.iter().find(|(d, _)| *d == dev).map(|(_, p)| p.clone()))
    else {
        return false;
    };
    let Ok(point_c) = std::ffi::CString::new(point.as_os_str().as_bytes()) else {
        return false;
    };
    // struct file_handle: handle_bytes, handle_type, then up to MAX_HANDLE_SZ (128) bytes.
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; 128],
    }
    let mut handle = Handle {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: a valid fd with AT_EMPTY_PATH and an empty path; `handle` has room for 128 bytes
    // as its `bytes` says; `mount_id` is writable.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            file.as_raw_fd(),
            c"".as_ptr(),
            (&raw mut handle).cast::<libc::c_void>(),
            &raw mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return false;
    }
    // SAFETY: a NUL-terminated path; a directory opened for reading (open_by_handle_at
    // refuses an O_PATH mount fd).
    let dir = unsafe {
        libc::open(
            point_c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return false;
    }
    // SAFETY: `dir` was just opened and is owned by nobody else.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    // SAFETY: a valid directory fd and the handle the kernel just filled.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            dir.as_raw_fd(),
            (&raw mut handle).cast::<libc::c_void>(),
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel returned a new fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    procinfo::fd_path_into(fd.as_fd(), out).is_ok()
}

/// The id of the mount `file` was opened through (`statx` `STATX_MNT_ID`).
fn mount_id_of(file: &File) -> Option<u32> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero statx is a valid value for the kernel to overwrite.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd, an empty NUL-terminated path with AT_EMPTY_PATH, a writable statx.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id as u32)
}

/// The id of the mount `path` is on (`statx` `STATX_MNT_ID`).
pub fn mount_id_of_path(path: &std::path::Path) -> Option<u32> {
    File::open(path).ok().as_ref().and_then(mount_id_of)
}

/// What the kernel asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `FAN_OPEN_EXEC_PERM`: the exec waits for our answer.
    Permission,
    /// `FAN_OPEN_EXEC`: an exec the kernel cache let through; only logged.
    Notification,
}

/// One exec event: the payload the engine carries. Dropping it closes the event fd.
#[derive(Debug)]
pub struct ExecEvent {
    file: File,
    pid: i32,
    kind: Kind,
    key: FileKey,
    facts: FileFacts,
    /// This event's fd holds a read lease: no writer can open the file until the fd closes,
    /// after the answer.
    leased: std::sync::atomic::AtomicBool,
    /// The stamp the decision was made on, when the event was re-stamped after waiting on an
    /// evaluation of a file that changed (ctime, size); `i64::MIN` until then.
    restamped_ctime_ns: std::sync::atomic::AtomicI64,
    restamped_size: AtomicU64,
    /// 0: not looked at; 1: the file's mount is in santad's own mount table; 2: it is not.
    path_trust: std::sync::atomic::AtomicU8,
}

impl ExecEvent {
    /// The process that executes.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Permission or notification.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl Subject for ExecEvent {
    fn file(&self) -> &File {
        &self.file
    }

    fn path_into(&self, out: &mut Text<{ eventlog::PATH_BYTES_MAX }>) {
        if procinfo::fd_path_into(self.file.as_fd(), out).is_err() {
            out.clear();
        }
    }

    fn path_trusted(&self) -> bool {
        match self.path_trust.load(Ordering::Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        let trusted = match OWN_MOUNTS.load().as_deref() {
            None => true,
            // A mount made in santad's namespace a moment ago and not yet read counts as
            // another namespace's until the follower reads it: path rules wait for it.
            Some(own) => mount_id_of(&self.file).is_some_and(|id| own.binary_search(&id).is_ok()),
        };
        self.path_trust
            .store(if trusted { 1 } else { 2 }, Ordering::Relaxed);
        trusted
    }

    fn hold_writers(&self) -> WriteHold {
        let lease = self.lease();
        if lease == Lease::Held {
            WriteHold::Held
        } else if only_root_can_modify(&self.file, &self.facts) {
            WriteHold::NotNeeded
        } else if lease == Lease::Writers {
            WriteHold::Failed
        } else {
            WriteHold::Unavailable
        }
    }
}

impl ExecEvent {
    /// Takes (once) a read lease on the event's fd, kept until the fd closes.
    fn lease(&self) -> Lease {
        if self.leased.load(Ordering::Acquire) {
            return Lease::Held;
        }
        let lease = take_read_lease(&self.file);
        self.leased.store(lease == Lease::Held, Ordering::Release);
        lease
    }

    /// The stamp the decision about this event was made on.
    fn decided_stamp(&self) -> FileStamp {
        let ctime_ns = self.restamped_ctime_ns.load(Ordering::Acquire);
        if ctime_ns == i64::MIN {
            self.facts.stamp
        } else {
            FileStamp {
                ctime_ns,
                size: self.restamped_size.load(Ordering::Acquire),
            }
        }
    }

    /// Why an allow for this event no longer holds at the moment of answering, if it does
    /// not. Files only root can modify always hold (root is trusted). For the rest, the answer
    /// is made under a read lease (nobody has the file open for writing now, and a new writer
    /// waits until the answer is given and the kernel's own write lock on the executable is
    /// taken), and the file must still have the stamp the decision was made on.
    fn allow_withdrawn(&self, root_only: bool, counters: &LinuxCounters) -> Option<&'static str> {
        if root_only {
            return None;
        }
        match self.lease() {
            Lease::Held => {}
            Lease::Writers => {
                return Some("allow withdrawn: file open for writing at the answer");
            }
            // No way to hold writers off on this filesystem: the stamp check below is all
            // there is (and the decision is not cached: see `hold_writers`).
            Lease::Unsupported => bump(&counters.leases_unsupported),
        }
        match key_and_stamp(&self.file) {
            Ok((key, stamp)) if key == self.key && stamp == self.decided_stamp() => None,
            _ => Some("allow withdrawn: file changed before the answer"),
        }
    }
}

/// Recent allows, to drop the notification that follows each of them.
#[derive(Debug)]
struct RecentAllows {
    tags: Box<[AtomicU64]>,
}

impl RecentAllows {
    fn new() -> Self {
        Self {
            tags: (0..RECENT_ALLOWS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(pid: i32, key: FileKey) -> u64 {
        let mut h = (pid as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= key.ino.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= key.dev.rotate_left(29);
        h | 1
    }

    fn slot(&self, pid: i32) -> &AtomicU64 {
        &self.tags[pid as u32 as usize % self.tags.len()]
    }

    fn record(&self, pid: i32, key: FileKey) {
        self.slot(pid).store(Self::tag(pid, key), Ordering::Release);
    }

    /// True (and forgotten) if this exec was just allowed by us.
    fn take(&self, pid: i32, key: FileKey) -> bool {
        let tag = Self::tag(pid, key);
        self.slot(pid)
            .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// Counters of the Linux side, for status and tests.
#[derive(Debug, Default)]
pub struct LinuxCounters {
    /// Permission events read.
    pub permission_events: AtomicU64,
    /// Loads of a dynamic loader answered as part of their exec.
    pub loader_loads: AtomicU64,
    /// Notifications read.
    pub notifications: AtomicU64,
    /// Notifications dropped as duplicates of our own allows.
    pub notifications_deduplicated: AtomicU64,
    /// Close-after-write events (cache invalidations).
    pub close_writes: AtomicU64,
    /// `FAN_Q_OVERFLOW`: the kernel dropped notifications.
    pub queue_overflows: AtomicU64,
    /// Reads or event walks that failed.
    pub read_errors: AtomicU64,
    /// Permission events whose file could not be stat'ed (answered with the default at once).
    pub stat_failures: AtomicU64,
    /// Responses the kernel refused.
    pub respond_errors: AtomicU64,
    /// Kernel allow-cache marks added.
    pub ignore_marks: AtomicU64,
    /// Notification-only ignore marks on files that always ask santad (not root-only): their
    /// execs are logged from the permission event, their notifications would be duplicates.
    pub notification_ignores: AtomicU64,
    /// Kernel allow-cache marks the kernel refused.
    pub ignore_mark_errors: AtomicU64,
    /// Kernel allow-cache marks withdrawn right after placing them: the file's stamp or the
    /// cache epoch moved meanwhile.
    pub ignore_marks_withdrawn: AtomicU64,
    /// Allows not given to the kernel cache because someone other than root could modify the
    /// file (or its filesystem is not local).
    pub kernel_cache_refusals: AtomicU64,
    /// Execs the kernel cache answered, logged with the decision that placed the mark.
    pub kernel_cached_execs: AtomicU64,
    /// Execs the kernel cache answered for a file that no longer matched that decision.
    pub kernel_cache_alerts: AtomicU64,
    /// Processes killed after such an alert (Lockdown).
    pub kernel_cache_kills: AtomicU64,
    /// Allows not given because, at the answer, the file was open for writing or no longer had
    /// the stamp decided on (the mode decided instead).
    pub allows_withdrawn: AtomicU64,
    /// Allows of files root does not own answered without a read lease, because the filesystem
    /// (or `fs.leases-enable = 0`) gives none: writers were not held off.
    pub leases_unsupported: AtomicU64,
    /// Notifications for which no mark was remembered (duplicates of logged answers).
    pub notifications_unmatched: AtomicU64,
    /// Malformed records in an fanotify read buffer (their permission events were answered).
    pub malformed_records: AtomicU64,
    /// Denied paths not handed to the bundle task because its queue was full.
    pub bundle_drops: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A kernel allow-cache mark and the decision that placed it.
#[derive(Debug, Clone)]
struct Mark {
    stamp: FileStamp,
    verdict: Arc<Verdict>,
}

/// What the source and the responder share.
#[derive(Debug)]
pub struct Linux {
    /// The fanotify group.
    pub fan: Fanotify,
    recent: RecentAllows,
    /// Marks placed since the last flush, by file.
    marks: Mutex<HashMap<FileKey, Mark>>,
    /// The decision cache's epoch, once the engine runs (no marks are placed before).
    epoch: OnceLock<Epoch>,
    /// The dynamic loaders' inodes ([`crate::coverage::find_loaders`]).
    loaders: arc_swap::ArcSwap<Vec<FileKey>>,
    /// Counters.
    pub counters: LinuxCounters,
}

impl Linux {
    /// Wraps a group whose marks are already placed.
    pub fn new(fan: Fanotify) -> Arc<Self> {
        Arc::new(Self {
            fan,
            recent: RecentAllows::new(),
            marks: Mutex::new(HashMap::new()),
            epoch: OnceLock::new(),
            loaders: arc_swap::ArcSwap::from_pointee(Vec::new()),
            counters: LinuxCounters::default(),
        })
    }

    /// Replaces the set of dynamic-loader inodes.
    pub fn set_loaders(&self, loaders: Vec<FileKey>) {
        self.loaders.store(Arc::new(loaders));
    }

    /// Whether `key` is one of the dynamic loaders.
    pub fn is_loader(&self, key: FileKey) -> bool {
        self.loaders.load().contains(&key)
    }

    /// Connects the kernel cache to the engine's epoch: from now on allows may be marked.
    pub fn set_epoch(&self, epoch: Epoch) {
        let _ = self.epoch.set(epoch);
    }

    /// Drops the kernel allow cache and what we remember of it. Call after the engine's flush
    /// (which bumps the epoch first: a mark placed meanwhile sees the new epoch and goes).
    pub fn flush_kernel_cache(&self) -> Result<(), fanotify::Error> {
        let result = self.fan.flush_ignores();
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        result
    }

    /// Marks `event`'s file as allowed in the kernel if it may be, then checks that the file
    /// and the epoch held still; withdraws the mark if not. Before the answer is written.
    fn place_mark(&self, event: &ExecEvent, verdict: &Arc<Verdict>, epoch: u64, root_only: bool) {
        let counters = &self.counters;
        let Some(current) = self.epoch.get() else {
            return;
        };
        // Root-only by its mode, and nobody (a writer from before a chmod) has it open for
        // writing now; a new writer waits for our answer.
        if !root_only || event.lease() != Lease::Held {
            bump(&counters.kernel_cache_refusals);
            return;
        }
        {
            let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
            if marks.len() >= KERNEL_MARKS_MAX && !marks.contains_key(&event.key) {
                bump(&counters.kernel_cache_refusals);
                return;
            }
            marks.insert(
                event.key,
                Mark {
                    stamp: event.facts.stamp,
                    verdict: verdict.clone(),
                },
            );
        }
        if self
            .fan
            .ignore_inode(event.file.as_fd(), fanotify::MASK_OPEN_EXEC_PERM)
            .is_err()
        {
            bump(&counters.ignore_mark_errors);
            self.forget_mark(event.key);
            return;
        }
        bump(&counters.ignore_marks);
        // The seqlock's read side: a flush bumps the epoch before it flushes the marks, so a
        // mark that raced it either was flushed or sees the new epoch here.
        let still = key_and_stamp(&event.file)
            .is_ok_and(|(k, st)| k == event.key && st == event.facts.stamp)
            && current.current() == epoch;
        if !still {
            bump(&counters.ignore_marks_withdrawn);
            self.withdraw_mark(event.file.as_fd(), event.key);
        }
    }

    fn forget_mark(&self, key: FileKey) {
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    fn withdraw_mark(&self, file: std::os::fd::BorrowedFd<'_>, key: FileKey) {
        let _ = self.fan.unignore_inode(file, fanotify::MASK_OPEN_EXEC_PERM);
        self.forget_mark(key);
    }

    fn mark_of(&self, key: FileKey) -> Option<Mark> {
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }
}

/// The default answer when no decision could be made in time: allow, unless `FailClosed` in
/// Lockdown (Santa's rule).
pub fn default_response(policy: &rules::PolicyEngine) -> Response {
    let p = policy.policy();
    let cfg = p.config();
    if cfg.fail_closed && cfg.mode == rules::ClientMode::Lockdown {
        Response::Deny
    } else {
        Response::Allow
    }
}

/// The default answer for one exec. For a file only root can write (the system's own binaries)
/// it is [`default_response`]: santad being slow must not stop the host. For any other file in
/// Lockdown it is a deny, `FailClosed` or not: its owner chooses how long it takes to hash (and
/// how many of them wait), so a default allow would let a user time out their own unapproved
/// exec — a deadline reached behind their own slow files, a full queue, a full slot table.
pub fn default_for(policy: &rules::PolicyEngine, facts: &FileFacts) -> Response {
    if !facts.mode_root_only() && policy.policy().config().mode == rules::ClientMode::Lockdown {
        Response::Deny
    } else {
        default_response(policy)
    }
}

fn file_facts(file: &File) -> std::io::Result<FileFacts> {
    let m = file.metadata()?;
    let key = FileKey {
        dev: m.dev(),
        ino: m.ino(),
    };
    let stamp = FileStamp {
        ctime_ns: m
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.ctime_nsec()),
        size: m.size(),
    };
    Ok(FileFacts {
        key,
        stamp,
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
    })
}

fn key_and_stamp(file: &File) -> std::io::Result<(FileKey, FileStamp)> {
    file_facts(file).map(|f| (f.key, f.stamp))
}

/// One worker's wait set: an epoll instance holding the group fd with `EPOLLEXCLUSIVE` (the
/// kernel wakes one waiting worker per event, not all of them — with every worker polling the
/// same fd, each event would cost a wake-up on every CPU) and the worker's own wake fd.
#[derive(Debug)]
struct WaitSet {
    epoll: std::os::fd::OwnedFd,
}

impl WaitSet {
    fn new(group: std::os::fd::BorrowedFd<'_>, wake: &WakeFd) -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by the kernel and is owned by nobody else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        for (fd, flags, token) in [
            (
                group.as_raw_fd(),
                libc::EPOLLIN as u32 | libc::EPOLLEXCLUSIVE as u32,
                0u64,
            ),
            (wake.as_raw_fd(), libc::EPOLLIN as u32, 1u64),
        ] {
            let mut ev = libc::epoll_event {
                events: flags,
                u64: token,
            };
            // SAFETY: both fds are open for the life of this call; `ev` is a valid epoll_event.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { epoll })
    }

    /// Waits for events or a wake-up, at most `timeout_ms`.
    fn wait(&self, timeout_ms: i32) {
        use std::os::fd::AsRawFd;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        // SAFETY: `events` is a writable array of 2 epoll_event, and 2 is passed as its length.
        let _ =
            unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 2, timeout_ms) };
    }
}

/// The fanotify source: each worker reads the group into its own buffer.
#[derive(Debug)]
pub struct FanotifySource {
    linux: Arc<Linux>,
    policy: Arc<rules::PolicyEngine>,
    responder: Arc<FanotifyResponder>,
    buffers: Box<[Mutex<EventBuffer>]>,
    wakes: Box<[WakeFd]>,
    waits: Box<[WaitSet]>,
    deadline_ns: u64,
}

impl FanotifySource {
    /// A source for `workers` workers, answering permission events within `deadline_ns`.
    pub fn new(
        linux: Arc<Linux>,
        policy: Arc<rules::PolicyEngine>,
        responder: Arc<FanotifyResponder>,
        workers: usize,
        buffer_bytes: usize,
        deadline_ns: u64,
    ) -> Result<Self, fanotify::Error> {
        let buffers = (0..workers)
            .map(|_| EventBuffer::new(buffer_bytes).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        let wakes: Box<[WakeFd]> = (0..workers)
            .map(|_| WakeFd::new())
            .collect::<Result<_, _>>()?;
        let waits = wakes
            .iter()
            .map(|w| WaitSet::new(linux.fan.as_fd(), w))
            .collect::<Result<_, _>>()
            .map_err(|source| fanotify::Error::Wait {
                call: "epoll",
                source,
            })?;
        Ok(Self {
            linux,
            policy,
            responder,
            buffers,
            wakes,
            waits,
            deadline_ns,
        })
    }
}

impl Source<ExecEvent> for FanotifySource {
    fn poll(&self, worker: usize, intake: &dyn Submit<ExecEvent>) -> usize {
        let counters = &self.linux.counters;
        let mut buffer = self.buffers[worker]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let default = default_response(&self.policy);
        let events = match self.linux.fan.read_answering(&mut buffer, default) {
            Ok(events) => events,
            Err(e) => {
                bump(&counters.read_errors);
                log::warn!("fanotify read: {e}");
                return 0;
            }
        };
        let mut submitted = 0;
        for event in events {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // The walk answered that record's permission event with the default, closed
                    // its fd, and goes on with the next one it can find.
                    bump(&counters.malformed_records);
                    log::warn!("fanotify event walk: {e}");
                    continue;
                }
            };
            if event.mask & fanotify::MASK_Q_OVERFLOW != 0 {
                bump(&counters.queue_overflows);
            }
            let Some(fd) = event.fd else { continue };
            let file = File::from(fd.into_owned());
            let permission = event.mask & fanotify::MASK_OPEN_EXEC_PERM != 0;
            let facts = match file_facts(&file) {
                Ok(facts) => facts,
                Err(_) => {
                    if permission {
                        bump(&counters.stat_failures);
                        if self
                            .linux
                            .fan
                            .respond(file.as_fd(), default, false)
                            .is_err()
                        {
                            bump(&counters.respond_errors);
                        }
                    }
                    continue;
                }
            };
            let key = facts.key;
            if event.mask & fanotify::MASK_CLOSE_WRITE != 0 {
                bump(&counters.close_writes);
                intake.invalidate(worker, key);
            }
            if self.linux.is_loader(key) && facts.mode_root_only() && facts.uid == 0 {
                // The kernel loading the ELF interpreter of an exec it is running: part of that
                // exec, which was decided (and logged) on its own binary. A direct run of the
                // loader (`ld.so ./tool`) opens it the same way; the backstop stops that one
                // (see crate::backstop). No log line, no rule needed: the loader is root's.
                if permission {
                    bump(&counters.loader_loads);
                    // The kernel cache takes its next loads (and their notifications) while
                    // nothing changes it: a write clears the mark, a flush drops it.
                    if only_root_can_modify(&file, &facts)
                        && self
                            .linux
                            .fan
                            .ignore_inode(
                                file.as_fd(),
                                fanotify::MASK_OPEN_EXEC_PERM | fanotify::MASK_OPEN_EXEC,
                            )
                            .is_err()
                    {
                        bump(&counters.ignore_mark_errors);
                    }
                    if self
                        .linux
                        .fan
                        .respond(file.as_fd(), Response::Allow, false)
                        .is_err()
                    {
                        bump(&counters.respond_errors);
                    }
                }
                continue;
            }
            let payload = |kind| ExecEvent {
                file,
                pid: event.pid,
                kind,
                key,
                facts,
                leased: std::sync::atomic::AtomicBool::new(false),
                restamped_ctime_ns: std::sync::atomic::AtomicI64::new(i64::MIN),
                restamped_size: AtomicU64::new(0),
                path_trust: std::sync::atomic::AtomicU8::new(0),
            };
            if permission {
                bump(&counters.permission_events);
                let deadline_ns = intake.now_ns().saturating_add(self.deadline_ns);
                intake.submit(
                    worker,
                    Event {
                        payload: payload(Kind::Permission),
                        key,
                        stamp: facts.stamp,
                        deadline_ns,
                    },
                );
                submitted += 1;
            } else if event.mask & fanotify::MASK_OPEN_EXEC != 0 {
                bump(&counters.notifications);
                if self.linux.recent.take(event.pid, key) {
                    bump(&counters.notifications_deduplicated);
                    continue;
                }
                // Nothing to decide: the kernel cache already let it run. Logged here, with
                // the decision that placed the mark.
                self.responder
                    .kernel_cached(worker, &payload(Kind::Notification));
            }
        }
        submitted
    }

    fn wait(&self, worker: usize) {
        self.waits[worker].wait(WAIT_TIMEOUT_MS);
        self.wakes[worker].drain();
    }

    fn wake(&self, worker: usize) {
        let _ = self.wakes[worker].wake();
    }

    fn restamp(&self, event: &ExecEvent) -> Option<FileStamp> {
        let (_, stamp) = key_and_stamp(&event.file).ok()?;
        event.restamped_size.store(stamp.size, Ordering::Release);
        event
            .restamped_ctime_ns
            .store(stamp.ctime_ns, Ordering::Release);
        Some(stamp)
    }

    /// The file's owner pays for hashing it; root's files (the system's own binaries, which no
    /// unprivileged user can grow or slow down) are not bounded.
    fn principal(&self, event: &ExecEvent) -> Option<Principal> {
        (event.facts.uid != 0).then_some(Principal {
            id: event.facts.uid,
            cost_bytes: event.facts.stamp.size,
        })
    }
}

/// Denied files whose bundle is hashed off the workers, for `action=BUNDLE` lines.
#[derive(Debug)]
pub struct BundleTask {
    queue: Arc<ArrayQueue<PathBuf>>,
    thread: std::thread::Thread,
}

impl BundleTask {
    /// Starts the task's thread; it logs to `log` and stops when `stop` is set.
    pub fn spawn(
        log: Arc<EventLog>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let queue: Arc<ArrayQueue<PathBuf>> = Arc::new(ArrayQueue::new(BUNDLE_QUEUE_DEPTH));
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("santad-bundles".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match q.pop() {
                        Some(path) => log_bundle(&log, &path),
                        None => std::thread::park_timeout(std::time::Duration::from_secs(1)),
                    }
                }
            })?;
        Ok((
            Self {
                queue,
                thread: handle.thread().clone(),
            },
            handle,
        ))
    }

    fn submit(&self, path: PathBuf) -> bool {
        let ok = self.queue.push(path).is_ok();
        self.thread.unpark();
        ok
    }
}

/// Logs one `action=BUNDLE` line per executable of the bundle holding `path`, if any.
fn log_bundle(log: &EventLog, path: &std::path::Path) {
    let Some(bundle) = santa_signing::bundle::find_ancestor_bundle(path) else {
        return;
    };
    let limits = santa_signing::bundle::BundleLimits::default();
    let Ok(hashed) = santa_signing::bundle::hash_bundle(&bundle.path, &limits, &|_| {}) else {
        return;
    };
    let Some(bundle_hash) = hashed.bundle_hash else {
        return;
    };
    for binary in &hashed.binaries {
        let Some(mut rec) = log.acquire() else { return };
        rec.action = eventlog::Action::Bundle;
        rec.time = SystemTime::now();
        rec.sha256 = Some(*binary.sha256.as_bytes());
        rec.bundle_hash = Some(*bundle_hash.as_bytes());
        rec.bundle_name
            .set(bundle.name.as_deref().unwrap_or("").as_bytes());
        rec.bundle_id.set(bundle.identifier.as_bytes());
        rec.bundle_path
            .set(bundle.path.as_os_str().as_encoded_bytes());
        rec.path.set(binary.path.as_os_str().as_encoded_bytes());
        rec.commit();
    }
}

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
    backstop: Option<Arc<crate::backstop::Backstop>>,
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
fn is_execve_check(pid: i32) -> bool {
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

fn exe_of(pid: i32) -> Option<(u64, u64)> {
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl LeaseLinger {
    /// Starts the thread; it ends when the last reference is dropped. With a backstop, each
    /// held allow is also recorded there for the exec's last check.
    pub fn spawn(backstop: Option<Arc<crate::backstop::Backstop>>) -> std::io::Result<Arc<Self>> {
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
    fn hold(&self, event: &ExecEvent, exe_before: Option<(u64, u64)>, lockdown: bool) -> bool {
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
                if b.note_allow(event.pid, event.key.ino, stamp.ctime_ns, stamp.size)
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

/// The fanotify responder.
#[derive(Debug)]
pub struct FanotifyResponder {
    /// Leases of answered execs kept until the exec holds its own write lock.
    pub linger: Arc<LeaseLinger>,
    linux: Arc<Linux>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    /// One name cache per answering thread (workers, then deadline thread, then submitters).
    names: Box<[Mutex<NameCache>]>,
    blocks: Option<BlockMessenger>,
    bundles: Option<BundleTask>,
    log_notifications: bool,
    /// Who Lockdown applies to (`None`: everyone).
    scope: Option<crate::coverage::Scope>,
}

impl FanotifyResponder {
    /// A responder for `workers` workers.
    #[allow(clippy::too_many_arguments)] // the wiring's own pieces, each stored once
    pub fn new(
        linux: Arc<Linux>,
        policy: Arc<rules::PolicyEngine>,
        log: Arc<EventLog>,
        workers: usize,
        blocks: Option<BlockMessenger>,
        bundles: Option<BundleTask>,
        log_notifications: bool,
        linger: Arc<LeaseLinger>,
        scope: Option<crate::coverage::Scope>,
    ) -> Self {
        Self {
            scope,
            linger,
            linux,
            policy,
            log,
            names: (0..workers + 2)
                .map(|_| Mutex::new(NameCache::new()))
                .collect(),
            blocks,
            bundles,
            log_notifications,
        }
    }

    fn names(&self, by: AnsweredBy) -> &Mutex<NameCache> {
        let n = self.names.len();
        let index = match by {
            AnsweredBy::Worker(w) => w.min(n - 3),
            AnsweredBy::Deadline => n - 2,
            AnsweredBy::Submitter => n - 1,
        };
        &self.names[index]
    }

    /// Takes a log record and fills the process half (pid, ppid, ids, names). Called for a
    /// permission event *before* answering: while the exec is held, `/proc/PID` is certain to
    /// exist; once answered, a short-lived process may be gone before we look.
    fn begin_record(&self, by: AnsweredBy, event: &ExecEvent) -> Option<eventlog::RecordSlot<'_>> {
        let mut rec = self.log.acquire()?;
        let mut names = self
            .names(by)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = procinfo::fill_process_fast(event.pid, &mut rec, &mut names);
        Some(rec)
    }

    /// Fills the decision half of a record and hands it to the logger.
    fn finish_record(
        &self,
        rec: &mut Record,
        event: &ExecEvent,
        response: Response,
        verdict: Option<&Verdict>,
        default: Option<DefaultReason>,
    ) {
        fill_record(rec, event, response, verdict, default, &self.policy);
        event.path_into(&mut rec.path);
        if !event.path_trusted() {
            // The path is the one the exec'ing process's own mounts give: its choice. Name the
            // file as santad's mounts show it, and say what it was exec'd as.
            let mut own = Text::<{ eventlog::PATH_BYTES_MAX }>::new();
            if !rec.explain.is_empty() {
                rec.explain.push(b"; ");
            }
            rec.explain.push(b"exec'd as ");
            rec.explain.push(rec.path.as_bytes());
            rec.explain
                .push(b" in another mount namespace (path rules not applied)");
            if own_path_into(&event.file, &mut own) {
                rec.path.set(own.as_bytes());
            }
        }
        if procinfo::exec_completed(event.pid, event.key.dev, event.key.ino) {
            let _ = procinfo::read_cmdline_into(event.pid, &mut rec.args);
        }
    }

    /// Hands Santa's block message to its thread. `rec` is the exec's filled log record: path,
    /// ppid and user name come from it rather than from /proc again.
    fn block_message(&self, event: &ExecEvent, verdict: Option<&Verdict>, rec: &Record) {
        let Some(blocks) = &self.blocks else { return };
        if verdict.is_some_and(|v| v.decision.silence.tty) {
            return;
        }
        // The tty is the one fact the record does not carry.
        let Ok(stat) = procinfo::read_stat(event.pid) else {
            return;
        };
        let Some(tty) = procinfo::tty_path(stat.tty_nr) else {
            return;
        };
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let parent_name = std::fs::read_to_string(format!("/proc/{}/comm", stat.ppid))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let username = (!rec.user.is_empty())
            .then(|| String::from_utf8_lossy(rec.user.as_bytes()).into_owned());
        let notice = BlockNotice {
            tty: tty.as_path().to_path_buf(),
            reason: Some(verdict.map_or(BlockReason::Unknown, |v| block_reason(v.decision.reason))),
            path: String::from_utf8_lossy(rec.path.as_bytes()).into_owned(),
            sha256: verdict.and_then(|v| v.sha256).map(|s| hex(&s)),
            team_id: verdict.and_then(|v| v.team_id.as_deref().map(str::to_string)),
            signing_id: verdict.and_then(|v| v.signing_id.as_deref().map(str::to_string)),
            cdhash: verdict.and_then(|v| v.cdhash).map(|c| hex(&c)),
            username,
            parent_name,
            ppid: stat.ppid,
            custom_message: verdict
                .and_then(|v| v.decision.custom.msg.as_deref().map(str::to_string)),
            custom_url: verdict.and_then(|v| v.decision.custom.url.as_deref().map(str::to_string)),
            ..BlockNotice::default()
        };
        let _ = blocks.notify(Box::new(notice));
    }
}

/// Fills the decision half of an EXEC record (the process half comes from /proc).
fn fill_record(
    rec: &mut Record,
    event: &ExecEvent,
    response: Response,
    verdict: Option<&Verdict>,
    default: Option<DefaultReason>,
    policy: &rules::PolicyEngine,
) {
    report::fill_decision(rec, response == Response::Allow, verdict, default, policy);
    rec.pid = event.pid;
}

impl FanotifyResponder {
    /// Logs an exec the kernel cache answered (a `FAN_OPEN_EXEC` notification with no
    /// permission event before it) as the allow the kernel applied, with the decision that
    /// placed the mark. If the file no longer has the stamp it had then, that is an alert: the
    /// mark goes and, in Lockdown, the process is killed.
    pub fn kernel_cached(&self, worker: usize, event: &ExecEvent) {
        let counters = &self.linux.counters;
        let Some(mark) = self.linux.mark_of(event.key) else {
            // Not ours to report: the permission path logged this exec already (a collision
            // in the recent-allows table, or an allow by default).
            bump(&counters.notifications_unmatched);
            return;
        };
        let record = self.begin_record(AnsweredBy::Worker(worker), event);
        let changed = mark.stamp != event.facts.stamp;
        let mut killed = false;
        if changed {
            bump(&counters.kernel_cache_alerts);
            self.linux.withdraw_mark(event.file.as_fd(), event.key);
            if self.policy.policy().config().mode == rules::ClientMode::Lockdown {
                killed = procinfo::kill_process(event.pid);
                if killed {
                    bump(&counters.kernel_cache_kills);
                }
            }
            log::warn!(
                "ALERT: the kernel cache let pid {} execute a file changed since it was allowed{}",
                event.pid,
                if killed { "; process killed" } else { "" }
            );
        } else {
            bump(&counters.kernel_cached_execs);
        }
        if let Some(mut rec) = record {
            self.finish_record(&mut rec, event, Response::Allow, Some(&mark.verdict), None);
            if changed {
                rec.explain
                    .set(b"ALERT: kernel cache allowed a file changed since its decision");
                if killed {
                    rec.explain.push(b"; process killed");
                }
            }
            rec.commit();
        }
    }
}

impl Responder<ExecEvent, Arc<Verdict>> for FanotifyResponder {
    fn respond(&self, by: AnsweredBy, event: &ExecEvent, answer: Answer<'_, Arc<Verdict>>) {
        let (verdict, cacheable, default, epoch) = match answer {
            Answer::Decided {
                decision,
                cacheable,
                epoch,
                ..
            } => (Some(decision), cacheable, None, epoch),
            Answer::Default(reason) => (None, false, Some(reason), 0),
        };
        let lockdown = self.policy.policy().config().mode == rules::ClientMode::Lockdown;
        // Lockdown's own denies (no rule, a default, a withdrawn allow) hold only for processes
        // in scope; outside it the answer is Monitor's. Looked up only when it matters.
        let mut in_scope_memo: Option<bool> = None;
        let mut in_scope = |pid: i32| {
            *in_scope_memo
                .get_or_insert_with(|| self.scope.as_ref().is_none_or(|s| s.contains(pid)))
        };
        let mut scoped_out = false;
        let mut response = match verdict {
            Some(v) if v.decision.action == rules::Action::Deny => {
                if lockdown
                    && v.decision.reason == rules::Reason::Unknown
                    && v.decision.mode == rules::ClientMode::Lockdown
                    && !in_scope(event.pid)
                {
                    scoped_out = true;
                    Response::Allow
                } else {
                    Response::Deny
                }
            }
            Some(_) => Response::Allow,
            None => match default_for(&self.policy, &event.facts) {
                Response::Deny if lockdown && !in_scope(event.pid) => {
                    scoped_out = true;
                    default_response(&self.policy)
                }
                r => r,
            },
        };
        // An allow holds only if the bytes decided on are the bytes that will run.
        let root_only = response == Response::Allow
            && verdict.is_some()
            && !scoped_out
            && only_root_can_modify(&event.file, &event.facts);
        let mut withdrawn = match response {
            Response::Allow if verdict.is_some() && !scoped_out => {
                event.allow_withdrawn(root_only, &self.linux.counters)
            }
            _ => None,
        };
        if response == Response::Allow
            && verdict.is_some()
            && !scoped_out
            && !root_only
            && withdrawn.is_none()
            && event.leased.load(Ordering::Acquire)
            && !self.linger.hold(
                event,
                exe_of(event.pid),
                self.policy.policy().config().mode == rules::ClientMode::Lockdown,
            )
        {
            withdrawn = Some("allow withdrawn: too many answered execs of this owner's files");
        }
        if withdrawn.is_some() {
            bump(&self.linux.counters.allows_withdrawn);
            // The mode decides, as for a file that changed while it was evaluated.
            if lockdown && in_scope(event.pid) {
                response = Response::Deny;
            }
        }
        let mut record = self.begin_record(by, event);
        if response == Response::Allow && self.log_notifications {
            // Before answering: the notification can only follow the answer.
            self.linux.recent.record(event.pid, event.key);
            if !root_only {
                // This file never gets the kernel allow cache, so each of its execs asks us
                // and is logged here: its exec notification would only be read and dropped
                // (~35 us of santad per exec). Ignore notifications for it (an evictable inode
                // mark on FAN_OPEN_EXEC alone, dropped by the kernel when the file is written).
                match self
                    .linux
                    .fan
                    .ignore_inode(event.file.as_fd(), fanotify::MASK_OPEN_EXEC)
                {
                    Ok(()) => bump(&self.linux.counters.notification_ignores),
                    Err(_) => bump(&self.linux.counters.ignore_mark_errors),
                }
            }
        }
        if response == Response::Allow
            && cacheable
            && !scoped_out
            && withdrawn.is_none()
            && let Some(v) = verdict
        {
            // Before the answer: placed, re-checked, withdrawn if the file or epoch moved.
            self.linux.place_mark(event, v, epoch, root_only);
        }
        // A deny of an execveat(AT_EXECVE_CHECK) refuses a check, not an execution: no block
        // message, and the line says so (read while the process is still held).
        let check = response == Response::Deny && is_execve_check(event.pid);
        if self
            .linux
            .fan
            .respond(event.file.as_fd(), response, false)
            .is_err()
        {
            bump(&self.linux.counters.respond_errors);
        }
        let verdict = verdict.map(|v| &**v);
        // Without a log record (ring full) a deny still gets its message and bundle lines: fill
        // a scratch record for it then.
        let mut scratch: Option<Box<Record>> = None;
        let rec: Option<&mut Record> = match record.as_deref_mut() {
            Some(rec) => Some(rec),
            None if response == Response::Deny => {
                Some(&mut **scratch.insert(Box::new(Record::new())))
            }
            None => None,
        };
        if let Some(rec) = rec {
            self.finish_record(rec, event, response, verdict, default);
            if let Some(why) = withdrawn {
                rec.explain.set(why.as_bytes());
            }
            if scoped_out {
                // Monitor's answer for a process outside LockdownScope.
                rec.mode = crate::config::ClientMode::Monitor;
                if rec.explain.is_empty() {
                    rec.explain.set(b"outside LockdownScope");
                } else {
                    rec.explain.push(b"; outside LockdownScope");
                }
            }
            if check {
                if !rec.explain.is_empty() {
                    rec.explain.push(b"; ");
                }
                rec.explain
                    .push(b"execveat AT_EXECVE_CHECK: a check, nothing was executed");
            } else if response == Response::Deny {
                self.block_message(event, verdict, rec);
                if let Some(bundles) = &self.bundles {
                    let path = PathBuf::from(std::ffi::OsStr::from_bytes(rec.path.as_bytes()));
                    if !bundles.submit(path) {
                        bump(&self.linux.counters.bundle_drops);
                    }
                }
            }
        }
        if let Some(rec) = record {
            rec.commit();
        }
    }

    /// `respond` panicked: write the default (if the answer already reached the kernel, the
    /// kernel refuses this second one, harmlessly).
    fn respond_failed(&self, _by: AnsweredBy, event: &ExecEvent) {
        if event.kind == Kind::Permission {
            let _ = self.linux.fan.respond(
                event.file.as_fd(),
                default_for(&self.policy, &event.facts),
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_allows_drop_exactly_the_matching_notification() {
        let r = RecentAllows::new();
        let key = FileKey { dev: 1, ino: 2 };
        r.record(100, key);
        assert!(!r.take(100, FileKey { dev: 1, ino: 3 }), "another file");
        assert!(!r.take(101, key), "another process");
        assert!(r.take(100, key));
        assert!(!r.take(100, key), "taken once");
    }
}
