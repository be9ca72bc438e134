//! File identity for santad: everything it learns about a file before a rule is consulted.
//!
//! Data flows in one direction:
//!
//! 1. [`mod@file`]: the file's bytes, mapped (or read, when small or unmappable) from an fd the
//!    kernel handed over or from a path, with the `fstat` key `(dev, ino)` and stamp
//!    `(ctime, size)` (the engine's [`FileKey`] and [`FileStamp`]) taken before and re-checked
//!    after — [`hash_file`] / [`hash_path`] give the SHA-256 and whether
//!    the file changed meanwhile. Bounded by [`HashLimits`].
//! 2. [`macho`]: thin or fat Mach-O, each [`macho::Slice`] with its CPU, file type,
//!    `__PAGEZERO` and code-signature location; scripts are recognised by `#!`.
//! 3. [`codesign`]: per slice, the SuperBlob, every CodeDirectory, the CDHash, identifiers,
//!    flags; [`cms`] and [`x509`] read the CMS blob and its certificates (BER through the
//!    bounded reader in `asn1`).
//! 4. [`verify`]: page hashes, special slots, the CMS signature, hash agility and the chain to
//!    Apple Root CA, ending in a [`SigningStatus`] per slice and for the whole file.
//! 5. [`bundle`]: the highest ancestor bundle of a binary, its executables and Santa's bundle
//!    hash.
//! 6. [`fileinfo`]: one call returning everything `santactl fileinfo` prints.
//!
//! Every parser works on attacker-supplied bytes: offsets are checked, counts are capped before
//! allocation, and malformed input becomes a typed error or an `Invalid` status, never a panic.
//! The crate's only `unsafe` code is one module, `file::map`: the `mmap` of a file and the
//! SIGBUS handler that makes a fault on a mapped page of a file truncated underneath harmless
//! (a zero page is mapped over it and the file is reported as changed), each with its contract
//! written beside it.
#![deny(unsafe_code)]

mod asn1;
pub mod bundle;
mod bytes;
pub mod cms;
pub mod codesign;
pub mod entitlements;
pub mod file;
pub mod fileinfo;
mod ids;
pub mod macho;
pub mod plist;
pub mod verify;
pub mod x509;

pub use asn1::{Asn1Error, civil_from_days, format_unix_utc};
pub use file::{
    FileBytes, FileHash, HashError, HashLimits, ReadMethod, hash_fd, hash_file, hash_path,
    sha1_path, stat_file,
};
pub use fileinfo::{
    FileIdentity, FileInfo, FileInfoError, FileInfoOptions, FileSigning, UniversalSigner,
    file_info, identify_file, inspect,
};
pub use ids::{
    CdHash, SIGNING_ID_BYTES_MAX, Sha1, Sha256, SigningId, SigningIdPrefix, TEAM_ID_LEN, TeamId,
};
/// The file's key and stamp a hash comes back with: the engine's cache keys by them, so
/// `santa-hotpath` defines them.
pub use santa_hotpath::{FileKey, FileStamp};
pub use verify::{InvalidReason, SigningStatus};
