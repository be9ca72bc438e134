//! [`PrivateMount`] and its options (see the crate's docs): Linux's `mount(2)`/`umount2(2)`.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Largest tmpfs size accepted: the exec-storm harness holds 1,000 distinct 1 MiB binaries plus
/// two of 50 MiB and 10,000 small scripts (~1.3 GiB); 4 GiB leaves room for that and still stops
/// a typo from letting a benchmark fill the host's memory (24 GiB here).
pub const TMPFS_BYTES_MAX: u64 = 4 << 30;
/// Default tmpfs size: room for a few dozen copies of a large static binary.
pub const TMPFS_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest ext2 image: mkfs.ext2 needs some room for its metadata.
pub const EXT2_IMAGE_BYTES_MIN: u64 = 1 << 20;
/// Largest ext2 image, for the same reason as [`TMPFS_BYTES_MAX`] (it is a sparse file on disk,
/// filled as far as the harness writes).
pub const EXT2_IMAGE_BYTES_MAX: u64 = 4 << 30;

/// What can go wrong setting up a private mount.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Creating the mount-point directory failed.
    #[error("creating mount point {}: {source}", path.display())]
    MakeDir {
        /// The template or path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `mount(2)` failed (`EPERM`: not root).
    #[error("mount on {}: {source}", path.display())]
    Mount {
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A helper program (`mkfs.ext2`, `mount`) could not be run or failed.
    #[error("{command}: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and stderr, or the spawn error.
        detail: String,
    },
    /// Creating or sizing the image file failed.
    #[error("image file {}: {source}", path.display())]
    Image {
        /// The image path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A size outside the documented bounds.
    #[error("size {bytes} outside {min}..={max} bytes")]
    Size {
        /// The size asked for.
        bytes: u64,
        /// The allowed range.
        min: u64,
        /// The allowed range.
        max: u64,
    },
}

/// Options for a private tmpfs.
#[derive(Debug, Clone, Copy)]
pub struct TmpfsOptions {
    /// Size limit in bytes (1 ..= [`TMPFS_BYTES_MAX`]).
    pub size_bytes: u64,
    /// Allow executing files from it (no `MS_NOEXEC`): needed for exec tests.
    pub exec: bool,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            size_bytes: TMPFS_BYTES_DEFAULT,
            exec: true,
        }
    }
}

/// A mount owned by this value: unmounted and removed on drop.
#[derive(Debug)]
pub struct PrivateMount {
    dir: PathBuf,
    image: Option<PathBuf>,
    mounted: bool,
}

impl PrivateMount {
    /// Mounts a fresh tmpfs (`nosuid,nodev`, mode 0755) on a new temp directory.
    pub fn tmpfs(options: TmpfsOptions) -> Result<PrivateMount, MountError> {
        if options.size_bytes == 0 || options.size_bytes > TMPFS_BYTES_MAX {
            return Err(MountError::Size {
                bytes: options.size_bytes,
                min: 1,
                max: TMPFS_BYTES_MAX,
            });
        }
        let mut guard = PrivateMount {
            dir: make_temp_dir("santad-tmpfs")?,
            image: None,
            mounted: false,
        };
        let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
        if !options.exec {
            flags |= libc::MS_NOEXEC;
        }
        let data = format!("size={},mode=0755", options.size_bytes);
        mount_syscall("tmpfs", &guard.dir, "tmpfs", flags, &data)?;
        guard.mounted = true;
        Ok(guard)
    }

    /// Creates a sparse image of `size_bytes`, formats it ext2 (`mkfs.ext2`) and loop-mounts it
    /// (util-linux `mount -o loop`, whose loop device is released automatically at unmount).
    pub fn ext2_image(size_bytes: u64) -> Result<PrivateMount, MountError> {
        if !(EXT2_IMAGE_BYTES_MIN..=EXT2_IMAGE_BYTES_MAX).contains(&size_bytes) {
            return Err(MountError::Size {
                bytes: size_bytes,
                min: EXT2_IMAGE_BYTES_MIN,
                max: EXT2_IMAGE_BYTES_MAX,
            });
        }
        let dir = make_temp_dir("santad-ext2")?;
        let mut image_name = dir.clone().into_os_string();
        image_name.push(".img");
        let image = PathBuf::from(image_name);
        // From here on, Drop cleans up whatever exists.
        let mut guard = PrivateMount {
            dir,
            image: Some(image.clone()),
            mounted: false,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&image)
            .map_err(|source| MountError::Image {
                path: image.clone(),
                source,
            })?;
        file.set_len(size_bytes)
            .map_err(|source| MountError::Image {
                path: image.clone(),
                source,
            })?;
        drop(file);
        run(Command::new("mkfs.ext2").arg("-q").arg("-F").arg(&image))?;
        run(Command::new("mount")
            .args(["-t", "ext2", "-o", "loop,nosuid,nodev"])
            .arg(&image)
            .arg(&guard.dir))?;
        guard.mounted = true;
        // A fresh ext2 root is 0755 root-owned already; nothing else to set.
        Ok(guard)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `path()/name`, for files on the mount.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Unmounts and removes now, reporting what failed (Drop does the same silently).
    pub fn close(mut self) -> Result<(), MountError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<(), MountError> {
        let mut first_error = None;
        if self.mounted {
            match unmount(&self.dir) {
                Ok(()) => self.mounted = false,
                Err(e) => first_error = Some(e),
            }
        }
        // Never remove a directory that may still have the mount on it: that would delete the
        // mount's files, not the mount point.
        if !self.mounted {
            if let Err(source) = std::fs::remove_dir(&self.dir)
                && source.kind() != io::ErrorKind::NotFound
            {
                first_error.get_or_insert(MountError::MakeDir {
                    path: self.dir.clone(),
                    source,
                });
            }
            if let Some(image) = self.image.take()
                && let Err(source) = std::fs::remove_file(&image)
                && source.kind() != io::ErrorKind::NotFound
            {
                first_error.get_or_insert(MountError::Image {
                    path: image,
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("santad: private mount cleanup: {e}");
        }
    }
}

fn unmount(dir: &Path) -> Result<(), MountError> {
    let c_dir = path_cstring(dir)?;
    // SAFETY: c_dir is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c_dir.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let first = io::Error::last_os_error();
    if first.raw_os_error() == Some(libc::EBUSY) {
        // Busy (an fd or cwd still on it): detach now, the kernel frees it when the last user
        // goes. The directory is then empty and can be removed.
        // SAFETY: as above.
        if unsafe { libc::umount2(c_dir.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
    }
    Err(MountError::Mount {
        path: dir.to_path_buf(),
        source: first,
    })
}

fn path_cstring(path: &Path) -> Result<CString, MountError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| MountError::MakeDir {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"),
    })
}

fn mount_syscall(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), MountError> {
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| MountError::Mount {
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "argument contains NUL"),
        })
    };
    let (c_source, c_fstype, c_data) = (to_c(source)?, to_c(fstype)?, to_c(data)?);
    let c_target = path_cstring(target)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call; tmpfs reads
    // `data` as a string of options.
    let rc = unsafe {
        libc::mount(
            c_source.as_ptr(),
            c_target.as_ptr(),
            c_fstype.as_ptr(),
            flags,
            c_data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(MountError::Mount {
            path: target.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn make_temp_dir(prefix: &str) -> Result<PathBuf, MountError> {
    let mut template = std::env::temp_dir()
        .join(format!("{prefix}-XXXXXX"))
        .into_os_string()
        .into_vec();
    let shown = PathBuf::from(OsString::from_vec(template.clone()));
    template.push(0);
    // SAFETY: template is a writable NUL-terminated buffer ending in "XXXXXX", as mkdtemp needs;
    // mkdtemp rewrites those six bytes in place and returns a pointer into the same buffer.
    let rc = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if rc.is_null() {
        return Err(MountError::MakeDir {
            path: shown,
            source: io::Error::last_os_error(),
        });
    }
    template.pop();
    Ok(PathBuf::from(OsString::from_vec(template)))
}

fn run(command: &mut Command) -> Result<(), MountError> {
    let shown = format!("{command:?}");
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(MountError::Command {
            command: shown,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }),
        Err(e) => Err(MountError::Command {
            command: shown,
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the mount table lists `dir` as a mount point.
    pub(crate) fn is_mounted(dir: &Path) -> bool {
        let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dir = dir.to_string_lossy();
        table.lines().any(|l| l.split(' ').nth(4) == Some(&*dir))
    }

    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "this test mounts a filesystem and must run as root (CI runs as root)"
        );
    }

    #[test]
    fn tmpfs_is_mounted_then_gone_after_drop() {
        require_root();
        let m = PrivateMount::tmpfs(TmpfsOptions::default()).expect("tmpfs");
        let dir = m.path().to_path_buf();
        assert!(is_mounted(&dir));
        std::fs::write(m.join("f"), b"x").expect("write");
        drop(m);
        assert!(!is_mounted(&dir));
        assert!(!dir.exists(), "mount point directory removed");
    }

    #[test]
    fn tmpfs_cleaned_up_on_panic() {
        require_root();
        let dir = std::sync::Mutex::new(PathBuf::new());
        let result = std::panic::catch_unwind(|| {
            let m = PrivateMount::tmpfs(TmpfsOptions::default()).expect("tmpfs");
            *dir.lock().expect("lock") = m.path().to_path_buf();
            panic!("test failure inside the guard's scope");
        });
        assert!(result.is_err());
        let dir = dir.lock().expect("lock").clone();
        assert!(!is_mounted(&dir));
        assert!(!dir.exists());
    }

    #[test]
    fn busy_mount_is_detached_lazily() {
        require_root();
        let m = PrivateMount::tmpfs(TmpfsOptions::default()).expect("tmpfs");
        let dir = m.path().to_path_buf();
        let held = std::fs::File::create(m.join("held")).expect("create");
        m.close()
            .expect("close with an open file falls back to a lazy detach");
        assert!(!is_mounted(&dir));
        assert!(!dir.exists());
        drop(held);
    }

    #[test]
    fn noexec_option_refuses_exec() {
        require_root();
        let m = PrivateMount::tmpfs(TmpfsOptions {
            exec: false,
            ..TmpfsOptions::default()
        })
        .expect("tmpfs");
        let bin = m.join("true");
        std::fs::copy("/bin/true", &bin).expect("copy");
        let err = Command::new(&bin).status().expect_err("noexec mount");
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn ext2_image_mounts_and_cleans_up() {
        require_root();
        let m = PrivateMount::ext2_image(8 << 20).expect("ext2 image");
        let dir = m.path().to_path_buf();
        let image = m.image.clone().expect("image path");
        let fstype = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(&*dir.to_string_lossy()))
            .and_then(|l| {
                l.split(" - ")
                    .nth(1)
                    .and_then(|t| t.split(' ').next())
                    .map(str::to_owned)
            });
        assert_eq!(fstype.as_deref(), Some("ext2"));
        drop(m);
        assert!(!is_mounted(&dir));
        assert!(!dir.exists() && !image.exists());
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(matches!(
            PrivateMount::tmpfs(TmpfsOptions {
                size_bytes: TMPFS_BYTES_MAX + 1,
                exec: true
            }),
            Err(MountError::Size { .. })
        ));
        assert!(matches!(
            PrivateMount::ext2_image(4096),
            Err(MountError::Size { .. })
        ));
    }
}
