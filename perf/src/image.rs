//! [`LoopImage`]: a private loop-mounted filesystem image of a chosen type (XFS or ext2) for the
//! benchmarks' watched mount, unmounted and removed when its guard drops (also on a panic or an
//! early return).
//!
//! Why a type of its own: fapolicyd can only be confined by filesystem type (`watch_fs`), so the
//! watched mount must be of a type no mount of the host uses; and santad caches a decision about
//! a file changed moments ago only where the kernel gives multigrain ctimes (Linux 6.13+: ext4,
//! XFS, Btrfs, tmpfs, not ext2), which decides whether a binary written just before its first
//! exec can be decided before it. The host's root is ext4 and its tmpfs mounts are the host's, so
//! the benchmarks that write binaries use XFS; ext2 (as santa_testkit's image) stays available
//! to show the difference.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The largest image accepted: a sparse file, filled only as far as the benchmark writes; the
/// bound stops a typo from filling the disk.
pub const IMAGE_BYTES_MAX: u64 = 8 << 30;
/// XFS refuses filesystems smaller than 300 MB.
pub const XFS_BYTES_MIN: u64 = 300 << 20;

/// A filesystem type a [`LoopImage`] can be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFs {
    /// XFS (`mkfs.xfs`, Debian's xfsprogs): multigrain ctimes on Linux 6.13+.
    Xfs,
    /// ext2 (`mkfs.ext2`), served by the ext4 driver without multigrain ctimes.
    Ext2,
}

impl ImageFs {
    /// The type's name in /proc/mounts (and fapolicyd's `watch_fs`).
    pub fn name(self) -> &'static str {
        match self {
            ImageFs::Xfs => "xfs",
            ImageFs::Ext2 => "ext2",
        }
    }

    /// Parses `xfs` or `ext2`.
    pub fn parse(s: &str) -> Option<ImageFs> {
        match s {
            "xfs" => Some(ImageFs::Xfs),
            "ext2" => Some(ImageFs::Ext2),
            _ => None,
        }
    }
}

/// A loop-mounted image on a fresh temp directory: unmounted, then the directory and the image
/// removed, on drop.
#[derive(Debug)]
pub struct LoopImage {
    dir: PathBuf,
    image: PathBuf,
    fs: ImageFs,
    mounted: bool,
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} {:?}: {} {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

impl LoopImage {
    /// Creates a sparse image of `size_bytes`, makes a filesystem of type `fs` on it and
    /// loop-mounts it (`nosuid,nodev`; util-linux `mount -o loop`, whose loop device is released
    /// at unmount) on a new directory under the temp directory, refusing when another mount of
    /// the same type exists (a listener confined by type would watch it too).
    pub fn new(fs: ImageFs, size_bytes: u64) -> Result<LoopImage, String> {
        let min = if fs == ImageFs::Xfs {
            XFS_BYTES_MIN
        } else {
            1 << 20
        };
        if !(min..=IMAGE_BYTES_MAX).contains(&size_bytes) {
            return Err(format!(
                "image size {size_bytes} outside {min}..={IMAGE_BYTES_MAX}"
            ));
        }
        let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| e.to_string())?;
        if let Some(other) = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(fs.name()))
        {
            return Err(format!(
                "another {} mount exists ({other}): the benchmark needs the only one",
                fs.name()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("santa-perf-{}-", fs.name()))
            .tempdir()
            .map_err(|e| format!("mount point: {e}"))?
            .keep();
        let mut image_name = dir.clone().into_os_string();
        image_name.push(".img");
        // From here on, Drop cleans up whatever exists.
        let mut guard = LoopImage {
            dir,
            image: PathBuf::from(image_name),
            fs,
            mounted: false,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&guard.image)
            .map_err(|e| format!("{}: {e}", guard.image.display()))?;
        file.set_len(size_bytes)
            .map_err(|e| format!("{}: {e}", guard.image.display()))?;
        drop(file);
        match fs {
            ImageFs::Xfs => run(Command::new("mkfs.xfs")
                .args(["-q", "-f"])
                .arg(&guard.image))
            .map_err(|e| format!("{e} (Debian: apt-get install xfsprogs)"))?,
            ImageFs::Ext2 => run(Command::new("mkfs.ext2")
                .args(["-q", "-F"])
                .arg(&guard.image))?,
        }
        run(Command::new("mount")
            .args(["-t", fs.name(), "-o", "loop,nosuid,nodev"])
            .arg(&guard.image)
            .arg(&guard.dir))?;
        guard.mounted = true;
        std::fs::set_permissions(
            &guard.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| e.to_string())?;
        Ok(guard)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `path()/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The filesystem type.
    pub fn fs(&self) -> ImageFs {
        self.fs
    }
}

impl Drop for LoopImage {
    fn drop(&mut self) {
        if self.mounted {
            let Ok(c) = CString::new(self.dir.as_os_str().as_bytes()) else {
                return;
            };
            // SAFETY: `c` is a NUL-terminated path that outlives the calls.
            let ok = unsafe {
                libc::umount2(c.as_ptr(), 0) == 0
                    || (std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY)
                        && libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0)
            };
            if !ok {
                // Never remove a directory the mount may still be on: that would delete the
                // mount's files, not the mount point.
                eprintln!(
                    "santa-perf: could not unmount {}: {}",
                    self.dir.display(),
                    std::io::Error::last_os_error()
                );
                return;
            }
            self.mounted = false;
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_file(&self.image);
    }
}
