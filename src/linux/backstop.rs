//! The exec backstop: a BPF program on the kernel's `sched_process_exec` tracepoint (BTF-typed,
//! `bpf/exec_backstop.bpf.c`) that covers what fanotify cannot see.
//!
//! fanotify holds execs of files on the superblocks and mounts santad marked. An exec of a file
//! anywhere else — a user-namespace mount, a memfd or another kernel-internal mount, a mount made
//! a moment ago and not marked yet — reaches the program with its superblock not in
//! [`Backstop::set_superblocks`]' set (or without a permission mark on it); a direct run of the
//! dynamic loader (`ld.so ./tool`, which maps `./tool` with no exec check at all) has a loader
//! inode from [`Backstop::set_loaders`] as its binary; an exec whose first instruction lies in a
//! file on an unwatched filesystem (`bpf_find_vma` at the new image's entry point) had its ELF
//! interpreter replaced — the kernel resolves `PT_INTERP` in the process's own mount namespace,
//! where a user can mount anything over `/lib64`. In Lockdown, for a process in the
//! enforcement scope, the program kills the process with SIGKILL: the tracepoint fires after the
//! exec's point of no return and before the new image runs a single instruction, so the program
//! never runs. Everywhere else it only reports. Either way santad logs an `EXEC` line with the
//! reason (`explain=backstop: ...`).
//!
//! Why a tracepoint and not a BPF LSM program on `bprm_check_security` (which could return
//! `-EPERM` instead of killing): kernels that refuse trampoline-attached programs could not run
//! an LSM backstop at all. This project's build machines refuse every `BPF_PROG_TYPE_LSM` and
//! `fentry` load with `EPERM` (a two-instruction program too) and have no kprobes; BTF
//! tracepoints load wherever BPF with BTF does, and a kill before the first instruction denies
//! the same executions. What it cannot see: the tracepoint has the exec's last binary, so a
//! script on an unwatched filesystem whose `#!` names an allowed interpreter runs — as the same
//! interpreter given the script as an argument would (`sh /dev/fd/3`), which no exec check
//! stops either.
//!
//! Toolchain: the program is C built by clang (`build.rs`) with CO-RE relocations; aya loads it in
//! pure Rust (no libbpf or libelf to build or link), resolving each field offset against the
//! running kernel's BTF.
//!
//! The program is attached at [`Backstop::load`] but answers nothing until [`Backstop::activate`]
//! (after fanotify's marks are in place), and goes with this value (santad's exit, or its death:
//! the kernel detaches a program whose last fd closed).

use crate::control::BackstopCounters;
use crate::eventlog::{self, EventLog};
use crate::linux::procinfo::NameCache;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The object `build.rs` compiled, aligned (the ELF parser reads its headers in place).
static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exec_backstop.bpf.o"));

/// As `SCOPE_CGROUPS_MAX` in the C program.
pub const SCOPE_CGROUPS_MAX: usize = 8;
/// Entries of the program's `loaders` map.
pub const LOADERS_MAX: usize = 64;
/// Entries of the program's `marked_sbs` map.
pub const SUPERBLOCKS_MAX: usize = 4096;
/// Entries of the program's `marked_mounts` map.
pub const MOUNTS_MAX: usize = 256;
/// Entries of each scope map.
pub const SCOPE_IDS_MAX: usize = 256;

/// Bytes of one ring-buffer event (`struct backstop_event`).
const EVENT_BYTES: usize = 64 + 256;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ScopeCgroup {
    id: u64,
    level: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct BackstopConfig {
    active: u32,
    lockdown: u32,
    scope_all: u32,
    cgroups: u32,
    cgroup: [ScopeCgroup; SCOPE_CGROUPS_MAX],
}

// SAFETY: plain `repr(C)` integers with no padding holes the program reads (pad is written).
unsafe impl aya::Pod for BackstopConfig {}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct LoaderKey {
    dev: u32,
    pad: u32,
    ino: u64,
}

// SAFETY: plain `repr(C)` integers; `pad` is always zero, so equal keys are equal bytes.
unsafe impl aya::Pod for LoaderKey {}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AllowedKey {
    tgid: u32,
    pad: u32,
    ino: u64,
}

// SAFETY: plain `repr(C)` integers; `pad` is always zero.
unsafe impl aya::Pod for AllowedKey {}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AllowedStamp {
    ctime_ns: i64,
    size: u64,
}

// SAFETY: plain `repr(C)` integers with no padding.
unsafe impl aya::Pod for AllowedStamp {}

/// Why the backstop could not be loaded.
#[derive(Debug)]
pub struct BackstopError(pub String);

impl std::fmt::Display for BackstopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackstopError {}

fn err(what: &str, e: impl std::fmt::Display) -> BackstopError {
    BackstopError(format!("{what}: {e}"))
}

/// Who Lockdown applies to, as the program checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramScope {
    /// Everyone (no `LockdownScope`).
    pub all: bool,
    /// Real uids in scope.
    pub uids: Vec<u32>,
    /// Real gids in scope.
    pub gids: Vec<u32>,
    /// cgroup v2 ids with their level (depth below the root), in scope with their descendants.
    pub cgroups: Vec<(u64, u32)>,
}

struct Maps {
    config: Array<MapData, BackstopConfig>,
    marked_sbs: HashMap<MapData, u32, u32>,
    marked_mounts: HashMap<MapData, i32, u32>,
    loaders: HashMap<MapData, LoaderKey, u32>,
    allowed: HashMap<MapData, AllowedKey, AllowedStamp>,
    stats: PerCpuArray<MapData, u64>,
    base: BackstopConfig,
}

/// The loaded backstop.
pub struct Backstop {
    maps: Mutex<Maps>,
    events: Mutex<Option<RingBuf<MapData>>>,
    lockdown: AtomicBool,
    /// Holds the program and its link: dropping it detaches the program.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for Backstop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backstop")
            .field("lockdown", &self.lockdown())
            .finish_non_exhaustive()
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, BackstopError>
where
    T: TryFrom<aya::maps::Map>,
    T::Error: std::fmt::Display,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| BackstopError(format!("the object has no map `{name}`")))?;
    T::try_from(map).map_err(|e| err(name, e))
}

/// The kernel's encoding of a device number (`MKDEV`: major << 20 | minor), as in `s_dev`.
pub fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// The kernel encoding of a `stat` device number.
pub fn kernel_dev_of(st_dev: u64) -> u32 {
    kernel_dev(libc::major(st_dev), libc::minor(st_dev))
}

impl Backstop {
    /// Loads and attaches the program, inactive, with the mode and scope it enforces.
    pub fn load(lockdown: bool, scope: &ProgramScope) -> Result<Backstop, BackstopError> {
        let btf = Btf::from_sys_fs().map_err(|e| err("kernel BTF (/sys/kernel/btf/vmlinux)", e))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(|e| err("loading the BPF object", e))?;
        {
            let program: &mut BtfTracePoint = ebpf
                .program_mut("santad_exec")
                .ok_or_else(|| BackstopError("the object has no program `santad_exec`".into()))?
                .try_into()
                .map_err(|e| err("program type", e))?;
            program
                .load("sched_process_exec", &btf)
                .map_err(|e| err("the kernel refused the program", e))?;
            program
                .attach()
                .map_err(|e| err("attaching to sched_process_exec", e))?;
        }
        let mut config: Array<MapData, BackstopConfig> = take(&mut ebpf, "config")?;
        let mut uids: HashMap<MapData, u32, u32> = take(&mut ebpf, "scope_uids")?;
        let mut gids: HashMap<MapData, u32, u32> = take(&mut ebpf, "scope_gids")?;
        for &u in scope.uids.iter().take(SCOPE_IDS_MAX) {
            uids.insert(u, 1, 0).map_err(|e| err("scope_uids", e))?;
        }
        for &g in scope.gids.iter().take(SCOPE_IDS_MAX) {
            gids.insert(g, 1, 0).map_err(|e| err("scope_gids", e))?;
        }
        let mut base = BackstopConfig {
            active: 0,
            lockdown: u32::from(lockdown),
            scope_all: u32::from(scope.all),
            ..BackstopConfig::default()
        };
        for (slot, &(id, level)) in base.cgroup.iter_mut().zip(&scope.cgroups) {
            *slot = ScopeCgroup { id, level, pad: 0 };
            base.cgroups += 1;
        }
        config.set(0, base, 0).map_err(|e| err("config", e))?;
        let maps = Maps {
            config,
            marked_sbs: take(&mut ebpf, "marked_sbs")?,
            marked_mounts: take(&mut ebpf, "marked_mounts")?,
            loaders: take(&mut ebpf, "loaders")?,
            allowed: take(&mut ebpf, "allowed")?,
            stats: take(&mut ebpf, "stats")?,
            base,
        };
        let events: RingBuf<MapData> = take(&mut ebpf, "events")?;
        Ok(Backstop {
            maps: Mutex::new(maps),
            events: Mutex::new(Some(events)),
            lockdown: AtomicBool::new(lockdown),
            _ebpf: ebpf,
        })
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on the program enforces (or reports). Call once fanotify's marks are placed
    /// and the sets below are filled.
    pub fn activate(&self) -> Result<(), BackstopError> {
        let mut m = self.maps();
        let cfg = BackstopConfig {
            active: 1,
            ..m.base
        };
        m.config.set(0, cfg, 0).map_err(|e| err("config", e))
    }

    /// Stops (or resumes) checking: the program stays attached and returns at once.
    pub fn set_active(&self, active: bool) -> Result<(), BackstopError> {
        let mut m = self.maps();
        let cfg = BackstopConfig {
            active: u32::from(active),
            ..m.base
        };
        m.config.set(0, cfg, 0).map_err(|e| err("config", e))
    }

    /// The kernel's own accounting of the program: (runs, total run time in ns). Counted only
    /// while `kernel.bpf_stats_enabled` is 1.
    pub fn program_runtime(&self) -> Result<(u64, u64), BackstopError> {
        let program: &BtfTracePoint = self
            ._ebpf
            .program("santad_exec")
            .ok_or_else(|| BackstopError("no program `santad_exec`".into()))?
            .try_into()
            .map_err(|e| err("program type", e))?;
        let info = program.info().map_err(|e| err("program info", e))?;
        Ok((info.run_count(), info.run_time().as_nanos() as u64))
    }

    /// Makes the set of marked superblocks (kernel device numbers) exactly `devs`. New ones are
    /// added before old ones go, so a superblock in both never looks unmarked.
    pub fn set_superblocks(&self, devs: &[u32]) -> Result<(), BackstopError> {
        let devs = &devs[..devs.len().min(SUPERBLOCKS_MAX)];
        make_exactly(&mut self.maps().marked_sbs, devs, "marked_sbs")
    }

    /// Adds mounts (ids) santad holds a mount mark on (`WatchPaths`).
    pub fn add_mounts(&self, ids: &[i32]) -> Result<(), BackstopError> {
        let mut m = self.maps();
        for &id in ids.iter().take(MOUNTS_MAX) {
            m.marked_mounts
                .insert(id, 1, 0)
                .map_err(|e| err("marked_mounts", e))?;
        }
        Ok(())
    }

    /// Makes the set of dynamic-loader inodes (kernel device, inode) exactly `loaders`.
    pub fn set_loaders(&self, loaders: &[(u32, u64)]) -> Result<(), BackstopError> {
        let keys: Vec<LoaderKey> = loaders
            .iter()
            .take(LOADERS_MAX)
            .map(|&(dev, ino)| LoaderKey { dev, pad: 0, ino })
            .collect();
        make_exactly(&mut self.maps().loaders, &keys, "loaders")
    }

    /// Records an allow of process `tgid`'s exec of inode `ino`, a file its owner can write,
    /// decided on the file's change time and size: the exec is killed (Lockdown) if they moved
    /// by the time it is past the kernel's write lock. An error (the table is full) means the
    /// allow must not stand.
    pub fn note_allow(
        &self,
        tgid: i32,
        ino: u64,
        ctime_ns: i64,
        size: u64,
    ) -> Result<(), BackstopError> {
        let key = AllowedKey {
            tgid: tgid as u32,
            pad: 0,
            ino,
        };
        self.maps()
            .allowed
            .insert(key, AllowedStamp { ctime_ns, size }, 0)
            .map_err(|e| err("allowed", e))
    }

    /// Whether the record of [`Backstop::note_allow`] is still there: the exec's last check
    /// removes it.
    pub fn allow_pending(&self, tgid: i32, ino: u64) -> bool {
        let key = AllowedKey {
            tgid: tgid as u32,
            pad: 0,
            ino,
        };
        self.maps().allowed.get(&key, 0).is_ok()
    }

    /// Forgets an allow recorded by [`Backstop::note_allow`] (its exec is over).
    pub fn forget_allow(&self, tgid: i32, ino: u64) {
        let key = AllowedKey {
            tgid: tgid as u32,
            pad: 0,
            ino,
        };
        let _ = self.maps().allowed.remove(&key);
    }

    /// The program's counters.
    pub fn stats(&self) -> BackstopCounters {
        let m = self.maps();
        let get = |i: u32| {
            m.stats
                .get(&i, 0)
                .map(|v| v.iter().copied().fold(0u64, u64::wrapping_add))
                .unwrap_or(0)
        };
        BackstopCounters {
            checked: get(0),
            denied: get(1),
            reported: get(2),
            dropped: get(3),
            entry_unchecked: get(4),
        }
    }

    /// Whether it enforces Lockdown (else it only reports).
    pub fn lockdown(&self) -> bool {
        self.lockdown.load(Ordering::Relaxed)
    }

    /// The client mode changed (a reload): Lockdown enforces, Monitor reports.
    pub fn set_lockdown(&self, lockdown: bool) -> Result<(), BackstopError> {
        let mut m = self.maps();
        m.base.lockdown = u32::from(lockdown);
        let active = m.config.get(&0, 0).map(|c| c.active).unwrap_or(0);
        let cfg = BackstopConfig { active, ..m.base };
        m.config.set(0, cfg, 0).map_err(|e| err("config", e))?;
        self.lockdown.store(lockdown, Ordering::Relaxed);
        Ok(())
    }

    /// Starts the thread that turns the program's reports into log lines; it ends when `stop`
    /// is set (within half a second). Call once.
    pub fn spawn_reporter(
        self: &Arc<Self>,
        log: Arc<EventLog>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let ring = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        std::thread::Builder::new()
            .name("santad-backstop".into())
            .spawn(move || {
                let Some(mut ring) = ring else { return };
                let mut names = NameCache::new();
                while !stop.load(Ordering::Acquire) {
                    crate::fdwait::wait_for(ring.as_raw_fd(), libc::POLLIN, 500);
                    while let Some(item) = ring.next() {
                        if let Some(report) = Report::parse(&item) {
                            report.log(&log, &mut names);
                        }
                    }
                }
            })
    }
}

/// One report of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Why the exec came to the program.
    pub reason: ReportReason,
    /// Killed (else allowed and reported).
    pub denied: bool,
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// The file's superblock (kernel device number) and inode.
    pub dev: u32,
    /// Inode number.
    pub ino: u64,
    /// The path execve was given (as the kernel copied it).
    pub filename: Vec<u8>,
}

/// Why the backstop saw an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportReason {
    /// Its file is on no superblock or mount santad watches.
    Unwatched,
    /// A direct run of the dynamic loader.
    Loader,
    /// The new image's first instruction is in a file on an unwatched filesystem: an ELF
    /// interpreter other than the system's (PT_INTERP resolved in the user's own mounts).
    Entry,
    /// The entry point could not be looked up; reported, never killed.
    EntryUnchecked,
    /// The file changed between santad's allow and the exec's write lock.
    Changed,
}

impl ReportReason {
    /// In the order of the program's `REASON_*` values, which count from 1.
    const ALL: [ReportReason; 5] = [
        Self::Unwatched,
        Self::Loader,
        Self::Entry,
        Self::EntryUnchecked,
        Self::Changed,
    ];

    /// The reason the program wrote, if it is one of ours.
    fn from_program(value: u32) -> Option<Self> {
        Self::ALL.get(value.checked_sub(1)? as usize).copied()
    }

    /// The words after `explain=backstop: `.
    pub fn explain(self) -> &'static str {
        match self {
            ReportReason::Unwatched => {
                "file on a filesystem santad does not watch (memfd, user-namespace or unmarked mount)"
            }
            ReportReason::Loader => "direct execution of the dynamic loader",
            ReportReason::Entry => {
                "the program starts in a file on a filesystem santad does not watch (an ELF \
                 interpreter that is not the system's)"
            }
            ReportReason::EntryUnchecked => "the program's entry point could not be checked",
            ReportReason::Changed => {
                "the file changed between santad's allow and the exec (other bytes would run)"
            }
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Makes a set-like map (every value 1) hold exactly `keys`: new keys are added before stale
/// ones go, so a key in both sets is never missing.
fn make_exactly<K: aya::Pod + PartialEq>(
    map: &mut HashMap<MapData, K, u32>,
    keys: &[K],
    name: &str,
) -> Result<(), BackstopError> {
    for k in keys {
        map.insert(k, 1, 0).map_err(|e| err(name, e))?;
    }
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keys.contains(k))
        .collect();
    for k in stale {
        let _ = map.remove(&k);
    }
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Report {
    /// Decodes one ring-buffer record; `None` if it is not one of ours.
    pub fn parse(b: &[u8]) -> Option<Report> {
        if b.len() < EVENT_BYTES {
            return None;
        }
        let reason = ReportReason::from_program(u32_at(b, 0)?)?;
        let name = &b[64..EVENT_BYTES];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        Some(Report {
            reason,
            denied: u32_at(b, 4)? != 0,
            pid: u32_at(b, 8)? as i32,
            ppid: u32_at(b, 12)? as i32,
            uid: u32_at(b, 16)?,
            gid: u32_at(b, 20)?,
            dev: u32_at(b, 24)?,
            ino: u64_at(b, 32)?,
            filename: name[..end].to_vec(),
        })
    }

    /// Writes its `EXEC` line.
    pub fn log(&self, log: &EventLog, names: &mut NameCache) {
        let Some(mut rec) = log.acquire() else { return };
        rec.kind = eventlog::RecordKind::Exec;
        rec.time = SystemTime::now();
        rec.decision = Some(if self.denied {
            santa_rules::Action::Deny
        } else {
            santa_rules::Action::Allow
        });
        rec.reason = santa_rules::Reason::Unknown;
        rec.mode = if self.denied {
            crate::config::ClientMode::Lockdown
        } else {
            crate::config::ClientMode::Monitor
        };
        rec.explain.set(b"backstop: ");
        rec.explain.push(self.reason.explain().as_bytes());
        if self.denied {
            rec.explain.push(b"; process killed at exec");
        }
        rec.pid = self.pid;
        rec.ppid = self.ppid;
        rec.uid = self.uid;
        rec.gid = self.gid;
        names.user_into(self.uid, &mut rec.user);
        names.group_into(self.gid, &mut rec.group);
        rec.path.set(&self.filename);
        if !self.denied {
            let _ = crate::linux::procinfo::read_cmdline_into(self.pid, &mut rec.args);
        }
        rec.commit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: u32, denied: u32, name: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; EVENT_BYTES];
        b[0..4].copy_from_slice(&reason.to_ne_bytes());
        b[4..8].copy_from_slice(&denied.to_ne_bytes());
        b[8..12].copy_from_slice(&42u32.to_ne_bytes());
        b[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        b[32..40].copy_from_slice(&7u64.to_ne_bytes());
        b[64..64 + name.len()].copy_from_slice(name);
        b
    }

    #[test]
    fn reports_decode_and_foreign_or_short_records_are_refused() {
        let r = Report::parse(&event(2, 1, b"/lib64/ld-linux-x86-64.so.2")).expect("ours");
        assert_eq!(r.reason, ReportReason::Loader);
        assert!(r.denied);
        assert_eq!((r.pid, r.uid, r.ino), (42, 1000, 7));
        assert_eq!(r.filename, b"/lib64/ld-linux-x86-64.so.2");
        assert_eq!(Report::parse(&event(9, 0, b"x")), None, "unknown reason");
        assert_eq!(Report::parse(&event(1, 0, b"x")[..100]), None, "short");
        let full = vec![b'a'; 256];
        let r = Report::parse(&event(1, 0, &full)).expect("unterminated name");
        assert_eq!(r.filename.len(), 256);
    }

    #[test]
    fn kernel_device_numbers_match_the_kernels_encoding() {
        assert_eq!(kernel_dev(254, 1), (254 << 20) | 1);
        assert_eq!(kernel_dev_of(libc::makedev(8, 17)), (8 << 20) | 17);
    }
}
