//! The socket on disk: its directory walked with `O_NOFOLLOW`, the bind under a private umask.

use super::*;

/// Why the control socket could not be set up.
#[derive(Debug)]
pub enum ServerError {
    /// The socket's directory could not be created or opened.
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The socket's directory, or one above it, is a symlink, not a directory, not root's,
    /// or writable by others: whoever can change it could redirect the socket.
    UnsafeDirectory {
        /// The socket's directory.
        path: PathBuf,
        /// What is wrong, naming the path at fault.
        reason: String,
    },
    /// Something that is not a socket is in the way (a symlink included: it is neither
    /// followed nor removed); santad does not delete it.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another santad answers on this socket.
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding or threads failed.
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory { path, source } => {
                write!(f, "control socket directory {}: {source}", path.display())
            }
            Self::UnsafeDirectory { path, reason } => write!(
                f,
                "control socket directory {}: refused: {reason}",
                path.display()
            ),
            Self::NotASocket { path } => write!(
                f,
                "control socket {}: something that is not a socket is in the way",
                path.display()
            ),
            Self::InUse { path } => write!(
                f,
                "control socket {}: another santad is answering on it",
                path.display()
            ),
            Self::Io { path, source } => {
                write!(f, "control socket {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// `fstat`.
pub(super) fn fstat_fd(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call; `st` is a writable `stat`.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: what is at `name` itself; `None` if nothing.
pub(super) fn stat_at(dir: RawFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open for the duration of the call, `name` is NUL-terminated, `st` is
    // a writable `stat`.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(st))
}

/// The file's device and inode as the engine's key type.
#[allow(clippy::unnecessary_cast)] // dev_t is u64 on Linux, i32 on macOS
pub(super) fn file_key(st: &libc::stat) -> FileKey {
    FileKey {
        dev: st.st_dev as u64,
        ino: st.st_ino,
    }
}

pub(super) fn file_type(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// Opens the directory `name` in `dir` without following a symlink (one fails with `ELOOP`).
pub(super) fn open_dir_at(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is open (or AT_FDCWD) for the duration of the call and `name` is
    // NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether only root (or santad's own user) can change what `st`, a directory on the
/// socket's path, holds. Directories above the socket's may be sticky and writable by all
/// (`/tmp`): nobody can then move or replace another's entry. The socket's own directory may
/// not: anyone could plant a socket or symlink under the name before santad binds it.
pub(super) fn check_dir(
    path: &Path,
    st: &libc::stat,
    socket_dir: bool,
    euid: u32,
) -> Result<(), String> {
    if file_type(st) != libc::S_IFDIR {
        return Err(format!("{} is not a directory", path.display()));
    }
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(format!(
            "{} belongs to uid {}, not to root",
            path.display(),
            st.st_uid
        ));
    }
    let writable_by_others = st.st_mode & 0o022 != 0;
    let sticky = st.st_mode & libc::S_ISVTX != 0;
    if writable_by_others && (socket_dir || !sticky) {
        return Err(format!(
            "{} is writable by users other than root (mode {:o})",
            path.display(),
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// Opens the socket's directory `dir` (absolute), walking from `/` one component at a time
/// with `O_NOFOLLOW`, creating missing components (mode [`SOCKET_DIR_MODE`] under the
/// caller's umask) and checking each with [`check_dir`]. No symlink is followed anywhere on
/// the way: give the real path.
pub(super) fn open_socket_dir(dir: &Path) -> Result<OwnedFd, ServerError> {
    open_root_dir(dir, true, true)
}

/// Opens `dir` (absolute) as [`open_socket_dir`] does, walking from `/` with `O_NOFOLLOW` and
/// checking each component with [`check_dir`]: missing components are created only with
/// `create`; the last directory may be sticky and writable by all (`/tmp`) unless
/// `strict_last`. Also what santad's metrics text file is written through.
pub(crate) fn open_root_dir(
    dir: &Path,
    create: bool,
    strict_last: bool,
) -> Result<OwnedFd, ServerError> {
    let unsafe_dir = |reason: String| ServerError::UnsafeDirectory {
        path: dir.to_owned(),
        reason,
    };
    let dir_err = |source| ServerError::Directory {
        path: dir.to_owned(),
        source,
    };
    if !dir.is_absolute() {
        return Err(unsafe_dir("not an absolute path".into()));
    }
    let mut names = Vec::new();
    for c in dir.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(unsafe_dir("a `..` in the path".into()));
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let root = CString::from(c"/");
    let mut fd = open_dir_at(libc::AT_FDCWD, &root).map_err(dir_err)?;
    let mut walked = PathBuf::from("/");
    check_dir(
        &walked,
        &fstat_fd(fd.as_raw_fd()).map_err(dir_err)?,
        names.is_empty() && strict_last,
        euid,
    )
    .map_err(unsafe_dir)?;
    for (i, name) in names.iter().enumerate() {
        walked.push(name);
        let cname = CString::new(name.as_bytes())
            .map_err(|_| unsafe_dir("a NUL byte in the path".into()))?;
        let next = match open_dir_at(fd.as_raw_fd(), &cname) {
            Ok(next) => next,
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: `fd` is an open directory and `cname` is NUL-terminated.
                let rc =
                    unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), SOCKET_DIR_MODE as _) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(dir_err(e));
                    }
                }
                open_dir_at(fd.as_raw_fd(), &cname).map_err(dir_err)?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let symlink = stat_at(fd.as_raw_fd(), &cname)
                    .ok()
                    .flatten()
                    .is_some_and(|st| file_type(&st) == libc::S_IFLNK);
                return Err(unsafe_dir(if symlink {
                    format!("{} is a symbolic link", walked.display())
                } else {
                    format!("{} is not a directory", walked.display())
                }));
            }
            Err(e) => return Err(dir_err(e)),
        };
        let st = fstat_fd(next.as_raw_fd()).map_err(dir_err)?;
        check_dir(&walked, &st, i + 1 == names.len() && strict_last, euid).map_err(unsafe_dir)?;
        fd = next;
    }
    Ok(fd)
}

/// A bound socket and where it is.
#[derive(Debug)]
pub(super) struct Bound {
    pub(super) listener: UnixListener,
    pub(super) entry: SocketEntry,
}

/// Where a bound socket is: its directory, its name there and its inode, so that shutdown
/// removes only this socket, by name in that directory, never through a path.
#[derive(Debug)]
pub(super) struct SocketEntry {
    pub(super) dir: OwnedFd,
    pub(super) name: CString,
    pub(super) file: FileKey,
}

impl SocketEntry {
    /// Removes the socket if the name is still it (another santad may have replaced it).
    pub(super) fn remove_if_ours(&self) {
        let ours = stat_at(self.dir.as_raw_fd(), &self.name)
            .ok()
            .flatten()
            .is_some_and(|st| file_type(&st) == libc::S_IFSOCK && file_key(&st) == self.file);
        if ours {
            // SAFETY: `dir` is an open directory fd and `name` is NUL-terminated.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
        }
    }
}

/// Binds the socket at `path`: see [`bind_in_this_thread`], run on a thread of its own so
/// its umask and working directory never reach the rest of santad.
pub(super) fn bind(path: &Path) -> Result<Bound, ServerError> {
    let owned = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("santad-control-bind".into())
        .spawn(move || bind_in_this_thread(&owned))
        .map_err(|source| ServerError::Io {
            path: path.to_owned(),
            source,
        })?;
    thread.join().unwrap_or_else(|_| {
        Err(ServerError::Io {
            path: path.to_owned(),
            source: io::Error::other("the binding thread panicked"),
        })
    })
}

/// Binds the socket at `path` with mode [`SOCKET_MODE`]. A stale socket is removed with
/// `unlinkat` in its directory; anything else at the name (a symlink included) is refused,
/// untouched. The directory comes from [`open_socket_dir`], so only root can change any
/// directory on the way to the socket.
///
/// On Linux, with no chmod: this thread stops sharing its filesystem attributes
/// (`unshare(CLONE_FS)`: umask, cwd), makes the directory its cwd, and binds the bare name under
/// umask `0o777 & !SOCKET_MODE`, so the kernel creates the socket with the mode and nothing
/// later goes through a path. Call it only on a thread that ends afterwards (its cwd and umask
/// stay changed).
///
/// On macOS a thread has no umask or cwd of its own (changing them would reach every thread),
/// so the socket is bound by its full path, which only root can redirect, and given its mode
/// with `fchmodat` in the directory right after; until then it has the process umask's mode,
/// which lets fewer users connect, never more.
pub(super) fn bind_in_this_thread(path: &Path) -> Result<Bound, ServerError> {
    let io_err = |source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ServerError::UnsafeDirectory {
            path: path.to_owned(),
            reason: "the socket path has no directory or no file name".into(),
        });
    };
    let cname = CString::new(name.as_bytes()).map_err(|_| ServerError::UnsafeDirectory {
        path: path.to_owned(),
        reason: "a NUL byte in the path".into(),
    })?;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: unshare(CLONE_FS) gives this thread its own copy of the root, cwd and umask;
        // it touches no memory of ours and nothing else in the process.
        if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        // SAFETY: umask has no preconditions; after the unshare it is this thread's alone.
        unsafe { libc::umask(0o022) };
    }
    let dir = open_socket_dir(dir_path)?;
    #[cfg(target_os = "linux")]
    let here = {
        // SAFETY: `dir` is an open directory fd; the cwd changed is this thread's alone.
        if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        PathBuf::from(std::ffi::OsStr::from_bytes(cname.as_bytes()))
    };
    #[cfg(not(target_os = "linux"))]
    let here = dir_path.join(name);
    match stat_at(dir.as_raw_fd(), &cname).map_err(io_err)? {
        None => {}
        Some(st) if file_type(&st) == libc::S_IFSOCK => {
            if UnixStream::connect(&here).is_ok() {
                return Err(ServerError::InUse {
                    path: path.to_owned(),
                });
            }
            // A stale socket from a santad that died: the name in our directory, never
            // through a link.
            // SAFETY: `dir` is an open directory fd and `cname` is NUL-terminated.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(io_err(e));
                }
            }
        }
        Some(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            });
        }
    }
    #[cfg(target_os = "linux")]
    // SAFETY: as above; the kernel creates the socket with 0o777 & !umask = SOCKET_MODE.
    unsafe {
        libc::umask((0o777 & !SOCKET_MODE) as libc::mode_t)
    };
    let listener = UnixListener::bind(&here).map_err(io_err)?;
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: `dir` is an open directory fd and `cname` is NUL-terminated. The name is the
        // socket just bound: only root can replace an entry of this directory.
        let rc = unsafe {
            libc::fchmodat(
                dir.as_raw_fd(),
                cname.as_ptr(),
                SOCKET_MODE as libc::mode_t,
                0,
            )
        };
        if rc != 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
    }
    let st = stat_at(dir.as_raw_fd(), &cname)
        .map_err(io_err)?
        .filter(|st| file_type(st) == libc::S_IFSOCK)
        .ok_or_else(|| io_err(io::Error::other("the socket vanished after bind")))?;
    if st.st_mode & 0o7777 != SOCKET_MODE as libc::mode_t {
        // A default ACL on the directory overrides the umask; the directory is root's.
        log::warn!(
            "control socket {}: mode {:o}, not {SOCKET_MODE:o} (a default ACL on its directory?)",
            path.display(),
            st.st_mode & 0o7777
        );
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Bound {
        listener,
        entry: SocketEntry {
            dir,
            name: cname,
            file: file_key(&st),
        },
    })
}
