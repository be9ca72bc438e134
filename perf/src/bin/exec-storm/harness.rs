//! The binaries under test: a static `exit 0` padded to each workload's sizes, written as
//! identical pairs on the watched ext2 image and the control tmpfs, with allow rules for
//! santad in Lockdown.

use crate::cli::Sizes;
use crate::process::spawn_wait;
use santa_testkit::{PrivateMount, TmpfsOptions};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A pair of identical binaries: one on the watched image, one on the control tmpfs.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub(crate) watched: CString,
    pub(crate) control: CString,
    pub(crate) watched_path: PathBuf,
}

/// The unprivileged owner of the `repeated-nobody` copies (nobody:nogroup on Debian): santad
/// must not hand a file this user can rewrite to the kernel cache.
pub(crate) const NOBODY: u32 = 65_534;

pub(crate) struct Harness {
    pub(crate) watched: PrivateMount,
    /// Held for its guard: the control copies live here until the harness drops.
    #[allow(dead_code)]
    pub(crate) control: PrivateMount,
    pub(crate) state: tempfile::TempDir,
    pub(crate) bin_dir: PathBuf,
    pub(crate) repeated: Pair,
    /// The same binary owned by [`NOBODY`], mode 0755: allowed, but never kernel-cached.
    pub(crate) repeated_user: Pair,
    /// Owner, mode, filesystem and ACL of the two repeated binaries, as checked at setup.
    pub(crate) ownership: Vec<String>,
    pub(crate) distinct: Vec<Pair>,
    pub(crate) big: Vec<Pair>,
    pub(crate) storm_hot: Vec<Pair>,
    pub(crate) rules_db: PathBuf,
}

pub(crate) fn write_copy(base: &[u8], path: &Path, salt: &str, size: usize) -> Result<(), String> {
    let mut bytes = base.to_vec();
    bytes.extend_from_slice(salt.as_bytes());
    if bytes.len() < size {
        bytes.resize(size, 0x5a);
    }
    std::fs::write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// `path`'s owner, mode, filesystem and ACL, checked against what the workload needs: owner
/// `uid:uid`, mode 0755, a filesystem santad's kernel cache accepts, no POSIX access ACL.
pub(crate) fn check_ownership(label: &str, path: &Path, uid: u32) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let c = cstr(path);
    // SAFETY: `st` is a zeroed statfs the kernel fills; `c` is NUL-terminated.
    let magic = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st.f_type as i64)
    };
    let fs = magic.and_then(|m| {
        santad::linux::KERNEL_CACHE_FILESYSTEMS
            .iter()
            .find(|(k, _)| *k == m)
            .map(|(_, name)| *name)
    });
    // SAFETY: NUL-terminated path and name; a NULL buffer of size 0 asks for the size.
    let acl = unsafe {
        libc::getxattr(
            c.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    } >= 0;
    let mode = md.mode() & 0o7777;
    let line = format!(
        "{label} `{}`: owner {}:{}, mode {:04o}, filesystem {} (statfs magic {:#x}), POSIX ACL {}",
        path.display(),
        md.uid(),
        md.gid(),
        mode,
        fs.unwrap_or("not one santad's kernel cache accepts"),
        magic.unwrap_or(0),
        if acl { "present" } else { "none" }
    );
    if md.uid() != uid || md.gid() != uid || mode != 0o755 || fs.is_none() || acl {
        return Err(format!("unexpected file facts: {line}"));
    }
    Ok(line)
}

pub(crate) fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths here have no NUL")
}

impl Harness {
    pub(crate) fn new(sizes: &Sizes) -> Result<Self, String> {
        // The 50 MiB binaries are first execs for each round's fresh listener: no need for new ones.
        let big_total = sizes.big_per_round;
        let image_bytes = (sizes.distinct_1m as u64 + 200) * (1 << 20)
            + big_total as u64 * (51 << 20)
            + (64 << 20);
        let watched =
            PrivateMount::ext2_image(image_bytes.min(santa_testkit::EXT2_IMAGE_BYTES_MAX))
                .map_err(|e| format!("watched ext2 image: {e}"))?;
        let control = PrivateMount::tmpfs(TmpfsOptions {
            size_bytes: image_bytes.min(santa_testkit::TMPFS_BYTES_MAX),
            exec: true,
        })
        .map_err(|e| format!("control tmpfs: {e}"))?;
        let state = tempfile::tempdir().map_err(|e| e.to_string())?;
        let bin_dir = state.path().to_path_buf();
        let base_path = santa_perf::build_static_binary(state.path())?;
        let base = std::fs::read(&base_path).map_err(|e| e.to_string())?;
        let pair = |name: &str, salt: &str, size: usize| -> Result<Pair, String> {
            let w = watched.join(name);
            let c = control.join(name);
            write_copy(&base, &w, salt, size)?;
            write_copy(&base, &c, salt, size)?;
            Ok(Pair {
                watched: cstr(&w),
                control: cstr(&c),
                watched_path: w,
            })
        };
        let repeated = pair("repeated", "repeated", 0)?;
        // The same bytes as `repeated` (so the same work for the loader), another file and owner.
        let repeated_user = pair("repeated-nobody", "repeated", 0)?;
        for p in [&repeated_user.watched, &repeated_user.control] {
            let path = Path::new(std::ffi::OsStr::from_bytes(p.as_bytes()));
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
                .map_err(|e| format!("chown {}: {e}", path.display()))?;
            // chown clears set-id bits (none here); set the mode explicitly anyway.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
        let ownership = vec![
            check_ownership("root-owned case", &repeated.watched_path, 0)?,
            check_ownership("user-owned case", &repeated_user.watched_path, NOBODY)?,
        ];
        let distinct = (0..sizes.distinct_1m)
            .map(|i| pair(&format!("d{i:05}"), &format!("d{i}"), 1 << 20))
            .collect::<Result<Vec<_>, _>>()?;
        let big = (0..big_total)
            .map(|i| pair(&format!("big{i}"), &format!("big{i}"), 50 << 20))
            .collect::<Result<Vec<_>, _>>()?;
        let storm_hot = (0..32)
            .map(|i| pair(&format!("hot{i}"), &format!("hot{i}"), 0))
            .collect::<Result<Vec<_>, _>>()?;
        // Allow rules for every watched binary, for santad in Lockdown.
        let rules_db = state.path().join("rules.db");
        let mut store = santa_rules::RuleStore::open(&rules_db).map_err(|e| e.to_string())?;
        let mut changes = Vec::new();
        for p in [&repeated, &repeated_user]
            .into_iter()
            .chain(&distinct)
            .chain(&big)
            .chain(&storm_hot)
        {
            let hash = santa_signing::hash_path(&p.watched_path, &Default::default())
                .map_err(|e| e.to_string())?;
            let id = santa_rules::RuleIdentifier::parse(
                santa_rules::RuleType::Binary,
                &hash.sha256.to_string(),
            )
            .map_err(|e| e.to_string())?;
            changes.push(santa_rules::RuleChange::Upsert(santa_rules::Rule::new(
                id,
                santa_rules::RuleState::Allow,
            )));
        }
        store
            .apply(&changes, santa_rules::Cleanup::None)
            .map_err(|e| e.to_string())?;
        // Warm the page cache for every file once (first-exec means first for the listener,
        // not a cold disk: PERF-NOTES).
        for p in [&repeated, &repeated_user]
            .into_iter()
            .chain(&distinct)
            .chain(&big)
            .chain(&storm_hot)
        {
            let _ = spawn_wait(&p.watched);
            let _ = spawn_wait(&p.control);
        }
        Ok(Self {
            watched,
            control,
            state,
            bin_dir,
            repeated,
            repeated_user,
            ownership,
            distinct,
            big,
            storm_hot,
            rules_db,
        })
    }
}
