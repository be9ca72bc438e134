//! File handles (`name_to_handle_at` / `open_by_handle_at`): a way back to an inode that holds
//! no reference on it, so it never pins the inode or keeps its filesystem from being unmounted.
//!
//! Two users: the kernel allow cache remembers a handle per mark, to take the mark's ignore
//! bits off again at a flush (see `Linux::flush_kernel_cache` for why a whole-group
//! `FAN_MARK_FLUSH` is not safe), and the log names a file exec'd through another mount
//! namespace as santad's own mounts show it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `MAX_HANDLE_SZ` (`include/linux/exportfs.h`): the largest handle any filesystem makes.
const HANDLE_BYTES_MAX: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    bytes: u32,
    kind: i32,
    data: [u8; HANDLE_BYTES_MAX],
}

/// A file handle as the kernel made it: opaque bytes and a type, valid on the filesystem that
/// made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    kind: i32,
    data: Box<[u8]>,
}

impl FileHandle {
    /// The handle of the file `file` is open on. Fails where the filesystem cannot make one
    /// (`EOPNOTSUPP`: some FUSE and network filesystems, procfs).
    pub fn of(file: &File) -> io::Result<FileHandle> {
        let mut raw = RawHandle {
            bytes: HANDLE_BYTES_MAX as u32,
            kind: 0,
            data: [0; HANDLE_BYTES_MAX],
        };
        let mut mount_id: libc::c_int = 0;
        // SAFETY: a valid fd with AT_EMPTY_PATH and an empty path; `raw` has room for the
        // number of bytes its `bytes` says; `mount_id` is writable.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                file.as_raw_fd(),
                c"".as_ptr(),
                (&raw mut raw).cast::<libc::c_void>(),
                &raw mut mount_id,
                libc::AT_EMPTY_PATH,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = (raw.bytes as usize).min(HANDLE_BYTES_MAX);
        Ok(FileHandle {
            kind: raw.kind,
            data: raw.data[..len].into(),
        })
    }

    /// Opens the file again through any directory `dir` of the same filesystem, with `flags`
    /// (`O_PATH` for a name, `O_RDONLY` where an fd that `fdget` accepts is needed). Needs
    /// `CAP_DAC_READ_SEARCH`. `ESTALE` when the inode is gone.
    pub fn open(&self, dir: &File, flags: i32) -> io::Result<OwnedFd> {
        let mut raw = RawHandle {
            bytes: self.data.len() as u32,
            kind: self.kind,
            data: [0; HANDLE_BYTES_MAX],
        };
        raw.data[..self.data.len()].copy_from_slice(&self.data);
        // SAFETY: a valid directory fd and a handle of the length its `bytes` says.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                dir.as_raw_fd(),
                (&raw mut raw).cast::<libc::c_void>(),
                flags | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new fd owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Opens `point` (a mount point) as the directory [`FileHandle::open`] resolves handles
/// through (`open_by_handle_at` refuses an `O_PATH` fd there).
pub fn open_mount_dir(point: &Path) -> io::Result<File> {
    let c = CString::new(point.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; the returned fd is owned by the File below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_handle_opens_the_same_file_again() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("santad-handle-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        // As root (CI, make test) every step must work on the temp dir's filesystem; as
        // another user open_by_handle_at is refused (no CAP_DAC_READ_SEARCH).
        // SAFETY: geteuid takes nothing and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let handle = FileHandle::of(&file);
        let mount = open_mount_dir(&dir).unwrap();
        let again = handle.as_ref().map(|h| h.open(&mount, libc::O_RDONLY));
        let _ = std::fs::remove_file(&path);
        if !root {
            return;
        }
        let again = again
            .expect("name_to_handle_at")
            .expect("open_by_handle_at");
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            file.metadata().unwrap(),
            File::from(again.as_fd().try_clone_to_owned().unwrap())
                .metadata()
                .unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    }
}
