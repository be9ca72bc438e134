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
//!
//! A mapped file is hostile too: its owner can truncate it while we read it. The page fault
//! (SIGBUS) that would kill the process is caught by `map`'s handler, which backs the missing
//! pages with zeros and marks the mapping as faulted; the result is then reported as changed
//! whatever the stamp says. See `map` for the contract.

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::ops::Deref;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use santa_hotpath::{FileKey, FileStamp};
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
/// boundary sits at 2 MiB.
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

/// `fstat` of an open file: which file it is and the version of its contents.
pub fn stat_file(file: &File) -> Result<(FileKey, FileStamp), HashError> {
    file.metadata()
        .map(|m| (FileKey::of_metadata(&m), FileStamp::of_metadata(&m)))
        .map_err(|source| HashError::Stat { source })
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
    /// Which file was read.
    pub key: FileKey,
    /// The stamp taken before reading.
    pub stamp: FileStamp,
    /// The stamp taken after reading differed, fewer bytes than the size were read, or a mapped
    /// page could not be read (the file was truncated underneath; those bytes read as zeros):
    /// the hash may describe no version of the file that ever existed whole. Do not cache it.
    pub changed: bool,
    /// How the bytes were read.
    pub method: ReadMethod,
}

/// The bytes of one file, mapped or read, with the stamp taken before they were read.
///
/// Parsing and hashing share one `FileBytes`, so a file is read once per decision.
pub struct FileBytes {
    data: Data,
    key: FileKey,
    stamp: FileStamp,
    short_read: bool,
}

enum Data {
    Mapped(map::Mapping),
    Owned(Vec<u8>),
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBytes")
            .field("method", &self.method())
            .field("len", &self.len())
            .field("key", &self.key)
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
        let (key, stamp) = admit(file, limits)?;
        if stamp.size_bytes >= limits.mmap_threshold_bytes.max(1) {
            // Some filesystems (procfs-like, some FUSE) cannot map, and the SIGBUS registry may
            // be full (see `map`): those files are read instead.
            if let Ok(m) = map::map_readonly(file, stamp.size_bytes) {
                // Sequential read-ahead: every page is touched once, in order.
                let _ = m.advise(memmap2::Advice::Sequential);
                return Ok(Self {
                    data: Data::Mapped(m),
                    key,
                    stamp,
                    short_read: false,
                });
            }
        }
        let (buf, short_read) = read_all(file, stamp.size_bytes, limits.hash_bytes_max, buffer)?;
        Ok(Self {
            data: Data::Owned(buf),
            key,
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

    /// Which file the bytes are of.
    pub fn key(&self) -> FileKey {
        self.key
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

    /// Whether `file` is still the file read and has the stamp taken before reading, all of it
    /// was read, and no
    /// mapped page faulted (a fault means the file was cut short or unreadable underneath, and
    /// those bytes read as zeros, whatever the stamp says now).
    pub fn unchanged(&self, file: &File) -> Result<bool, HashError> {
        Ok(!self.short_read && !self.faulted() && stat_file(file)? == (self.key, self.stamp))
    }

    /// Whether a page of the mapping faulted so far (always false for bytes that were read).
    fn faulted(&self) -> bool {
        match &self.data {
            Data::Mapped(m) => m.faulted(),
            Data::Owned(_) => false,
        }
    }
}

/// The key and stamp of `file` if it is a regular file within `limits.hash_bytes_max`.
fn admit(file: &File, limits: &HashLimits) -> Result<(FileKey, FileStamp), HashError> {
    let meta = file
        .metadata()
        .map_err(|source| HashError::Stat { source })?;
    if !meta.file_type().is_file() {
        return Err(HashError::NotRegular {
            kind: NodeKind::of(&meta),
        });
    }
    let stamp = FileStamp::of_metadata(&meta);
    if stamp.size_bytes > limits.hash_bytes_max {
        return Err(HashError::TooLarge {
            size_bytes: stamp.size_bytes,
            limit_bytes: limits.hash_bytes_max,
        });
    }
    Ok((FileKey::of_metadata(&meta), stamp))
}

/// `pread` into `buf` at `offset`, retried on EINTR.
fn pread_retrying(file: &File, buf: &mut [u8], offset: u64) -> Result<usize, HashError> {
    loop {
        match file.read_at(buf, offset) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(HashError::Read { source }),
        }
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
        match pread_retrying(file, &mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    let grew = filled == want && pread_retrying(file, &mut [0u8; 1], filled as u64)? > 0;
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
        key: bytes.key,
        stamp: bytes.stamp,
        changed,
        method: bytes.method(),
    })
}

/// [`hash_file`] reading through `buffer` with `pread`, a buffer's length at a time, instead of
/// mapping the file or reading it whole: memory bounded by `buffer`, no SIGBUS possible.
///
/// Not santad's path: [`hash_file`] maps large files as the design asks. This is the
/// alternative `hash-bench` measures against it with the same stamp checks
/// (perf/results/hash.md). Reported changed if the stamp moved, the file ended early or grew.
///
/// # Panics
/// If `buffer` is empty (a programmer error: nothing could be read).
pub fn hash_file_streaming(
    file: &File,
    limits: &HashLimits,
    buffer: &mut [u8],
) -> Result<FileHash, HashError> {
    assert!(!buffer.is_empty(), "hash_file_streaming needs a buffer");
    let (key, stamp) = admit(file, limits)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut offset = 0u64;
    while offset < stamp.size_bytes {
        let want = usize::try_from(stamp.size_bytes - offset)
            .map_or(buffer.len(), |left| left.min(buffer.len()));
        match pread_retrying(file, &mut buffer[..want], offset)? {
            0 => break,
            n => {
                ctx.update(&buffer[..n]);
                offset += n as u64;
            }
        }
    }
    let short = offset < stamp.size_bytes;
    let grew = !short && pread_retrying(file, &mut buffer[..1], offset)? > 0;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(ctx.finish().as_ref());
    Ok(FileHash {
        sha256: Sha256(sha256),
        key,
        stamp,
        changed: short || grew || stat_file(file)? != (key, stamp),
        method: ReadMethod::Read,
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

/// The one place this crate maps memory, with the SIGBUS handler that makes a truncation
/// underneath harmless, and its contract.
#[allow(unsafe_code)]
mod map;

#[cfg(test)]
mod tests;
