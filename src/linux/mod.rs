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

use crate::blockmsg::{BlockMessenger, BlockNotice};
use crate::eventlog::{self, EventLog, RecentAllows, Record, Text};
use crate::identity::{Subject, Verdict, WriteHold};
use fanotify::{EventBuffer, Fanotify, WakeFd};
use procinfo::NameCache;
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

pub mod backstop;
pub mod compilers;
pub mod coverage;
pub mod fanotify;
mod handle;
mod linger;
pub mod mountinfo;
pub mod procinfo;
mod responder;
mod source;

pub use crate::bundles::BundleTask;
pub use linger::LeaseLinger;
pub use responder::FanotifyResponder;
pub use source::FanotifySource;

/// How long a worker sleeps in `poll(2)` before re-checking: a safety net only (the kernel and
/// the wake fd wake it).
const WAIT_TIMEOUT_MS: i32 = 1_000;
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

/// The mount ids of santad's own mount table (set by [`crate::linux::coverage`]); `None` until then.
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

/// Superblocks (`major:minor`) whose filesystem gives multigrain ctimes (see
/// [`multigrain_type`]); `None` until the mount table is read.
static FINE_GRAINED: arc_swap::ArcSwapOption<Vec<(u32, u32)>> =
    arc_swap::ArcSwapOption::const_empty();

/// Replaces the set of superblocks with multigrain ctimes.
pub fn set_fine_grained(mut devs: Vec<(u32, u32)>) {
    devs.sort_unstable();
    devs.dedup();
    FINE_GRAINED.store(Some(Arc::new(devs)));
}

/// Whether this kernel (6.13 or later) gives a filesystem of this `mountinfo` type multigrain
/// timestamps: once a ctime has been read, the next change stamps a fine-grained, later ctime,
/// so a stamp santad took always moves on the next write. Linux 6.13 turned them on for ext4,
/// XFS, Btrfs and tmpfs (not ext2/ext3 mounted by their own type, which ext4 serves without
/// them: checked on 6.18, a rewrite after a stat kept the ctime on ext2 and never on ext4 or
/// tmpfs).
pub fn multigrain_type(fs_type: &str) -> bool {
    static KERNEL: OnceLock<bool> = OnceLock::new();
    let new_enough = *KERNEL.get_or_init(|| {
        let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 13)
    });
    new_enough && matches!(fs_type, "ext4" | "xfs" | "btrfs" | "tmpfs")
}

/// Whether the filesystem with `st_dev` `dev` has multigrain ctimes.
fn fine_grained_dev(dev: u64) -> bool {
    let dev = (libc::major(dev), libc::minor(dev));
    FINE_GRAINED
        .load()
        .as_deref()
        .is_some_and(|d| d.binary_search(&dev).is_ok())
}

/// The path of `file` in santad's own mount namespace, found through a file handle opened on
/// one of santad's mounts of the same superblock (for a file exec'd through a mount only
/// another namespace has, whose own path is that namespace's choice).
fn own_path_into(file: &File, out: &mut Text<{ eventlog::PATH_BYTES_MAX }>) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let Some(dir) = own_mount_dir(meta.dev()) else {
        return false;
    };
    let Ok(fd) = handle::FileHandle::of(file).and_then(|h| h.open(&dir, libc::O_PATH)) else {
        return false;
    };
    procinfo::fd_path_into(fd.as_fd(), out).is_ok()
}

/// A directory on one of santad's own mounts of the filesystem with device `dev` (`st_dev`),
/// to resolve file handles through.
fn own_mount_dir(dev: u64) -> Option<File> {
    let dev = (libc::major(dev), libc::minor(dev));
    let point = OWN_SUPERBLOCKS
        .load()
        .as_deref()
        .and_then(|sbs| sbs.iter().find(|(d, _)| *d == dev).map(|(_, p)| p.clone()))?;
    handle::open_mount_dir(&point).ok()
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
    /// `FAN_OPEN_EXEC` of an exec that neither asked us (no permission event before it) nor had
    /// a kernel-cache mark: the kernel ran it without a decision. Evaluated after the fact,
    /// logged, and killed when the decision is a deny (see `FanotifyResponder::respond`).
    Unasked,
    /// `FAN_CLOSE_WRITE` of a file that may be executed next (an exec bit, or a compiler wrote
    /// it): decided before anyone runs it, on the engine's prefetch lane. Nobody waits for it.
    Prefetch,
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
    /// A prefetch of a file a compiler wrote (`pid` is the compiler's).
    compiler_output: bool,
    /// For such a prefetch: marks its file pending until the rule is made (when the event
    /// drops, after its evaluation); taken back by the source if the lane does not evaluate it.
    _pending: Option<compilers::PendingCell>,
    /// The pending compiler outputs, for an exec that the rules would deny to wait on.
    outputs: Option<Arc<compilers::PendingOutputs>>,
    /// The number of the group read that brought it (see `compilers`).
    read: u64,
}

impl ExecEvent {
    /// An event as read from the group: nothing leased, re-stamped or looked at yet, no
    /// compiler output, no pending outputs to wait for.
    fn read(file: File, pid: i32, kind: Kind, facts: FileFacts, read: u64) -> Self {
        Self {
            file,
            pid,
            kind,
            key: facts.key,
            facts,
            leased: std::sync::atomic::AtomicBool::new(false),
            restamped_ctime_ns: std::sync::atomic::AtomicI64::new(i64::MIN),
            restamped_size: AtomicU64::new(0),
            path_trust: std::sync::atomic::AtomicU8::new(0),
            compiler_output: false,
            _pending: None,
            outputs: None,
            read,
        }
    }

    /// The process that executes.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Permission or notification.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// This exec notification as an exec the kernel ran without asking, to be decided now.
    pub(crate) fn into_unasked(mut self) -> Self {
        self.kind = Kind::Unasked;
        self
    }
}

/// Longest an exec the rules would deny waits for a transitive rule being made for its file
/// (hashing a compiler's output and publishing the rule takes far less; the deadline is 5 s).
const TRANSITIVE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a prefetch has no execution facts for CEL.
const NOT_EXECUTED: &str = "not executed yet: the file is being decided before its first exec";

impl Subject for ExecEvent {
    fn file(&self) -> &File {
        &self.file
    }

    /// The executing process's effective uid before the exec (a set-user-ID file's owner is
    /// not applied yet when the kernel asks), read from its /proc entry. The process is held in
    /// `execve` while santad decides, so the pid names it unless it was killed meanwhile (then
    /// no exec follows the answer).
    fn exec_euid(&self) -> Result<u32, &'static str> {
        if self.kind == Kind::Prefetch {
            return Err(NOT_EXECUTED);
        }
        procinfo::read_euid(self.pid).map_err(|_| "the process's /proc status could not be read")
    }

    /// Only for a process in santad's own mount namespace: elsewhere `/proc/PID/cwd` may name a
    /// directory of the process's own mounts (a user's namespace), which is not that path here.
    fn exec_cwd(&self) -> Result<String, &'static str> {
        if self.kind == Kind::Prefetch {
            return Err(NOT_EXECUTED);
        }
        if !procinfo::same_mount_namespace(self.pid) {
            return Err("the process runs in another mount namespace");
        }
        procinfo::read_cwd(self.pid).map_err(|_| "the process's /proc cwd could not be read")
    }

    fn transitive_writer(&self) -> Option<i32> {
        (self.kind == Kind::Prefetch && self.compiler_output).then_some(self.pid)
    }

    fn stamps_fine_grained(&self) -> bool {
        fine_grained_dev(self.key.dev)
    }

    fn wait_transitive(&self) -> bool {
        match (&self.outputs, self.kind) {
            (Some(outputs), Kind::Permission | Kind::Unasked) => {
                outputs.wait(self.key, TRANSITIVE_WAIT_MAX)
            }
            _ => false,
        }
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
                size_bytes: self.restamped_size.load(Ordering::Acquire),
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

/// Counters of the Linux side, for status and tests; serialized as the `fanotify.*` metrics.
#[derive(Debug, Default, serde::Serialize)]
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
    /// Kernel allow-cache marks a flush could not reach again (file deleted, filesystem gone):
    /// their execs are decided after the fact.
    pub ignore_marks_unreachable: AtomicU64,
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
    /// Exec notifications with no permission event before them and no kernel-cache mark: execs
    /// the kernel ran without asking, evaluated after the fact ([`Kind::Unasked`]).
    pub unasked_execs: AtomicU64,
    /// Of those, processes killed because the decision was a deny.
    pub unasked_kills: AtomicU64,
    /// Malformed records in an fanotify read buffer (their permission events were answered).
    pub malformed_records: AtomicU64,
    /// Denied paths not handed to the bundle task because its queue was full.
    pub bundle_drops: AtomicU64,
    /// Written executables handed to the prefetch lane (decided before their first exec).
    pub prefetch_offered: AtomicU64,
    /// Written executables not prefetched: larger than `PrefetchFileBytesMax`.
    pub prefetch_skipped_large: AtomicU64,
    /// Written executables not prefetched: over `PrefetchBytesPerSecond`.
    pub prefetch_skipped_budget: AtomicU64,
    /// Compiler outputs the lane had no room for: no transitive rule for them (logged).
    pub compiler_outputs_dropped: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A kernel allow-cache mark and the decision that placed it.
#[derive(Debug, Clone)]
struct Mark {
    stamp: FileStamp,
    verdict: Arc<Verdict>,
    /// The way back to the inode at a flush, to take the ignore bits off.
    handle: handle::FileHandle,
}

/// What the source and the responder share.
#[derive(Debug)]
pub struct Linux {
    /// The fanotify group.
    pub fan: Fanotify,
    recent: RecentAllows,
    /// Marks placed since the last flush, by file.
    marks: Mutex<HashMap<FileKey, Mark>>,
    /// The marks the last flush took off: an exec the kernel let through just before may be
    /// read after it, and is logged with the decision it ran under (not as one never asked).
    retired: Mutex<HashMap<FileKey, Mark>>,
    /// The decision cache's epoch, once the engine runs (no marks are placed before).
    epoch: OnceLock<Epoch>,
    /// The dynamic loaders' inodes ([`crate::linux::coverage::find_loaders`]).
    loaders: arc_swap::ArcSwap<Vec<FileKey>>,
    /// The compiler processes (transitive rules).
    pub compilers: Arc<compilers::Compilers>,
    /// Compiler outputs whose transitive rule is being made.
    pub pending_outputs: Arc<compilers::PendingOutputs>,
    /// Where transitive rules are made, once the rules database is served.
    pub transitive: crate::transitive::SinkSlot,
    /// What is prefetched, and the byte budget.
    prefetch: Mutex<PrefetchBudget>,
    /// Counters.
    pub counters: LinuxCounters,
}

/// Which written files are decided before their first exec, and how many bytes a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefetchSettings {
    /// `PrefetchNewExecutables`: files with an exec bit (compiler outputs always are, for their
    /// transitive rules).
    pub enabled: bool,
    /// `PrefetchFileBytesMax`: larger files wait for their exec.
    pub file_bytes_max: u64,
    /// `PrefetchBytesPerSecond`: the byte budget (a token bucket holding one second's worth).
    pub bytes_per_second: u64,
}

#[derive(Debug, Default)]
struct PrefetchBudget {
    settings: PrefetchSettings,
    tokens: u64,
    refilled_ns: u64,
}

impl PrefetchBudget {
    /// Takes `bytes` from the bucket if it holds them.
    fn take(&mut self, bytes: u64, now_ns: u64) -> bool {
        let rate = self.settings.bytes_per_second;
        let elapsed = now_ns.saturating_sub(self.refilled_ns);
        let refill = (u128::from(rate) * u128::from(elapsed) / 1_000_000_000) as u64;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(rate);
            self.refilled_ns = now_ns;
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

/// Why a written file was not prefetched, or that it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrefetchVerdict {
    /// Hand it to the engine's lane.
    Go,
    /// Not a candidate (no exec bit, not regular, empty, or prefetching is off): not counted.
    NotCandidate,
    /// Larger than `PrefetchFileBytesMax`.
    Large,
    /// Over the byte budget.
    Budget,
}

impl Linux {
    /// Wraps a group whose marks are already placed.
    pub fn new(fan: Fanotify) -> Arc<Self> {
        Arc::new(Self {
            fan,
            recent: RecentAllows::new(),
            marks: Mutex::new(HashMap::new()),
            retired: Mutex::new(HashMap::new()),
            epoch: OnceLock::new(),
            loaders: arc_swap::ArcSwap::from_pointee(Vec::new()),
            compilers: compilers::Compilers::new(),
            pending_outputs: Default::default(),
            transitive: Default::default(),
            prefetch: Mutex::new(PrefetchBudget::default()),
            counters: LinuxCounters::default(),
        })
    }

    /// Sets what is prefetched (start, SIGHUP).
    pub fn set_prefetch(&self, settings: PrefetchSettings) {
        let mut b = self.prefetch.lock().unwrap_or_else(PoisonError::into_inner);
        if b.settings != settings {
            b.settings = settings;
            b.tokens = settings.bytes_per_second;
            b.refilled_ns = compilers::monotonic_ns();
        }
    }

    /// Whether a file closed after writing goes to the prefetch lane. A compiler's output
    /// always does (its transitive rule is made there); anything else only with an exec bit,
    /// within the size bound and the byte budget.
    fn prefetch_verdict(&self, facts: &FileFacts, compiler_output: bool) -> PrefetchVerdict {
        if facts.mode & libc::S_IFMT != libc::S_IFREG || facts.stamp.size_bytes == 0 {
            return PrefetchVerdict::NotCandidate;
        }
        if compiler_output {
            return PrefetchVerdict::Go;
        }
        if facts.mode & 0o111 == 0 {
            return PrefetchVerdict::NotCandidate;
        }
        let mut b = self.prefetch.lock().unwrap_or_else(PoisonError::into_inner);
        if !b.settings.enabled {
            return PrefetchVerdict::NotCandidate;
        }
        if facts.stamp.size_bytes > b.settings.file_bytes_max {
            return PrefetchVerdict::Large;
        }
        if !b.take(facts.stamp.size_bytes, compilers::monotonic_ns()) {
            return PrefetchVerdict::Budget;
        }
        PrefetchVerdict::Go
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
    ///
    /// Mark by mark, never with `FAN_MARK_FLUSH`: the kernel lets a permission event pass
    /// unasked when one of the group's marks for the file is destroyed while the event is being
    /// queued (`fsnotify_prepare_user_wait` fails on a detached mark and `fanotify_handle_event`
    /// allows: "we race with mark deletion. Just let the operation pass"), and an exec waiting
    /// for our answer holds that window open for every other exec of the file. Found by
    /// `flush_racing_execs_never_leaves_a_stale_allow`; reproduced outside santad. So inode
    /// marks are never destroyed: each carries a real mask ([`fanotify::INODE_MARK_MASK`]) and
    /// a flush only takes the ignore bits off, through the handle kept with the mark.
    ///
    /// A mark whose file cannot be reached again (deleted, its filesystem gone from santad's
    /// mounts) keeps its ignore bits; its execs then arrive as notifications with no mark
    /// remembered and are decided after the fact ([`Kind::Unasked`]). Counted.
    pub fn flush_kernel_cache(&self) -> Result<(), fanotify::Error> {
        // Remembered until their ignore bits are off: an exec the kernel still answers
        // meanwhile is logged with the decision it applied, not taken for one never asked.
        let marked: Vec<(FileKey, Mark)> = self
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, m)| (*k, m.clone()))
            .collect();
        let mut dirs: HashMap<u64, Option<File>> = HashMap::new();
        let mut first_error = None;
        for (key, Mark { handle, .. }) in &marked {
            let dir = dirs
                .entry(key.dev)
                .or_insert_with(|| own_mount_dir(key.dev));
            let Some(file) = dir
                .as_ref()
                .and_then(|d| handle.open(d, libc::O_RDONLY | libc::O_NONBLOCK).ok())
                .map(File::from)
                .filter(|f| key_and_stamp(f).is_ok_and(|(k, _)| k == *key))
            else {
                bump(&self.counters.ignore_marks_unreachable);
                continue;
            };
            if let Err(e) = self
                .fan
                .unignore_inode(file.as_fd(), fanotify::MASK_OPEN_EXEC_PERM)
            {
                // ENOENT: the kernel dropped the mark itself (an evicted inode).
                if !matches!(&e, fanotify::Error::InodeMark { source, .. }
                    if source.raw_os_error() == Some(libc::ENOENT))
                {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Only the entries looked at: one placed since is for the new epoch (or withdraws
        // itself, seeing it).
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut retired = HashMap::with_capacity(marked.len());
        for (key, seen) in marked {
            if marks
                .get(&key)
                .is_some_and(|m| Arc::ptr_eq(&m.verdict, &seen.verdict))
            {
                marks.remove(&key);
                retired.insert(key, seen);
            }
        }
        drop(marks);
        *self.retired.lock().unwrap_or_else(PoisonError::into_inner) = retired;
        first_error.map_or(Ok(()), Err)
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
        // No handle, no way to take the mark off at a flush: no mark.
        let Ok(handle) = handle::FileHandle::of(&event.file) else {
            bump(&counters.kernel_cache_refusals);
            return;
        };
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
                    handle,
                },
            );
        }
        // A notification-only ignore from when the file was not root-only would hide the
        // kernel-cached execs from the log: taken off first (ENOENT when there is none).
        let _ = self
            .fan
            .unignore_inode(event.file.as_fd(), fanotify::MASK_OPEN_EXEC);
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
        let current = self
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        current.or_else(|| {
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned()
        })
    }
}

/// The default answer when no decision could be made in time: allow, unless `FailClosed` in
/// Lockdown (Santa's rule, [`rules::PolicyConfig::default_action`]).
pub fn default_response(policy: &rules::PolicyEngine) -> rules::Action {
    policy.policy().config().default_action()
}

/// The default answer for one exec. For a file only root can write (the system's own binaries)
/// it is [`default_response`]: santad being slow must not stop the host. For any other file in
/// Lockdown it is a deny, `FailClosed` or not: its owner chooses how long it takes to hash (and
/// how many of them wait), so a default allow would let a user time out their own unapproved
/// exec — a deadline reached behind their own slow files, a full queue, a full slot table.
pub fn default_for(policy: &rules::PolicyEngine, facts: &FileFacts) -> rules::Action {
    if !facts.mode_root_only() && policy.policy().config().mode == rules::ClientMode::Lockdown {
        rules::Action::Deny
    } else {
        default_response(policy)
    }
}

fn file_facts(file: &File) -> std::io::Result<FileFacts> {
    let m = file.metadata()?;
    Ok(FileFacts {
        key: FileKey::of_metadata(&m),
        stamp: FileStamp::of_metadata(&m),
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
    })
}

fn key_and_stamp(file: &File) -> std::io::Result<(FileKey, FileStamp)> {
    file_facts(file).map(|f| (f.key, f.stamp))
}
