//! `/proc/self/mountinfo`: which superblocks can hold executables, one entry each.
//!
//! santad watches filesystems, not paths: a `FAN_MARK_FILESYSTEM` mark covers every mount of a
//! superblock (bind mounts included), so coverage is one mark per superblock that can hold a
//! file someone could execute. This module is the pure half of that: it parses mountinfo (the
//! kernel's escapes and optional fields included), classifies each filesystem type, and picks one
//! mount point per superblock to place the mark through. It reads nothing itself, so it is
//! tested on recorded text and fuzzable.
//!
//! Format (proc(5)): `id parent major:minor root mount-point options [optional fields...] -
//! fstype source super-options`; fields are space-separated, with space, tab, newline and
//! backslash in paths written as octal escapes (`\040`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Lines of mountinfo read at most: a host with more mounts than this is refused with an error
/// rather than half-covered. Container hosts reach a few thousand; 65,536 lines are ~10 MiB.
pub const MOUNT_LINES_MAX: usize = 65_536;

/// Filesystem types that cannot hold a file anyone could execute, and why. Their mounts get no
/// mark (marking them costs the kernel a lookup on every event and buys nothing).
pub const SKIPPED_FS_TYPES: [(&str, &str); 20] = [
    ("proc", "process information, no executable files"),
    ("sysfs", "kernel objects, no executable files"),
    ("cgroup", "control groups, no executable files"),
    ("cgroup2", "control groups, no executable files"),
    ("devpts", "pseudo-terminals only"),
    ("mqueue", "message queues only"),
    ("debugfs", "kernel debugging files"),
    ("tracefs", "kernel tracing files"),
    ("securityfs", "security module files"),
    ("pstore", "kernel crash records"),
    ("bpf", "pinned BPF objects only"),
    ("configfs", "kernel configuration objects"),
    ("fusectl", "FUSE connection control"),
    ("binfmt_misc", "binary format registrations"),
    (
        "autofs",
        "automount points (the filesystem mounted on them is watched itself)",
    ),
    ("efivarfs", "EFI variables"),
    ("selinuxfs", "SELinux policy files"),
    ("rpc_pipefs", "NFS RPC pipes"),
    ("nsfs", "namespace handles"),
    ("hugetlbfs", "huge pages: no exec of files placed there"),
];

/// One mount, as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent_id: u32,
    /// The superblock's device number, `(major, minor)`.
    pub dev: (u32, u32),
    /// The directory of the filesystem that is the root of this mount (`/` unless a bind mount
    /// of a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted, in santad's mount namespace.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,noexec,…`).
    pub mount_options: String,
    /// Filesystem type (`ext4`, `tmpfs`, `fuse.sshfs`, …).
    pub fs_type: String,
    /// Mount source (`/dev/sda1`, `tmpfs`, …).
    pub source: String,
}

impl Mount {
    /// Whether the mount itself forbids exec (`noexec`). The superblock may still be mounted
    /// elsewhere without it, so this is never a reason to skip the superblock.
    pub fn noexec(&self) -> bool {
        self.mount_options.split(',').any(|o| o == "noexec")
    }
}

/// A malformed mountinfo line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mountinfo line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); anything else is kept as written.
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn parse_line(line: &str, number: usize) -> Result<Mount, ParseError> {
    let err = |what| ParseError { line: number, what };
    let mut fields = line.split(' ');
    let mut next = |what| fields.next().filter(|f| !f.is_empty()).ok_or(err(what));
    let id = next("no mount id")?
        .parse()
        .map_err(|_| err("bad mount id"))?;
    let parent_id = next("no parent id")?
        .parse()
        .map_err(|_| err("bad parent id"))?;
    let (major, minor) = next("no device")?
        .split_once(':')
        .ok_or(err("device is not major:minor"))?;
    let dev = (
        major.parse().map_err(|_| err("bad major"))?,
        minor.parse().map_err(|_| err("bad minor"))?,
    );
    let root = unescape(next("no root")?);
    let mount_point = unescape(next("no mount point")?);
    let mount_options = next("no mount options")?.to_string();
    // Optional fields up to the lone "-".
    loop {
        match fields.next() {
            Some("-") => break,
            Some(_) => {}
            None => return Err(err("no separator before the filesystem type")),
        }
    }
    let fs_type = fields
        .next()
        .filter(|f| !f.is_empty())
        .ok_or(err("no filesystem type"))?
        .to_string();
    let source = fields.next().unwrap_or("").to_string();
    Ok(Mount {
        id,
        parent_id,
        dev,
        root,
        mount_point,
        mount_options,
        fs_type,
        source,
    })
}

/// Parses mountinfo text; every line must parse (a line santad cannot read is a mount it would
/// not cover, so it is an error, not a skip).
pub fn parse(text: &str) -> Result<Vec<Mount>, ParseError> {
    let mut mounts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i >= MOUNT_LINES_MAX {
            return Err(ParseError {
                line: i + 1,
                what: "more mounts than MOUNT_LINES_MAX",
            });
        }
        if line.is_empty() {
            continue;
        }
        mounts.push(parse_line(line, i + 1)?);
    }
    Ok(mounts)
}

/// Why a filesystem type is not watched, if it is not.
pub fn skip_reason(fs_type: &str) -> Option<&'static str> {
    SKIPPED_FS_TYPES
        .iter()
        .find(|(t, _)| *t == fs_type)
        .map(|(_, why)| *why)
}

/// One superblock and what santad does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Device number.
    pub dev: (u32, u32),
    /// Filesystem type.
    pub fs_type: String,
    /// The mount to place the mark through: the first listed whose root is the filesystem's
    /// root, else the first listed.
    pub mount_point: PathBuf,
    /// Every mount point of it.
    pub mounts: usize,
    /// `None`: watched. `Some(why)`: skipped, and why.
    pub skipped: Option<&'static str>,
}

/// The superblocks of `mounts`, one each (ordered by device), with the mount to mark them
/// through and whether they are skipped: by type ([`SKIPPED_FS_TYPES`]) or because a mount
/// point lies under one of `excluded` (fapolicyd's `ignore_mounts`: the whole superblock is then
/// left out, since a filesystem mark cannot exclude a single mount).
pub fn superblocks(mounts: &[Mount], excluded: &[PathBuf]) -> Vec<Superblock> {
    let mut by_dev: BTreeMap<(u32, u32), Superblock> = BTreeMap::new();
    for m in mounts {
        let excluded_here = excluded.iter().any(|e| m.mount_point.starts_with(e));
        let sb = by_dev.entry(m.dev).or_insert_with(|| Superblock {
            dev: m.dev,
            fs_type: m.fs_type.clone(),
            mount_point: m.mount_point.clone(),
            mounts: 0,
            skipped: skip_reason(&m.fs_type),
        });
        sb.mounts += 1;
        if sb.mounts > 1 && m.root == std::path::Path::new("/") && sb.mount_point != m.mount_point {
            // Prefer a mount of the filesystem's root, so the mark names a whole filesystem.
            let first_is_root = mounts
                .iter()
                .find(|o| o.dev == m.dev && o.mount_point == sb.mount_point)
                .is_some_and(|o| o.root == std::path::Path::new("/"));
            if !first_is_root {
                sb.mount_point = m.mount_point.clone();
            }
        }
        if excluded_here && sb.skipped.is_none() {
            sb.skipped = Some("excluded by configuration");
        }
    }
    by_dev.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334192k,mode=755
25 24 0:23 / /dev/shm rw,relatime shared:3 - tmpfs tmpfs rw
27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 27 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
31 27 254:1 /srv/data /mnt/data\\040copy rw,relatime - ext4 /dev/vda1 rw
32 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_the_kernels_fields_escapes_and_optional_fields() {
        let mounts = parse(HOST).unwrap();
        assert_eq!(mounts.len(), 8);
        let data = &mounts[6];
        assert_eq!(data.dev, (254, 1));
        assert_eq!(data.root, PathBuf::from("/srv/data"));
        assert_eq!(data.mount_point, PathBuf::from("/mnt/data copy"));
        assert_eq!(mounts[3].fs_type, "tmpfs", "after the optional shared:3");
        assert!(!mounts[4].noexec());
    }

    #[test]
    fn one_superblock_per_device_bind_mounts_folded_pseudo_filesystems_skipped() {
        let sbs = superblocks(&parse(HOST).unwrap(), &[]);
        let root = sbs.iter().find(|s| s.dev == (254, 1)).unwrap();
        assert_eq!(root.mounts, 2, "the bind mount is the same superblock");
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert_eq!(root.skipped, None);
        let watched: Vec<_> = sbs
            .iter()
            .filter(|s| s.skipped.is_none())
            .map(|s| s.mount_point.display().to_string())
            .collect();
        assert_eq!(watched, vec!["/dev", "/dev/shm", "/run", "/"]);
        for t in ["proc", "sysfs", "cgroup2"] {
            let s = sbs.iter().find(|s| s.fs_type == t).unwrap();
            assert!(s.skipped.is_some(), "{t} must be skipped with a reason");
        }
    }

    #[test]
    fn an_excluded_mount_leaves_its_whole_superblock_out() {
        let sbs = superblocks(&parse(HOST).unwrap(), &[PathBuf::from("/run")]);
        let run = sbs.iter().find(|s| s.dev == (0, 25)).unwrap();
        assert_eq!(run.skipped, Some("excluded by configuration"));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        for (text, what) in [
            ("x 1 0:1 / / rw - ext4 a rw", "bad mount id"),
            ("1 1 01 / / rw - ext4 a rw", "device is not major:minor"),
            (
                "1 1 0:1 / / rw ext4 a rw",
                "no separator before the filesystem type",
            ),
            ("1 1 0:1 / / rw -", "no filesystem type"),
            ("1 1", "no device"),
        ] {
            let e = parse(&format!("27 1 254:1 / / rw - ext4 /dev/vda1 rw\n{text}\n")).unwrap_err();
            assert_eq!((e.line, e.what), (2, what), "{text}");
        }
    }

    #[test]
    fn this_hosts_own_mountinfo_parses() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounts = parse(&text).unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_point == std::path::Path::new("/"))
        );
        let sbs = superblocks(&mounts, &[]);
        assert!(sbs.iter().any(|s| s.skipped.is_none()));
    }
}
