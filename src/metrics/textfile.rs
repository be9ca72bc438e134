//! The node_exporter text file (`MetricExportTextfile`): the Prometheus exposition written to a
//! temporary file in the same directory, `fchmod` 0644, `fsync`, then renamed over the target,
//! so node_exporter (which reads `*.prom` files) sees the old file or the new one, never half
//! of one. The temporary name starts with a dot and ends in `.tmp`, so the collector skips it.
//!
//! Where: the directory is opened from `/` one component at a time with `O_NOFOLLOW`, each one
//! root's and writable by nobody else, the last one at most sticky (`/tmp`-like: nobody can move
//! or replace another's entry) — the control socket's rule (`open_root_dir`). The file is
//! created relative to that directory's fd with `O_EXCL | O_NOFOLLOW` and renamed with
//! `renameat`, which replaces a symlink at the name rather than following it. So a local user
//! can neither redirect the write nor make santad write through a link; only the config (root's)
//! says where the file goes.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The file's mode: node_exporter runs as its own user and must read it.
pub const TEXTFILE_MODE: libc::mode_t = 0o644;

/// Why the file could not be written; the message names the path.
#[derive(Debug, thiserror::Error)]
pub enum TextfileError {
    /// The directory is not one santad writes into (a symlink, not root's, writable by others).
    #[error("{path}: {reason}", path = .path.display())]
    UnsafeDirectory {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A system call failed.
    #[error("{path}: {what}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Which step.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// A distinct temporary name per write, so a stale or planted file of an earlier name is never
/// in the way of the next.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Writes `text` to `path` atomically (see the module comment).
pub fn write_atomically(path: &Path, text: &[u8]) -> Result<(), TextfileError> {
    let io_err = |what, source| TextfileError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(TextfileError::UnsafeDirectory {
            path: path.to_owned(),
            reason: "no directory and file name".into(),
        });
    };
    let dir_fd = crate::control::server::open_root_dir(dir, false, false).map_err(|e| {
        use crate::control::server::ServerError as E;
        match e {
            E::UnsafeDirectory { reason, .. } => TextfileError::UnsafeDirectory {
                path: path.to_owned(),
                reason,
            },
            E::Directory { source, .. } => io_err("opening its directory", source),
            other => io_err("opening its directory", io::Error::other(other.to_string())),
        }
    })?;
    let nul = |_| io_err("file name", io::Error::from(io::ErrorKind::InvalidInput));
    let final_name = CString::new(name.as_bytes()).map_err(nul)?;
    let tmp_name = CString::new(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ))
    .map_err(nul)?;
    // SAFETY: `dir_fd` is an open directory, `tmp_name` is NUL-terminated; the mode argument is
    // what O_CREAT reads.
    let fd = unsafe {
        libc::openat(
            dir_fd.as_raw_fd(),
            tmp_name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            libc::c_uint::from(TEXTFILE_MODE),
        )
    };
    if fd < 0 {
        return Err(io_err(
            "creating the temporary file",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: openat just returned this fd and nothing else owns it.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let unlink_tmp = || {
        // SAFETY: `dir_fd` is open and `tmp_name` NUL-terminated.
        unsafe { libc::unlinkat(dir_fd.as_raw_fd(), tmp_name.as_ptr(), 0) };
    };
    let written = (|| {
        // The mode regardless of santad's umask.
        // SAFETY: `file` owns an open fd.
        if unsafe { libc::fchmod(file.as_raw_fd(), TEXTFILE_MODE) } != 0 {
            return Err(io_err("fchmod", io::Error::last_os_error()));
        }
        file.write_all(text).map_err(|e| io_err("write", e))?;
        file.sync_all().map_err(|e| io_err("fsync", e))
    })();
    drop(file);
    if let Err(e) = written {
        unlink_tmp();
        return Err(e);
    }
    // SAFETY: both names are NUL-terminated and relative to the same open directory.
    let rc = unsafe {
        libc::renameat(
            dir_fd.as_raw_fd(),
            tmp_name.as_ptr(),
            dir_fd.as_raw_fd(),
            final_name.as_ptr(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        unlink_tmp();
        return Err(io_err("rename", e));
    }
    // The rename itself durable too (best effort: a failure here loses nothing written).
    // SAFETY: `dir_fd` is an open directory.
    unsafe { libc::fsync(dir_fd.as_raw_fd()) };
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    /// A directory only root (this test's user) can write, under the system temp dir (sticky).
    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn the_file_is_replaced_whole_with_mode_0644_and_no_temporary_is_left() {
        let dir = private_dir();
        let path = dir.path().join("santa.prom");
        // SAFETY: umask only changes this process's creation mask; restored below.
        let old = unsafe { libc::umask(0o077) };
        write_atomically(&path, b"a 1\n").unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        assert_eq!(std::fs::read(&path).unwrap(), b"a 1\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644, "whatever the umask");
        assert_eq!(meta.uid(), euid());
        let ino = meta.ino();
        write_atomically(&path, b"b 2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b 2\n");
        assert_ne!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "a new file renamed over the old one, never rewritten in place"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["santa.prom"], "no temporary file left behind");
    }

    #[test]
    fn a_symlink_at_the_name_is_replaced_not_followed() {
        let dir = private_dir();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("santa.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, b"x 1\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn a_directory_others_can_write_or_reached_through_a_symlink_is_refused() {
        if euid() != 0 {
            eprintln!("skipped: the directory checks want root-owned directories");
            return;
        }
        let dir = private_dir();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inner = open.join("inner");
        std::fs::create_dir(&inner).unwrap();
        let e = write_atomically(&inner.join("santa.prom"), b"x").unwrap_err();
        assert!(
            e.to_string().contains("writable by users other than root"),
            "{e}"
        );
        let link = dir.path().join("link");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = write_atomically(&link.join("santa.prom"), b"x").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
        let e = write_atomically(&dir.path().join("missing/santa.prom"), b"x").unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
    }
}
