//! What santad watches: with no `WatchPaths`, one `FAN_MARK_FILESYSTEM` mark on every superblock
//! of santad's mount table that can hold executables ([`crate::linux::mountinfo::superblocks`]; pseudo
//! filesystems are skipped, each with its reason), followed as mounts come and go (`POLLPRI` on
//! `/proc/self/mountinfo`); the dynamic loaders, whose loads are part of the exec that asked for
//! them; and who Lockdown applies to ([`Scope`]).
//!
//! Every refresh re-issues every mark (an add of a mark that exists changes nothing), so a
//! superblock that went and came back between two refreshes under the same device number is
//! marked again, and hands the marked set to the backstop, new devices before old ones go.

use crate::config::LockdownScope;
use crate::linux::Linux;
use crate::linux::backstop::{self, Backstop, ProgramScope};
use crate::linux::fanotify::MarkScope;
use crate::linux::mountinfo;
use santa_hotpath::FileKey;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How often the loaders are looked for again (a package upgrade replaces their inodes).
const LOADER_REFRESH_SECS: u64 = 30;

/// Directories the dynamic loaders live in (plus their multiarch subdirectories).
const LOADER_DIRS: [&str; 8] = [
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
];

/// What became of one superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SbState {
    /// Marked.
    Watched,
    /// Not marked, and why.
    Skipped(&'static str),
    /// The mark failed.
    Failed(String),
}

/// One superblock of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbStatus {
    /// `major:minor`.
    pub dev: (u32, u32),
    /// Filesystem type.
    pub fs_type: String,
    /// The mount point the mark went through.
    pub mount_point: PathBuf,
    /// Marked or not.
    pub state: SbState,
}

/// Coverage, for `santactl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageReport {
    /// Every filesystem (else `WatchPaths`).
    pub every_filesystem: bool,
    /// The superblocks (every-filesystem coverage only).
    pub superblocks: Vec<SbStatus>,
    /// The dynamic loaders found.
    pub loaders: Vec<PathBuf>,
    /// Mount-table changes followed.
    pub refreshes: u64,
}

/// Every-filesystem coverage and the loaders.
#[derive(Debug)]
pub struct Coverage {
    linux: Arc<Linux>,
    mask: u64,
    ignore: Vec<PathBuf>,
    every_filesystem: bool,
    backstop: Option<Arc<Backstop>>,
    state: Mutex<CoverageReport>,
    refreshes: AtomicU64,
    /// Each mount's id and its superblock's `major:minor`, from the last mount table read.
    mount_devs: Mutex<Vec<(u32, (u32, u32))>>,
}

impl Coverage {
    /// Marks every filesystem (when `every_filesystem`) and finds the loaders. Fails only if
    /// the mount table cannot be read or the root filesystem cannot be marked.
    pub fn start(
        linux: Arc<Linux>,
        mask: u64,
        ignore: Vec<PathBuf>,
        every_filesystem: bool,
        backstop: Option<Arc<Backstop>>,
    ) -> Result<Arc<Coverage>, String> {
        let c = Arc::new(Coverage {
            linux,
            mask,
            ignore,
            every_filesystem,
            backstop,
            state: Mutex::new(CoverageReport {
                every_filesystem,
                ..CoverageReport::default()
            }),
            refreshes: AtomicU64::new(0),
            mount_devs: Mutex::new(Vec::new()),
        });
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        c.refresh(&text)?;
        c.refresh_loaders();
        Ok(c)
    }

    /// Learns santad's own mounts and (every-filesystem coverage) marks what `mountinfo` lists;
    /// returns an error only when nothing at all got marked.
    fn refresh(&self, mountinfo_text: &str) -> Result<(), String> {
        let mounts = mountinfo::parse(mountinfo_text).map_err(|e| e.to_string())?;
        let sbs = mountinfo::superblocks(&mounts, &self.ignore);
        *self
            .mount_devs
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            mounts.iter().map(|m| (m.id, m.dev)).collect();
        crate::linux::set_own_mounts(
            mounts.iter().map(|m| m.id).collect(),
            sbs.iter()
                .map(|sb| (sb.dev, sb.mount_point.clone()))
                .collect(),
        );
        crate::linux::set_fine_grained(
            mounts
                .iter()
                .filter(|m| crate::linux::multigrain_type(&m.fs_type))
                .map(|m| m.dev)
                .collect(),
        );
        if !self.every_filesystem {
            return Ok(());
        }
        let mut out = Vec::with_capacity(sbs.len());
        let mut devs = Vec::new();
        for sb in sbs {
            let mut mount_point = sb.mount_point.clone();
            let state = match sb.skipped {
                Some(why) => SbState::Skipped(why),
                None => match self.mark(&sb, &mounts) {
                    Ok(through) => {
                        mount_point = through;
                        devs.push(backstop::kernel_dev(sb.dev.0, sb.dev.1));
                        SbState::Watched
                    }
                    Err(e) => SbState::Failed(e),
                },
            };
            out.push(SbStatus {
                dev: sb.dev,
                fs_type: sb.fs_type,
                mount_point,
                state,
            });
        }
        if devs.is_empty() {
            return Err("no filesystem could be marked".into());
        }
        if let Some(b) = &self.backstop
            && let Err(e) = b.set_superblocks(&devs)
        {
            log::error!("backstop: updating the marked filesystems: {e}");
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for sb in &out {
            let before = state.superblocks.iter().find(|o| o.dev == sb.dev);
            if let SbState::Failed(e) = &sb.state
                && before.map(|b| &b.state) != Some(&sb.state)
            {
                log::warn!(
                    "coverage: cannot mark {} ({}, {}:{}): {e}",
                    sb.mount_point.display(),
                    sb.fs_type,
                    sb.dev.0,
                    sb.dev.1
                );
            }
            if sb.state == SbState::Watched && before.is_none_or(|b| b.state != SbState::Watched) {
                log::info!(
                    "coverage: watching {} ({}, {}:{})",
                    sb.mount_point.display(),
                    sb.fs_type,
                    sb.dev.0,
                    sb.dev.1
                );
            }
        }
        state.superblocks = out;
        state.refreshes = self.refreshes.load(Ordering::Relaxed);
        Ok(())
    }

    /// Marks `sb` through the first of its mount points that still shows it: a mount point
    /// covered by a later mount (`/dev/shm` mounted twice) would resolve to the other
    /// filesystem and mark that one. Returns the mount point used.
    fn mark(
        &self,
        sb: &mountinfo::Superblock,
        mounts: &[mountinfo::Mount],
    ) -> Result<PathBuf, String> {
        let mut candidates: Vec<&Path> = vec![sb.mount_point.as_path()];
        for m in mounts.iter().filter(|m| m.dev == sb.dev) {
            if !candidates.contains(&m.mount_point.as_path()) {
                candidates.push(&m.mount_point);
            }
        }
        // Btrfs reports a subvolume's own device number in stat, not the superblock's.
        let checkable = sb.fs_type != "btrfs";
        let shows_it = |p: &Path| {
            !checkable
                || std::fs::metadata(p)
                    .is_ok_and(|m| (libc::major(m.dev()), libc::minor(m.dev())) == sb.dev)
        };
        let mut last_error = None;
        for p in candidates {
            if !shows_it(p) {
                continue;
            }
            match self
                .linux
                .fan
                .add_watch(p, MarkScope::Filesystem, self.mask)
            {
                // Checked again: the mount table may have changed between the look and the mark.
                Ok(()) if shows_it(p) => return Ok(p.to_path_buf()),
                Ok(()) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            "every mount point of it is covered by another mount (the backstop covers it)".into()
        }))
    }

    /// Finds the dynamic loaders again and hands them to the engine's source and the backstop.
    pub fn refresh_loaders(&self) {
        let found = find_loaders();
        let keys: Vec<FileKey> = found.iter().map(|(_, k)| *k).collect();
        self.linux.set_loaders(keys.clone());
        if let Some(b) = &self.backstop {
            // The kernel's device number of the superblock, as the program reads it from the
            // inode: the mount table's `major:minor` (stat's differs on Btrfs subvolumes).
            let devs = self
                .mount_devs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let kernel: Vec<(u32, u64)> = found
                .iter()
                .map(|(p, k)| {
                    let dev = crate::linux::mount_id_of_path(p)
                        .and_then(|id| devs.iter().find(|(m, _)| *m == id))
                        .map_or(backstop::kernel_dev_of(k.dev), |(_, (ma, mi))| {
                            backstop::kernel_dev(*ma, *mi)
                        });
                    (dev, k.ino)
                })
                .collect();
            if let Err(e) = b.set_loaders(&kernel) {
                log::error!("backstop: updating the loaders: {e}");
            }
        }
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .loaders = found.into_iter().map(|(p, _)| p).collect();
    }

    /// What is covered now.
    pub fn report(&self) -> CoverageReport {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Follows the mount table until `stop`: a change marks what is new; every
    /// `LOADER_REFRESH_SECS` the loaders are looked for again.
    pub fn spawn_follower(
        self: &Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        let mut file = std::fs::File::open("/proc/self/mountinfo")?;
        std::thread::Builder::new()
            .name("santad-mounts".into())
            .spawn(move || {
                let mut last_loaders = std::time::Instant::now();
                let mut text = String::new();
                while !stop.load(Ordering::Acquire) {
                    let revents = crate::fdwait::wait_for(file.as_raw_fd(), libc::POLLPRI, 500);
                    if revents & (libc::POLLPRI | libc::POLLERR) != 0 {
                        text.clear();
                        // Reading the whole table through this fd re-arms its change event.
                        let read = file.rewind().and_then(|()| file.read_to_string(&mut text));
                        {
                            me.refreshes.fetch_add(1, Ordering::Relaxed);
                            match read {
                                Ok(_) => {
                                    if let Err(e) = me.refresh(&text) {
                                        log::error!("coverage: following mounts: {e}");
                                    }
                                }
                                Err(e) => log::error!("coverage: /proc/self/mountinfo: {e}"),
                            }
                        }
                    }
                    if last_loaders.elapsed().as_secs() >= LOADER_REFRESH_SECS {
                        last_loaders = std::time::Instant::now();
                        me.refresh_loaders();
                    }
                }
            })
    }
}

/// The `PT_INTERP` of a 64-bit ELF file, if it has one.
pub fn elf_interpreter(path: &Path) -> Option<PathBuf> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None; // 64-bit little-endian only
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let phoff = u64_at(&head, 0x20)?;
    let phentsize = u16_at(&head, 0x36)? as usize;
    let phnum = u16_at(&head, 0x38)? as usize;
    if phentsize < 56 || phnum > 64 {
        return None;
    }
    let mut table = vec![0u8; phentsize * phnum];
    f.seek(std::io::SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    for ph in table.chunks_exact(phentsize) {
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) != 3 {
            continue; // PT_INTERP
        }
        let offset = u64_at(ph, 8)?;
        let size = u64_at(ph, 32)?;
        if size == 0 || size > 4096 {
            return None;
        }
        let mut name = vec![0u8; size as usize];
        f.seek(std::io::SeekFrom::Start(offset)).ok()?;
        f.read_exact(&mut name).ok()?;
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        use std::os::unix::ffi::OsStrExt;
        return Some(PathBuf::from(std::ffi::OsStr::from_bytes(&name[..end])));
    }
    None
}

fn is_loader_name(name: &str) -> bool {
    name.starts_with("ld-linux")
        || name.starts_with("ld-musl-")
        || name == "ld.so"
        || name == "ld.so.1"
        || name == "ld64.so.1"
        || name == "ld64.so.2"
}

/// The dynamic loaders of this host: the interpreters named by santad's own binary and the
/// shell, and every `ld-linux*` / `ld-musl-*` / `ld.so*` in the library directories and their
/// multiarch subdirectories. Only regular files only root can modify count (anything else is
/// evaluated like any binary); one entry per inode.
pub fn find_loaders() -> Vec<(PathBuf, FileKey)> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for exe in ["/proc/self/exe", "/bin/sh", "/usr/bin/env"] {
        if let Some(interp) = elf_interpreter(Path::new(exe)) {
            candidates.push(interp);
        }
    }
    let mut dirs: Vec<PathBuf> = LOADER_DIRS.iter().map(PathBuf::from).collect();
    for base in ["/lib", "/usr/lib"] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.ends_with("-linux-gnu") || name.ends_with("-linux-musl") {
                    dirs.push(e.path());
                }
            }
        }
    }
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if is_loader_name(&e.file_name().to_string_lossy()) {
                    candidates.push(e.path());
                }
            }
        }
    }
    candidates.push(PathBuf::from("/usr/bin/ld.so"));
    let mut out: Vec<(PathBuf, FileKey)> = Vec::new();
    for c in candidates {
        let Ok(m) = std::fs::metadata(&c) else {
            continue;
        };
        if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 {
            continue;
        }
        let key = FileKey {
            dev: m.dev(),
            ino: m.ino(),
        };
        if out.iter().any(|(_, k)| *k == key) || out.len() >= backstop::LOADERS_MAX {
            continue;
        }
        let path = std::fs::canonicalize(&c).unwrap_or(c);
        out.push((path, key));
    }
    out
}

/// Who Lockdown applies to, as santad checks it per process (the backstop checks the same
/// facts in the kernel: [`Scope::program_scope`]).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    users: Vec<u32>,
    groups: Vec<u32>,
    /// cgroup v2 paths from the hierarchy's root, with their ids and levels.
    cgroups: Vec<(PathBuf, u64, u32)>,
}

/// Where the cgroup v2 hierarchy is mounted.
fn cgroup2_root() -> PathBuf {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|t| mountinfo::parse(&t).ok())
        .and_then(|ms| {
            ms.into_iter()
                .find(|m| m.fs_type == "cgroup2")
                .map(|m| m.mount_point)
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

impl Scope {
    /// Resolves a configured scope: each cgroup must exist now.
    pub fn resolve(config: &LockdownScope) -> Result<Scope, String> {
        let root = cgroup2_root();
        let mut cgroups = Vec::new();
        for c in &config.cgroups {
            let rel = c.strip_prefix("/").unwrap_or(c);
            let dir = root.join(rel);
            let m = std::fs::metadata(&dir)
                .map_err(|e| format!("LockdownScope.Cgroups: {}: {e}", dir.display()))?;
            let level = rel.components().count() as u32;
            cgroups.push((Path::new("/").join(rel), m.ino(), level));
        }
        Ok(Scope {
            users: config.users.clone(),
            groups: config.groups.clone(),
            cgroups,
        })
    }

    /// The same scope for the backstop.
    pub fn program_scope(scope: Option<&Scope>) -> ProgramScope {
        match scope {
            None => ProgramScope {
                all: true,
                ..ProgramScope::default()
            },
            Some(s) => ProgramScope {
                all: false,
                uids: s.users.clone(),
                gids: s.groups.clone(),
                cgroups: s.cgroups.iter().map(|(_, id, l)| (*id, *l)).collect(),
            },
        }
    }

    /// Whether process `pid` is in scope. A process whose facts cannot be read is (Lockdown
    /// holds where santad cannot tell).
    pub fn contains(&self, pid: i32) -> bool {
        let Ok((uid, gid)) = crate::linux::procinfo::read_ids(pid) else {
            return true;
        };
        if self.users.contains(&uid) || self.groups.contains(&gid) {
            return true;
        }
        if !self.groups.is_empty() {
            // Supplementary groups too (the backstop checks the same): a user can change their
            // real group with newgrp or sg, not drop a supplementary one.
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return true;
            };
            let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) else {
                return true;
            };
            if line
                .split_whitespace()
                .filter_map(|g| g.parse::<u32>().ok())
                .any(|g| self.groups.contains(&g))
            {
                return true;
            }
        }
        if self.cgroups.is_empty() {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return true;
        };
        let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return true;
        };
        let path = Path::new(path);
        self.cgroups.iter().any(|(c, _, _)| path.starts_with(c))
    }

    /// One line for logs and status.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users {:?}", self.users));
        }
        if !self.groups.is_empty() {
            parts.push(format!("groups {:?}", self.groups));
        }
        if !self.cgroups.is_empty() {
            let c: Vec<String> = self
                .cgroups
                .iter()
                .map(|(p, _, _)| p.display().to_string())
                .collect();
            parts.push(format!("cgroups {c:?}"));
        }
        parts.join(", ")
    }
}

/// Whether unprivileged users can make user namespaces (`kernel.unprivileged_userns_clone`
/// where the kernel has it, and `user.max_user_namespaces`).
pub fn unprivileged_userns() -> &'static str {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if read("/proc/sys/user/max_user_namespaces") == Some(0)
        || read("/proc/sys/kernel/unprivileged_userns_clone") == Some(0)
    {
        "disabled"
    } else {
        "allowed"
    }
}

/// `vm.memfd_noexec` (0, 1 or 2), if the kernel has it.
pub fn memfd_noexec() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/vm/memfd_noexec")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Sets `vm.memfd_noexec = 2` (no executable memfd, system-wide; the kernel does not let it be
/// lowered again in this namespace).
pub fn set_memfd_noexec() -> std::io::Result<()> {
    std::fs::write("/proc/sys/vm/memfd_noexec", "2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_hosts_loader_is_found_and_is_the_interpreter_of_its_shell() {
        let interp = elf_interpreter(Path::new("/bin/sh")).expect("/bin/sh is dynamically linked");
        let loaders = find_loaders();
        let m = std::fs::metadata(&interp).expect("the interpreter exists");
        assert!(
            loaders
                .iter()
                .any(|(_, k)| k.ino == m.ino() && k.dev == m.dev()),
            "{interp:?} not in {loaders:?}"
        );
    }

    #[test]
    fn elf_interpreter_refuses_what_is_not_a_64_bit_elf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x");
        for bytes in [
            &b""[..],
            b"#!/bin/sh\n",
            b"\x7fELF\x01\x01\x01",
            &[
                0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 56, 0, 1, 0, 0, 0, 0, 0, 0, 0,
            ],
        ] {
            std::fs::write(&p, bytes).expect("write");
            assert_eq!(elf_interpreter(&p), None, "{bytes:?}");
        }
    }
}
