//! Reading a file's bytes and SHA-256 with a stamp that tells whether it changed meanwhile.
//!
//! A file is taken either from an fd the kernel already opened (santad's hot path: the fanotify
//! or Endpoint Security event carries one) or from a path (santactl, bundles). Its `fstat` stamp
//! `(dev, ino, ctime, size)` is taken first and taken again once the bytes were consumed; a
//! difference is reported as [`FileHash::changed`] so the caller neither trusts nor caches a
//! verdict about bytes that were being rewritten.
//!
//! Large regular files are mapped (one `mmap`, no copy); small, empty or unmappable ones are read
//! with `pread`, which costs less than setting up and tearing down a mapping.

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::ops::Deref;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::ids::{Sha1, Sha256};

/// Default for [`HashLimits::hash_bytes_max`]: Santa's own guard against hashing huge files on
/// the exec path (the executing process waits). 1 GiB hashes in well under a second at SHA-NI
/// speed from the page cache; anything larger gets the default decision, explained.
pub const HASH_BYTES_MAX_DEFAULT: u64 = 1 << 30;

/// Default for [`HashLimits::mmap_threshold_bytes`]: below this size `pread` into a buffer is
/// cheaper than `mmap` + page faults + `munmap`. Measured with `hash-bench` (perf/results/hash.md)
/// on these VMs: `pread` wins by a fixed ~7 µs up to 1 MiB, `mmap` wins from 2 MiB on; a file of
/// exactly 1 MiB (+ a few bytes) hashed ~5 % faster read than mapped (populate or not), so the
/// boundary sits at 2 MiB. A higher threshold also keeps most files out of the SIGBUS window
/// described in `map`.
pub const MMAP_THRESHOLD_BYTES_DEFAULT: u64 = 2 << 20;

/// ring digests slices of any length; feeding it 4 MiB at a time keeps the page-fault stream of
/// the mapping and the hashing interleaved without per-call overhead showing up.
const HASH_CHUNK_BYTES: usize = 4 << 20;

/// Bounds for reading and hashing one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashLimits {
    /// Files larger than this are refused with [`HashError::TooLarge`] (santad's `MaxHashBytes`).
    pub hash_bytes_max: u64,
    /// Files smaller than this are read with `pread` instead of mapped.
    pub mmap_threshold_bytes: u64,
}

impl Default for HashLimits {
    fn default() -> Self {
        Self {
            hash_bytes_max: HASH_BYTES_MAX_DEFAULT,
            mmap_threshold_bytes: MMAP_THRESHOLD_BYTES_DEFAULT,
        }
    }
}

/// The identity of a file's inode and content version, from `fstat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct FileStamp {
    /// Device of the filesystem holding the inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Status-change time in nanoseconds since the epoch: any write or metadata change moves it.
    pub ctime_ns: i64,
    /// Size in bytes.
    pub size_bytes: u64,
}

impl FileStamp {
    /// The stamp of `meta`.
    pub fn from_metadata(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            size_bytes: meta.size(),
        }
    }

    /// `fstat` of an open file.
    pub fn of_file(file: &File) -> Result<Self, HashError> {
        file.metadata()
            .map(|m| Self::from_metadata(&m))
            .map_err(|source| HashError::Stat { source })
    }
}

/// What kind of inode a refused file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A symbolic link (only seen through `symlink_metadata`).
    Symlink,
    /// Anything else.
    Other,
}

impl NodeKind {
    fn of(meta: &Metadata) -> Self {
        let t = meta.file_type();
        if t.is_dir() {
            Self::Directory
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else if t.is_char_device() {
            Self::CharDevice
        } else if t.is_block_device() {
            Self::BlockDevice
        } else if t.is_symlink() {
            Self::Symlink
        } else {
            Self::Other
        }
    }
}

/// Why a file could not be read or hashed.
#[derive(Debug)]
pub enum HashError {
    /// The path could not be opened.
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `fstat` on the open file failed.
    Stat {
        /// The OS error.
        source: io::Error,
    },
    /// Only regular files are hashed: a FIFO or device could block or never end.
    NotRegular {
        /// What the inode is.
        kind: NodeKind,
    },
    /// The file is larger than [`HashLimits::hash_bytes_max`].
    TooLarge {
        /// The file's size.
        size_bytes: u64,
        /// The limit in force.
        limit_bytes: u64,
    },
    /// Mapping the file failed (and it was too large to fall back to reading).
    Map {
        /// The OS error.
        source: io::Error,
    },
    /// Reading the file failed.
    Read {
        /// The OS error.
        source: io::Error,
    },
    /// An error about the file at `path`.
    AtPath {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        source: Box<HashError>,
    },
}

impl HashError {
    /// Adds `path` as context (once).
    pub(crate) fn at(self, path: &Path) -> Self {
        match self {
            e @ (Self::Open { .. } | Self::AtPath { .. }) => e,
            e => Self::AtPath {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
        }
    }
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { path, source } => write!(f, "cannot open {}: {source}", path.display()),
            Self::Stat { source } => write!(f, "cannot fstat: {source}"),
            Self::NotRegular { kind } => write!(f, "not a regular file ({kind:?})"),
            Self::TooLarge {
                size_bytes,
                limit_bytes,
            } => write!(
                f,
                "file of {size_bytes} bytes exceeds the hashing limit of {limit_bytes} bytes"
            ),
            Self::Map { source } => write!(f, "cannot map: {source}"),
            Self::Read { source } => write!(f, "cannot read: {source}"),
            Self::AtPath { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for HashError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { source, .. }
            | Self::Stat { source }
            | Self::Map { source }
            | Self::Read { source } => Some(source),
            Self::AtPath { source, .. } => Some(source.as_ref()),
            Self::NotRegular { .. } | Self::TooLarge { .. } => None,
        }
    }
}

/// How the bytes were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ReadMethod {
    /// Memory-mapped.
    Mmap,
    /// Read with `pread` into a buffer (small, empty or unmappable files).
    Read,
}

/// The SHA-256 of a file and whether it changed while it was hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FileHash {
    /// SHA-256 of the bytes that were read.
    pub sha256: Sha256,
    /// The stamp taken before reading.
    pub stamp: FileStamp,
    /// The stamp taken after reading differed (or fewer bytes than the size were read): the
    /// hash may describe no version of the file that ever existed whole. Do not cache it.
    pub changed: bool,
    /// How the bytes were read.
    pub method: ReadMethod,
}

/// The bytes of one file, mapped or read, with the stamp taken before they were read.
///
/// Parsing and hashing share one `FileBytes`, so a file is read once per decision.
pub struct FileBytes {
    data: Data,
    stamp: FileStamp,
    short_read: bool,
}

enum Data {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("method", &self.method())
            .field("len", &self.len())
            .field("stamp", &self.stamp)
            .finish()
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.data {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }
}

impl FileBytes {
    /// Maps or reads `file` under `limits`, refusing anything but a regular file.
    pub fn load(file: &File, limits: &HashLimits) -> Result<Self, HashError> {
        Self::load_reusing(file, limits, Vec::new())
    }

    /// [`Self::load`], reading small files into `buffer` (cleared first) instead of a fresh
    /// allocation. A santad worker keeps one buffer and gets it back with
    /// [`Self::into_buffer`], so once warm a small file costs no allocation.
    pub fn load_reusing(
        file: &File,
        limits: &HashLimits,
        buffer: Vec<u8>,
    ) -> Result<Self, HashError> {
        let meta = file
            .metadata()
            .map_err(|source| HashError::Stat { source })?;
        if !meta.file_type().is_file() {
            return Err(HashError::NotRegular {
                kind: NodeKind::of(&meta),
            });
        }
        let stamp = FileStamp::from_metadata(&meta);
        if stamp.size_bytes > limits.hash_bytes_max {
            return Err(HashError::TooLarge {
                size_bytes: stamp.size_bytes,
                limit_bytes: limits.hash_bytes_max,
            });
        }
        if stamp.size_bytes >= limits.mmap_threshold_bytes.max(1) {
            // Some filesystems (procfs-like, some FUSE) cannot map: those are read instead.
            if let Ok(m) = map::map_readonly(file, stamp.size_bytes) {
                // Sequential read-ahead: every page is touched once, in order.
                let _ = m.advise(memmap2::Advice::Sequential);
                return Ok(Self {
                    data: Data::Mapped(m),
                    stamp,
                    short_read: false,
                });
            }
        }
        let (buf, short_read) = read_all(file, stamp.size_bytes, limits.hash_bytes_max, buffer)?;
        Ok(Self {
            data: Data::Owned(buf),
            stamp,
            short_read,
        })
    }

    /// The read buffer back, for the next [`Self::load_reusing`] (empty if the file was mapped).
    pub fn into_buffer(self) -> Vec<u8> {
        match self.data {
            Data::Owned(v) => v,
            Data::Mapped(_) => Vec::new(),
        }
    }

    /// Opens `path` (following symlinks, like exec) and loads it.
    pub fn open(path: &Path, limits: &HashLimits) -> Result<Self, HashError> {
        let file = File::open(path).map_err(|source| HashError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::load(&file, limits).map_err(|e| e.at(path))
    }

    /// The stamp taken before the bytes were read.
    pub fn stamp(&self) -> FileStamp {
        self.stamp
    }

    /// How the bytes were obtained.
    pub fn method(&self) -> ReadMethod {
        match self.data {
            Data::Mapped(_) => ReadMethod::Mmap,
            Data::Owned(_) => ReadMethod::Read,
        }
    }

    /// SHA-256 of the bytes.
    pub fn sha256(&self) -> Sha256 {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for chunk in self.chunks(HASH_CHUNK_BYTES) {
            ctx.update(chunk);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Sha256(out)
    }

    /// SHA-1 of the bytes (for `santactl fileinfo`; not on the decision path).
    pub fn sha1(&self) -> Sha1 {
        Sha1::digest(self)
    }

    /// Whether `file` still has the stamp taken before reading, and all of it was read.
    pub fn unchanged(&self, file: &File) -> Result<bool, HashError> {
        Ok(!self.short_read && FileStamp::of_file(file)? == self.stamp)
    }
}

/// Reads up to `size_bytes` with `pread` from offset 0 (the fd's offset is left alone: it may be
/// shared with the process being executed). Returns the bytes and whether the file ended early
/// or grew (both mean it changed underneath).
fn read_all(
    file: &File,
    size_bytes: u64,
    limit_bytes: u64,
    mut buf: Vec<u8>,
) -> Result<(Vec<u8>, bool), HashError> {
    let want = usize::try_from(size_bytes).map_err(|_| HashError::TooLarge {
        size_bytes,
        limit_bytes,
    })?;
    buf.clear();
    buf.resize(want, 0);
    let mut filled = 0usize;
    while filled < want {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(HashError::Read { source }),
        }
    }
    let mut grew = false;
    if filled == want {
        let mut probe = [0u8; 1];
        loop {
            match file.read_at(&mut probe, filled as u64) {
                Ok(n) => {
                    grew = n > 0;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(HashError::Read { source }),
            }
        }
    }
    let short = filled < want;
    buf.truncate(filled);
    Ok((buf, short || grew))
}

/// SHA-256 of an open file (santad's hot path: the fd comes from the kernel event).
///
/// Non-regular files and files over `limits.hash_bytes_max` are refused with a reason.
pub fn hash_file(file: &File, limits: &HashLimits) -> Result<FileHash, HashError> {
    let bytes = FileBytes::load(file, limits)?;
    let sha256 = bytes.sha256();
    let changed = !bytes.unchanged(file)?;
    Ok(FileHash {
        sha256,
        stamp: bytes.stamp,
        changed,
        method: bytes.method(),
    })
}

/// [`hash_file`] for a borrowed fd (one `dup`, so the caller keeps its fd). Callers that own
/// the fd (fanotify hands santad an `OwnedFd`) should convert it with `File::from` and call
/// [`hash_file`] instead, which saves the `dup`.
pub fn hash_fd(fd: BorrowedFd<'_>, limits: &HashLimits) -> Result<FileHash, HashError> {
    let owned = fd
        .try_clone_to_owned()
        .map_err(|source| HashError::Stat { source })?;
    hash_file(&File::from(owned), limits)
}

/// SHA-256 of the file at `path` (symlinks followed, as exec does).
pub fn hash_path(path: &Path, limits: &HashLimits) -> Result<FileHash, HashError> {
    let file = File::open(path).map_err(|source| HashError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    hash_file(&file, limits).map_err(|e| e.at(path))
}

/// SHA-1 of the file at `path`, a separate pass for display (`santactl fileinfo`).
pub fn sha1_path(path: &Path, limits: &HashLimits) -> Result<Sha1, HashError> {
    Ok(FileBytes::open(path, limits)?.sha1())
}

/// The one place this crate maps memory.
#[allow(unsafe_code)]
mod map {
    use std::fs::File;
    use std::io;

    /// Maps `len` bytes of `file` read-only and private.
    ///
    /// Contract (the reason this is the crate's only `unsafe`): the mapping aliases the page
    /// cache, so a writer can change the bytes while we read them — harmless here, because
    /// every result built from them is re-checked against the `fstat` stamp afterwards and
    /// reported as changed. If another process *truncates* the file while it is mapped,
    /// touching a page past the new end raises SIGBUS and kills the process; Rust cannot turn
    /// that into an error. santad narrows the window: the mapping lives only while one file is
    /// evaluated, small files never map, and the stamp is re-checked. ripgrep accepts the same
    /// trade-off (`grep-searcher`'s `mmap.rs`); callers that cannot accept it can set
    /// `mmap_threshold_bytes = u64::MAX` and always read.
    pub(super) fn map_readonly(file: &File, len: u64) -> io::Result<memmap2::Mmap> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        // SAFETY: the map is read-only and private (we never create a `&mut` into it); the
        // length is the size fstat just reported, so no page starts past the end unless the
        // file is truncated afterwards, which is the SIGBUS case documented above. The `Mmap`
        // owns the mapping and unmaps it on drop, after every borrow of its bytes has ended.
        unsafe { memmap2::MmapOptions::new().len(len).map(file) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn limits(threshold: u64) -> HashLimits {
        HashLimits {
            hash_bytes_max: 1 << 30,
            mmap_threshold_bytes: threshold,
        }
    }

    #[test]
    fn mmap_and_read_agree_with_ring() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 3) as u8).collect();
        f.write_all(&data).unwrap();
        let want = Sha256::digest(&data);
        let a = hash_path(f.path(), &limits(1)).unwrap();
        let b = hash_path(f.path(), &limits(u64::MAX)).unwrap();
        assert_eq!(a.method, ReadMethod::Mmap);
        assert_eq!(b.method, ReadMethod::Read);
        assert_eq!(a.sha256, want);
        assert_eq!(b.sha256, want);
        assert!(!a.changed && !b.changed);
        assert_eq!(a.stamp.size_bytes, 200_000);
    }

    #[test]
    fn borrowed_fd_gives_the_same_hash() {
        use std::os::fd::AsFd;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        let h = hash_fd(f.as_file().as_fd(), &HashLimits::default()).unwrap();
        assert_eq!(h.sha256, Sha256::digest(b"abc"));
        // The caller's fd is still usable afterwards.
        assert_eq!(hash_file(f.as_file(), &HashLimits::default()).unwrap(), h);
    }

    #[test]
    fn the_read_buffer_is_reused() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        let buffer = Vec::with_capacity(4096);
        let ptr = buffer.as_ptr();
        let bytes = FileBytes::load_reusing(f.as_file(), &HashLimits::default(), buffer).unwrap();
        assert_eq!(&bytes[..], &[7u8; 1000][..]);
        let back = bytes.into_buffer();
        assert_eq!(back.as_ptr(), ptr, "same allocation handed back");
        assert!(back.capacity() >= 4096);
    }

    #[test]
    fn empty_file_hashes_to_empty_digest() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let h = hash_path(f.path(), &HashLimits::default()).unwrap();
        assert_eq!(
            h.sha256.to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(h.method, ReadMethod::Read);
    }

    #[test]
    fn refuses_directories_and_fifos() {
        let d = tempfile::tempdir().unwrap();
        match hash_path(d.path(), &HashLimits::default()) {
            Err(HashError::AtPath { source, .. }) => assert!(matches!(
                *source,
                HashError::NotRegular {
                    kind: NodeKind::Directory
                }
            )),
            other => panic!("expected NotRegular, got {other:?}"),
        }
        let dev_null = File::open("/dev/null").unwrap();
        assert!(matches!(
            hash_file(&dev_null, &HashLimits::default()),
            Err(HashError::NotRegular {
                kind: NodeKind::CharDevice
            })
        ));
    }

    #[test]
    fn refuses_files_over_the_limit() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0u8; 100]).unwrap();
        let l = HashLimits {
            hash_bytes_max: 99,
            mmap_threshold_bytes: 1,
        };
        match hash_file(f.as_file(), &l) {
            Err(HashError::TooLarge {
                size_bytes: 100,
                limit_bytes: 99,
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_write_after_load_is_reported_as_changed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        for threshold in [1, u64::MAX] {
            let file = File::open(f.path()).unwrap();
            let bytes = FileBytes::load(&file, &limits(threshold)).unwrap();
            assert!(bytes.unchanged(&file).unwrap());
            // ctime has nanosecond resolution on tmpfs/ext4 but may not tick between two
            // quick writes on a coarse clock; a size change is always visible.
            f.write_all(&[2u8; 10]).unwrap();
            f.flush().unwrap();
            assert!(!bytes.unchanged(&file).unwrap(), "threshold {threshold}");
        }
    }
}
