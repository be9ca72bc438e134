//! The embedded code signature of one Mach-O slice: the SuperBlob, every CodeDirectory, the
//! CDHash, identifiers, flags, entitlements and the CMS blob.
//!
//! All blobs are big-endian. Parsing borrows from the slice bytes ([`SuperBlob`],
//! [`CodeDirectory`]); `verify` (in `verify.rs`) turns them into an owned report.

use std::fmt;

use serde::Serialize;

use crate::bytes::{be_u32, be_u64, c_str_at, slice_at, u8_at};
use crate::ids::{CdHash, TeamId};

/// SuperBlob magic (`CSMAGIC_EMBEDDED_SIGNATURE`).
pub const MAGIC_EMBEDDED_SIGNATURE: u32 = 0xfade_0cc0;
/// CodeDirectory magic.
pub const MAGIC_CODE_DIRECTORY: u32 = 0xfade_0c02;
/// Requirements-set magic.
pub const MAGIC_REQUIREMENTS: u32 = 0xfade_0c01;
/// XML entitlements magic.
pub const MAGIC_ENTITLEMENTS: u32 = 0xfade_7171;
/// DER entitlements magic.
pub const MAGIC_DER_ENTITLEMENTS: u32 = 0xfade_7172;
/// CMS wrapper magic.
pub const MAGIC_BLOB_WRAPPER: u32 = 0xfade_0b01;

/// Slot of the primary CodeDirectory.
pub const SLOT_CODE_DIRECTORY: u32 = 0;
/// Slot of the Info.plist hash (external file).
pub const SLOT_INFO: u32 = 1;
/// Slot of the requirements blob.
pub const SLOT_REQUIREMENTS: u32 = 2;
/// Slot of the resource directory hash (`_CodeSignature/CodeResources`, external).
pub const SLOT_RESOURCE_DIR: u32 = 3;
/// Slot of the application-specific hash (external).
pub const SLOT_APPLICATION: u32 = 4;
/// Slot of the XML entitlements blob.
pub const SLOT_ENTITLEMENTS: u32 = 5;
/// Slot of the representation-specific hash (external).
pub const SLOT_REP_SPECIFIC: u32 = 6;
/// Slot of the DER entitlements blob.
pub const SLOT_DER_ENTITLEMENTS: u32 = 7;
/// First alternate CodeDirectory slot.
pub const SLOT_ALTERNATE_CODE_DIRECTORIES: u32 = 0x1000;
/// Number of alternate CodeDirectory slots.
pub const ALTERNATE_CODE_DIRECTORY_MAX: u32 = 5;
/// Slot of the CMS signature.
pub const SLOT_SIGNATURE: u32 = 0x10000;

/// At most this many blobs in a SuperBlob: codesign writes at most about a dozen (CDs,
/// requirements, entitlements, launch constraints, CMS, ticket).
pub const BLOB_COUNT_MAX: u32 = 64;
/// At most this many special slots in a CodeDirectory (Apple defines 11 today).
pub const SPECIAL_SLOT_COUNT_MAX: u32 = 64;
/// Smallest page size (log2) codesign uses; smaller pages would make the hash list explode.
const PAGE_SIZE_LOG2_MIN: u8 = 9;
/// Largest page size (log2) accepted (64 KiB is the largest in use).
const PAGE_SIZE_LOG2_MAX: u8 = 24;

/// `CS_ADHOC`: signed without an identity.
pub const FLAG_ADHOC: u32 = 0x0002;
/// `CS_RUNTIME`: hardened runtime.
pub const FLAG_RUNTIME: u32 = 0x1_0000;
/// `CS_LINKER_SIGNED`: ad-hoc signature written by the linker.
pub const FLAG_LINKER_SIGNED: u32 = 0x2_0000;

const FLAG_NAMES: &[(u32, &str)] = &[
    (0x0001, "host"),
    (FLAG_ADHOC, "adhoc"),
    (0x0004, "force-hard"),
    (0x0100, "hard"),
    (0x0200, "kill"),
    (0x0400, "expires"),
    (0x0800, "restrict"),
    (0x1000, "enforcement"),
    (0x2000, "library-validation"),
    (FLAG_RUNTIME, "runtime"),
    (FLAG_LINKER_SIGNED, "linker-signed"),
];

/// CodeDirectory flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CodeSignFlags(pub u32);

impl CodeSignFlags {
    /// Ad-hoc signed.
    pub fn adhoc(self) -> bool {
        self.0 & FLAG_ADHOC != 0
    }

    /// Signed by the linker (always ad-hoc).
    pub fn linker_signed(self) -> bool {
        self.0 & FLAG_LINKER_SIGNED != 0
    }

    /// Hardened runtime.
    pub fn runtime(self) -> bool {
        self.0 & FLAG_RUNTIME != 0
    }

    /// The names of the set flags, as `codesign -d` prints them.
    pub fn names(self) -> Vec<&'static str> {
        FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|&(_, n)| n)
            .collect()
    }
}

impl fmt::Display for CodeSignFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}({})", self.0, self.names().join(","))
    }
}

/// The digest a CodeDirectory uses for its page hashes and its own CDHash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum HashType {
    /// SHA-1 (legacy).
    Sha1,
    /// SHA-256 truncated to 20 bytes.
    Sha256Truncated,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashType {
    fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            1 => Some(Self::Sha1),
            2 => Some(Self::Sha256),
            3 => Some(Self::Sha256Truncated),
            4 => Some(Self::Sha384),
            _ => None,
        }
    }

    /// Preference when choosing the CodeDirectory whose digest is the CDHash:
    /// SHA-384 > SHA-256 > SHA-256-truncated > SHA-1.
    pub fn rank(self) -> u8 {
        match self {
            Self::Sha1 => 0,
            Self::Sha256Truncated => 1,
            Self::Sha256 => 2,
            Self::Sha384 => 3,
        }
    }

    /// The size of one hash in the slot list.
    pub fn hash_size(self) -> usize {
        match self {
            Self::Sha1 | Self::Sha256Truncated => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    /// The full digest of `bytes` (32 bytes for the truncated type: callers truncate).
    pub fn digest(self, bytes: &[u8]) -> ring::digest::Digest {
        let alg = match self {
            Self::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 | Self::Sha256Truncated => &ring::digest::SHA256,
            Self::Sha384 => &ring::digest::SHA384,
        };
        ring::digest::digest(alg, bytes)
    }

    /// The digest algorithm as CMS names it.
    pub fn cms_algorithm(self) -> crate::x509::DigestAlgorithm {
        use crate::x509::DigestAlgorithm as D;
        match self {
            Self::Sha1 => D::Sha1,
            Self::Sha256 | Self::Sha256Truncated => D::Sha256,
            Self::Sha384 => D::Sha384,
        }
    }
}

impl fmt::Display for HashType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha1 => "sha1",
            Self::Sha256Truncated => "sha256-truncated",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
        })
    }
}

/// Why an embedded signature could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// A blob or structure ends past its container.
    Truncated {
        /// Which structure.
        what: &'static str,
    },
    /// A blob has the wrong magic.
    BadMagic {
        /// Which blob.
        what: &'static str,
        /// The magic found.
        magic: u32,
    },
    /// More than [`BLOB_COUNT_MAX`] blobs.
    TooManyBlobs {
        /// The count in the SuperBlob.
        count: u32,
    },
    /// A blob's offset or length lies outside the SuperBlob.
    BlobOutOfBounds {
        /// The slot type of the blob.
        slot: u32,
    },
    /// Two blobs (or a blob and the index) occupy the same bytes.
    BlobsOverlap {
        /// One slot.
        first: u32,
        /// The other slot.
        second: u32,
    },
    /// The same slot type appears twice.
    DuplicateSlot {
        /// The slot type.
        slot: u32,
    },
    /// No CodeDirectory in slot 0.
    NoCodeDirectory,
    /// A CodeDirectory's hash type is unknown or its hash size does not match it.
    BadHashType {
        /// The raw hash type.
        hash_type: u8,
        /// The raw hash size.
        hash_size: u8,
    },
    /// A page size outside 2^9 ..= 2^24 (0, "one page", is accepted).
    BadPageSize {
        /// The raw log2 page size.
        page_size_log2: u8,
    },
    /// More than [`SPECIAL_SLOT_COUNT_MAX`] special slots.
    TooManySpecialSlots {
        /// The count.
        count: u32,
    },
    /// The slot hashes lie outside the CodeDirectory.
    HashesOutOfBounds,
    /// The code slot count does not match the code limit and page size.
    CodeSlotCount {
        /// Slots declared.
        declared: u32,
        /// Slots the code limit implies.
        expected: u64,
    },
    /// The code limit lies beyond the slice.
    CodeLimitOutOfBounds {
        /// The code limit.
        code_limit: u64,
        /// The slice length.
        slice_len: u64,
    },
    /// The identifier or team ID is not a NUL-terminated UTF-8 string inside the CD.
    BadString {
        /// Which string.
        what: &'static str,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "truncated {what}"),
            Self::BadMagic { what, magic } => write!(f, "{what} has bad magic {magic:#010x}"),
            Self::TooManyBlobs { count } => {
                write!(f, "SuperBlob claims {count} blobs (max {BLOB_COUNT_MAX})")
            }
            Self::BlobOutOfBounds { slot } => write!(f, "blob in slot {slot:#x} out of bounds"),
            Self::BlobsOverlap { first, second } => {
                write!(f, "blobs in slots {first:#x} and {second:#x} overlap")
            }
            Self::DuplicateSlot { slot } => write!(f, "slot {slot:#x} appears twice"),
            Self::NoCodeDirectory => write!(f, "no CodeDirectory in slot 0"),
            Self::BadHashType {
                hash_type,
                hash_size,
            } => write!(f, "bad hash type {hash_type} / size {hash_size}"),
            Self::BadPageSize { page_size_log2 } => {
                write!(f, "bad page size 2^{page_size_log2}")
            }
            Self::TooManySpecialSlots { count } => write!(f, "{count} special slots"),
            Self::HashesOutOfBounds => write!(f, "slot hashes outside the CodeDirectory"),
            Self::CodeSlotCount { declared, expected } => {
                write!(
                    f,
                    "{declared} code slots where the code limit implies {expected}"
                )
            }
            Self::CodeLimitOutOfBounds {
                code_limit,
                slice_len,
            } => write!(
                f,
                "code limit {code_limit} beyond slice of {slice_len} bytes"
            ),
            Self::BadString { what } => write!(f, "bad {what} string"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// One blob of the SuperBlob.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    /// Slot type from the index.
    pub slot: u32,
    /// The blob's magic.
    pub magic: u32,
    /// The whole blob, header included (what special-slot hashes cover).
    pub bytes: &'a [u8],
}

impl<'a> Blob<'a> {
    /// The payload after the 8-byte header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[8..]
    }
}

/// The SuperBlob: the index of every blob of a slice's signature.
#[derive(Clone, Debug)]
pub struct SuperBlob<'a> {
    /// Blobs in index order.
    pub blobs: Vec<Blob<'a>>,
}

impl<'a> SuperBlob<'a> {
    /// Parses the SuperBlob at the start of `bytes` (the `LC_CODE_SIGNATURE` area).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SignatureError> {
        let magic = be_u32(bytes, 0).ok_or(SignatureError::Truncated { what: "SuperBlob" })?;
        if magic != MAGIC_EMBEDDED_SIGNATURE {
            return Err(SignatureError::BadMagic {
                what: "SuperBlob",
                magic,
            });
        }
        let length = be_u32(bytes, 4).ok_or(SignatureError::Truncated { what: "SuperBlob" })?;
        let count = be_u32(bytes, 8).ok_or(SignatureError::Truncated { what: "SuperBlob" })?;
        let sb = slice_at(bytes, 0, length as usize)
            .ok_or(SignatureError::Truncated { what: "SuperBlob" })?;
        if count > BLOB_COUNT_MAX {
            return Err(SignatureError::TooManyBlobs { count });
        }
        let index_end = 12 + 8 * count as usize;
        if index_end > sb.len() {
            return Err(SignatureError::Truncated {
                what: "SuperBlob index",
            });
        }
        let mut blobs: Vec<Blob<'a>> = Vec::with_capacity(count as usize);
        let mut spans: Vec<(usize, usize, u32)> = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let slot = be_u32(sb, 12 + 8 * i).unwrap_or(0);
            let offset = be_u32(sb, 16 + 8 * i).unwrap_or(0) as usize;
            if blobs.iter().any(|b| b.slot == slot) {
                return Err(SignatureError::DuplicateSlot { slot });
            }
            let oob = SignatureError::BlobOutOfBounds { slot };
            if offset < index_end {
                return Err(oob);
            }
            let blob_magic = be_u32(sb, offset).ok_or(oob.clone())?;
            let blob_len = be_u32(sb, offset + 4).ok_or(oob.clone())? as usize;
            if blob_len < 8 {
                return Err(oob);
            }
            let blob = slice_at(sb, offset, blob_len).ok_or(oob)?;
            spans.push((offset, offset + blob_len, slot));
            blobs.push(Blob {
                slot,
                magic: blob_magic,
                bytes: blob,
            });
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(SignatureError::BlobsOverlap {
                    first: w[0].2,
                    second: w[1].2,
                });
            }
        }
        Ok(Self { blobs })
    }

    /// The blob in `slot`.
    pub fn blob(&self, slot: u32) -> Option<&Blob<'a>> {
        self.blobs.iter().find(|b| b.slot == slot)
    }
}

/// A parsed CodeDirectory (borrowing the blob).
#[derive(Clone, Debug)]
pub struct CodeDirectory<'a> {
    /// The SuperBlob slot it came from (0 or 0x1000..).
    pub slot: u32,
    /// The whole blob: what the CDHash digests.
    pub bytes: &'a [u8],
    /// Format version.
    pub version: u32,
    /// Flags.
    pub flags: CodeSignFlags,
    /// Hash type.
    pub hash_type: HashType,
    /// Platform identifier (non-zero for Apple platform binaries).
    pub platform: u8,
    /// log2 of the page size (0: the code is one page).
    pub page_size_log2: u8,
    /// Number of special slots.
    pub n_special_slots: u32,
    /// Number of code slots.
    pub n_code_slots: u32,
    /// Bytes of the slice covered by page hashes.
    pub code_limit: u64,
    /// Signing identifier.
    pub identifier: &'a str,
    /// Team identifier (version 0x20200 and later).
    pub team_id: Option<&'a str>,
    /// Offset of code slot 0 within the blob.
    hash_offset: usize,
}

impl<'a> CodeDirectory<'a> {
    /// Parses a CodeDirectory blob.
    pub fn parse(slot: u32, bytes: &'a [u8]) -> Result<Self, SignatureError> {
        let t = |what| SignatureError::Truncated { what };
        let magic = be_u32(bytes, 0).ok_or(t("CodeDirectory"))?;
        if magic != MAGIC_CODE_DIRECTORY {
            return Err(SignatureError::BadMagic {
                what: "CodeDirectory",
                magic,
            });
        }
        let field = |off| be_u32(bytes, off).ok_or(t("CodeDirectory header"));
        let version = field(8)?;
        let flags = CodeSignFlags(field(12)?);
        let hash_offset = field(16)? as usize;
        let ident_offset = field(20)? as usize;
        let n_special_slots = field(24)?;
        let n_code_slots = field(28)?;
        let code_limit32 = field(32)?;
        let hash_size = u8_at(bytes, 36).ok_or(t("CodeDirectory header"))?;
        let raw_type = u8_at(bytes, 37).ok_or(t("CodeDirectory header"))?;
        let platform = u8_at(bytes, 38).ok_or(t("CodeDirectory header"))?;
        let page_size_log2 = u8_at(bytes, 39).ok_or(t("CodeDirectory header"))?;
        let hash_type = HashType::from_raw(raw_type)
            .filter(|h| h.hash_size() == usize::from(hash_size))
            .ok_or(SignatureError::BadHashType {
                hash_type: raw_type,
                hash_size,
            })?;
        if page_size_log2 != 0
            && !(PAGE_SIZE_LOG2_MIN..=PAGE_SIZE_LOG2_MAX).contains(&page_size_log2)
        {
            return Err(SignatureError::BadPageSize { page_size_log2 });
        }
        if n_special_slots > SPECIAL_SLOT_COUNT_MAX {
            return Err(SignatureError::TooManySpecialSlots {
                count: n_special_slots,
            });
        }
        let team_id = if version >= 0x20200 {
            match field(48)? as usize {
                0 => None,
                off => Some(
                    c_str_at(bytes, off, bytes.len())
                        .ok_or(SignatureError::BadString { what: "team ID" })?,
                ),
            }
        } else {
            None
        };
        let code_limit = match (version >= 0x20300).then(|| be_u64(bytes, 56)) {
            Some(Some(l64)) if l64 != 0 => l64,
            Some(None) => return Err(t("CodeDirectory header")),
            _ => u64::from(code_limit32),
        };
        let identifier = c_str_at(bytes, ident_offset, bytes.len())
            .ok_or(SignatureError::BadString { what: "identifier" })?;
        // Special slots sit before `hash_offset`, code slots after: both must be inside.
        let size = usize::from(hash_size);
        let specials = size * n_special_slots as usize;
        let codes = size
            .checked_mul(n_code_slots as usize)
            .ok_or(SignatureError::HashesOutOfBounds)?;
        if hash_offset < specials || slice_at(bytes, hash_offset, codes).is_none() {
            return Err(SignatureError::HashesOutOfBounds);
        }
        let expected = if page_size_log2 == 0 {
            u64::from(code_limit > 0)
        } else {
            code_limit.div_ceil(1u64 << page_size_log2)
        };
        if u64::from(n_code_slots) != expected {
            return Err(SignatureError::CodeSlotCount {
                declared: n_code_slots,
                expected,
            });
        }
        Ok(Self {
            slot,
            bytes,
            version,
            flags,
            hash_type,
            platform,
            page_size_log2,
            n_special_slots,
            n_code_slots,
            code_limit,
            identifier,
            team_id,
            hash_offset,
        })
    }

    /// The full digest of this CodeDirectory with its own hash type.
    pub fn digest(&self) -> Vec<u8> {
        self.hash_type.digest(self.bytes).as_ref().to_vec()
    }

    /// The CDHash: the first 20 bytes of [`Self::digest`].
    pub fn cdhash(&self) -> CdHash {
        let d = self.hash_type.digest(self.bytes);
        let mut out = [0u8; 20];
        out.copy_from_slice(&d.as_ref()[..20]);
        CdHash(out)
    }

    /// The hash stored for code page `index`.
    pub fn code_slot(&self, index: u32) -> Option<&'a [u8]> {
        let size = self.hash_type.hash_size();
        slice_at(self.bytes, self.hash_offset + size * index as usize, size)
    }

    /// The hash stored for special slot `n` (1-based: slot -n).
    pub fn special_slot(&self, n: u32) -> Option<&'a [u8]> {
        if n == 0 || n > self.n_special_slots {
            return None;
        }
        let size = self.hash_type.hash_size();
        slice_at(self.bytes, self.hash_offset - size * n as usize, size)
    }

    /// The Team ID, if it is one Apple issues (ten upper-case letters or digits, compared byte for
    /// byte as Santa does). Any other string names no team: no Team ID or Signing ID rule can
    /// match it, so it is reported as none.
    pub fn team(&self) -> Option<TeamId> {
        self.team_id
            .and_then(|t| TeamId::from_signature(t.as_bytes()))
    }

    /// The page size in bytes (`None`: one page covering the whole code limit).
    pub fn page_size_bytes(&self) -> Option<u64> {
        (self.page_size_log2 != 0).then(|| 1u64 << self.page_size_log2)
    }
}

/// The SuperBlob of a slice with its CodeDirectories parsed.
#[derive(Clone, Debug)]
pub struct EmbeddedSignature<'a> {
    /// Every blob.
    pub superblob: SuperBlob<'a>,
    /// Every CodeDirectory: slot 0 first, then the alternates in slot order.
    pub code_directories: Vec<CodeDirectory<'a>>,
}

impl<'a> EmbeddedSignature<'a> {
    /// Parses the signature area of a slice.
    pub fn parse(area: &'a [u8], slice_len: u64) -> Result<Self, SignatureError> {
        let superblob = SuperBlob::parse(area)?;
        let mut cds = Vec::new();
        for b in &superblob.blobs {
            let is_cd_slot = b.slot == SLOT_CODE_DIRECTORY
                || (SLOT_ALTERNATE_CODE_DIRECTORIES
                    ..SLOT_ALTERNATE_CODE_DIRECTORIES + ALTERNATE_CODE_DIRECTORY_MAX)
                    .contains(&b.slot);
            if is_cd_slot {
                let cd = CodeDirectory::parse(b.slot, b.bytes)?;
                if cd.code_limit > slice_len {
                    return Err(SignatureError::CodeLimitOutOfBounds {
                        code_limit: cd.code_limit,
                        slice_len,
                    });
                }
                cds.push(cd);
            }
        }
        cds.sort_by_key(|cd| cd.slot);
        if cds.first().map(|cd| cd.slot) != Some(SLOT_CODE_DIRECTORY) {
            return Err(SignatureError::NoCodeDirectory);
        }
        Ok(Self {
            superblob,
            code_directories: cds,
        })
    }

    /// The CodeDirectory whose digest is the CDHash: the strongest hash type, and among equals
    /// the first in slot order.
    pub fn best_code_directory(&self) -> &CodeDirectory<'a> {
        let mut best = &self.code_directories[0];
        for cd in &self.code_directories[1..] {
            if cd.hash_type.rank() > best.hash_type.rank() {
                best = cd;
            }
        }
        best
    }

    /// The CMS payload, if the signature has a non-empty wrapper (ad-hoc signatures written by
    /// `codesign` carry an empty one).
    pub fn cms_payload(&self) -> Option<&'a [u8]> {
        self.superblob
            .blob(SLOT_SIGNATURE)
            .filter(|b| b.magic == MAGIC_BLOB_WRAPPER)
            .map(Blob::payload)
            .filter(|p| !p.is_empty())
    }

    /// Number of requirements in the requirements set.
    pub fn requirements_count(&self) -> Option<u32> {
        self.superblob
            .blob(SLOT_REQUIREMENTS)
            .filter(|b| b.magic == MAGIC_REQUIREMENTS)
            .and_then(|b| be_u32(b.bytes, 8))
    }
}
