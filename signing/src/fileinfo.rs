//! One call for everything `santactl fileinfo` prints, and the signing facts santad needs.

use std::fmt;
use std::path::{Path, PathBuf};

use santa_hotpath::{FileKey, FileStamp};
use serde::Serialize;

use crate::bundle::{self, Bundle};
use crate::file::{FileBytes, FileHash, HashError, HashLimits};
use crate::ids::{CdHash, Sha1, Sha256, SigningId, TeamId};
use crate::macho::{self, CpuType, FileFormat};
use crate::verify::{self, Detail, ExternalFiles, InvalidReason, SigningStatus, SliceReport};
use crate::x509::Certificate;

/// The signing facts of a whole (thin or fat) Mach-O file.
#[derive(Clone, Debug, Serialize)]
pub struct FileSigning {
    /// The file had a fat header.
    pub fat: bool,
    /// Every slice, in header order.
    pub slices: Vec<SliceReport>,
    /// The whole file's status (Santa's all-architectures rule).
    pub status: SigningStatus,
    /// Why the file's signature is invalid, when `status` is `Invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<InvalidReason>,
    /// Index of the slice whose identities are reported: the host's architecture if present,
    /// else the first signed slice, else the first.
    pub primary_slice: usize,
}

impl FileSigning {
    /// Parses and verifies every slice of `bytes`, decoding everything `santactl fileinfo`
    /// prints ([`Detail::Full`]). `Err` only when the bytes are not Mach-O at all; a
    /// malformed Mach-O gives an `Invalid` status with the reason.
    pub fn from_bytes(bytes: &[u8], external: &ExternalFiles) -> Result<Self, FileFormat> {
        Self::from_bytes_with(bytes, external, Detail::Full)
    }

    /// [`Self::from_bytes`], decoding only what `detail` asks for: santad's exec path asks
    /// for [`Detail::Decision`].
    pub fn from_bytes_with(
        bytes: &[u8],
        external: &ExternalFiles,
        detail: Detail,
    ) -> Result<Self, FileFormat> {
        let format = macho::classify(bytes);
        if !matches!(format, FileFormat::MachO | FileFormat::FatMachO) {
            return Err(format);
        }
        let parsed = match macho::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Self {
                    fat: format == FileFormat::FatMachO,
                    slices: Vec::new(),
                    status: SigningStatus::Invalid,
                    invalid_reason: Some(InvalidReason::MachO(e)),
                    primary_slice: 0,
                });
            }
        };
        let mut slices: Vec<SliceReport> = parsed
            .slices
            .iter()
            .map(|s| verify::verify_slice_with(s, external, detail))
            .collect();
        // Unreadable records take their place in header order (they count in the consistency
        // check as slices without a signature): inserted in increasing record order, each lands
        // at its record's index, the readable slices being in header order already.
        for u in &parsed.unreadable {
            slices.insert(u.index.min(slices.len()), SliceReport::unreadable(u));
        }
        let (status, invalid_reason) = verify::combine_status(&slices);
        let host = CpuType::host();
        let readable = |s: &SliceReport| s.unreadable.is_none();
        let primary_slice = slices
            .iter()
            .position(|s| Some(s.arch) == host && readable(s))
            .or_else(|| slices.iter().position(|s| s.signature.is_some()))
            .or_else(|| slices.iter().position(readable))
            .unwrap_or(0);
        Ok(Self {
            fat: parsed.fat,
            slices,
            status,
            invalid_reason,
            primary_slice,
        })
    }

    /// Santa's `fileinfo` wording for the Code-signed line.
    pub fn code_signed_text(&self) -> String {
        // Santa's "platform binary" here is Security's kSecCodeInfoPlatformIdentifier: the
        // CodeDirectory's platform field, not the Apple-certificate test decisions use.
        let platform = self
            .primary()
            .and_then(|s| s.signature.as_ref())
            .is_some_and(|s| s.platform != 0);
        self.status
            .code_signed_text(self.invalid_reason.as_ref(), platform)
    }

    /// The slice whose identities are reported. None when the slices are not signed alike:
    /// Santa (`MOLCodesignChecker`) then keeps no signing information at all, so such a file
    /// has no CDHash, Team ID, Signing ID or chain to show or to match.
    fn primary(&self) -> Option<&SliceReport> {
        if self.is_inconsistent() {
            return None;
        }
        self.slices.get(self.primary_slice)
    }

    /// The slices are not signed alike (Santa's all-architectures rule).
    fn is_inconsistent(&self) -> bool {
        matches!(
            self.invalid_reason,
            Some(InvalidReason::InconsistentArchitectures)
        )
    }

    /// CDHash of the primary slice.
    pub fn cdhash(&self) -> Option<CdHash> {
        self.primary()?.signature.as_ref().map(|s| s.cdhash)
    }

    /// The primary slice's CMS `signingTime`, seconds since epoch (Santa's Signing Time).
    pub fn signing_time_unix(&self) -> Option<i64> {
        self.primary()?
            .signature
            .as_ref()?
            .cms
            .as_ref()?
            .signing_time_unix
    }

    /// The primary slice's timestamp token time, seconds since epoch (Santa's Secure Signing
    /// Time).
    pub fn secure_signing_time_unix(&self) -> Option<i64> {
        self.primary()?
            .signature
            .as_ref()?
            .cms
            .as_ref()?
            .timestamp_unix
    }

    /// The primary slice's entitlements (decoded with [`Detail::Full`] only).
    pub fn entitlements(&self) -> Option<&serde_json::Value> {
        self.primary()?.signature.as_ref()?.entitlements.as_ref()
    }

    /// Santa's Page Zero check (`SNTFileInfo isMissingPageZero`): an i386 executable slice whose
    /// first segment is not a proper `__PAGEZERO` (the kernel enforces one on every other
    /// architecture).
    pub fn is_missing_page_zero(&self) -> bool {
        self.slices.iter().any(|s| {
            s.arch == CpuType::I386
                && s.file_type == crate::macho::MachFileType::Execute
                && s.unreadable.is_none()
                && !s.has_pagezero
        })
    }

    /// Each slice's signer, in header order, when the slices are not signed alike (Santa's
    /// Universal Signing Chain, shown then and only then).
    pub fn universal_signers(&self) -> Option<Vec<(&SliceReport, UniversalSigner<'_>)>> {
        if !self.is_inconsistent() {
            return None;
        }
        Some(
            self.slices
                .iter()
                .map(|s| {
                    let signer = match &s.signature {
                        Some(sig) if sig.flags.adhoc() => UniversalSigner::AdHoc,
                        Some(sig) if !sig.chain.is_empty() => UniversalSigner::Chain(&sig.chain),
                        _ => UniversalSigner::Unsigned,
                    };
                    (s, signer)
                })
                .collect(),
        )
    }

    /// Team ID of the primary slice.
    pub fn team_id(&self) -> Option<&TeamId> {
        self.primary()?.signature.as_ref()?.team_id.as_ref()
    }

    /// Santa Signing ID of the primary slice.
    pub fn signing_id(&self) -> Option<&SigningId> {
        self.primary()?.signature.as_ref()?.signing_id.as_ref()
    }

    /// Certificate chain of the primary slice, leaf first.
    pub fn chain(&self) -> &[Certificate] {
        self.primary()
            .and_then(|s| s.signature.as_ref())
            .map_or(&[], |s| s.chain.as_slice())
    }

    /// The primary slice is a platform (Apple OS) binary: its chain ends in Apple's software
    /// signing leaf.
    pub fn is_platform_binary(&self) -> bool {
        self.primary()
            .and_then(|s| s.signature.as_ref())
            .is_some_and(|s| s.platform_binary)
    }

    /// SHA-256 of the primary slice's leaf certificate.
    pub fn leaf_certificate_sha256(&self) -> Option<Sha256> {
        self.chain().first().map(|c| c.sha256)
    }
}

/// Who signed one slice of a universal file, for Santa's Universal Signing Chain.
#[derive(Clone, Copy, Debug)]
pub enum UniversalSigner<'a> {
    /// Ad-hoc.
    AdHoc,
    /// No signature (or none readable).
    Unsigned,
    /// A certificate chain, leaf first.
    Chain(&'a [Certificate]),
}

/// What `santactl fileinfo` prints, with Santa's field names in `Display`.
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    /// The path asked about.
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub sha256: Sha256,
    /// SHA-1 of the file.
    pub sha1: Sha1,
    /// Which file was read.
    pub key: FileKey,
    /// The stamp the bytes were read under.
    pub stamp: FileStamp,
    /// The file changed while it was read: every value below may be wrong.
    pub changed: bool,
    /// What the file is.
    pub format: FileFormat,
    /// Santa's Type line: `Executable (x86_64, arm64)`, `Script`, ...
    pub type_description: String,
    /// Signing facts, for Mach-O files; the identities below are read from it.
    pub signing: Option<FileSigning>,
    /// The nearest bundle the file belongs to (Santa's fileinfo looks no higher).
    pub bundle: Option<Bundle>,
    /// The `Info.plist` embedded in the executable (`__TEXT,__info_plist`), which Santa reads
    /// before any bundle's; its `path` is the file's.
    pub embedded_info: Option<Bundle>,
}

impl FileInfo {
    /// The `Info.plist` Santa describes the file by: the embedded one, else its bundle's.
    fn info_plist(&self) -> Option<&Bundle> {
        self.embedded_info.as_ref().or(self.bundle.as_ref())
    }

    /// Santa's Bundle Name: `CFBundleDisplayName`, else `CFBundleName`.
    pub fn bundle_name(&self) -> Option<&str> {
        self.info_plist()?.name.as_deref()
    }

    /// Santa's Bundle Version: `CFBundleVersion`.
    pub fn bundle_version(&self) -> Option<&str> {
        self.info_plist()?.version.as_deref()
    }

    /// Santa's Bundle Version Str: `CFBundleShortVersionString`.
    pub fn bundle_version_str(&self) -> Option<&str> {
        self.info_plist()?.short_version.as_deref()
    }

    /// Santa's Code-signed line (`No` for a file that is not Mach-O).
    pub fn code_signed(&self) -> String {
        self.signing
            .as_ref()
            .map_or_else(|| "No".into(), FileSigning::code_signed_text)
    }

    /// Team ID of the primary slice.
    pub fn team_id(&self) -> Option<&TeamId> {
        self.signing.as_ref()?.team_id()
    }

    /// Signing ID (`TEAMID:ident` / `platform:ident`) of the primary slice.
    pub fn signing_id(&self) -> Option<&SigningId> {
        self.signing.as_ref()?.signing_id()
    }

    /// CDHash of the primary slice.
    pub fn cdhash(&self) -> Option<CdHash> {
        self.signing.as_ref()?.cdhash()
    }

    /// The primary slice's signing chain, leaf first.
    pub fn signing_chain(&self) -> &[Certificate] {
        self.signing.as_ref().map_or(&[], FileSigning::chain)
    }
}

/// Options for [`file_info`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FileInfoOptions {
    /// Size and mapping limits.
    pub limits: HashLimits,
}

/// Why [`file_info`] failed.
#[derive(Debug)]
pub enum FileInfoError {
    /// The file could not be read.
    Hash(HashError),
}

impl fmt::Display for FileInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hash(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FileInfoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Hash(e) => Some(e),
        }
    }
}

impl From<HashError> for FileInfoError {
    fn from(e: HashError) -> Self {
        Self::Hash(e)
    }
}

/// What santad decides on: a file's SHA-256 and signing facts, from one read of an open file.
#[derive(Clone, Debug, Serialize)]
pub struct FileIdentity {
    /// SHA-256, stamp, and whether the file changed while it was read (then: do not cache).
    pub hash: FileHash,
    /// What the first bytes say the file is.
    pub format: FileFormat,
    /// Signing facts for Mach-O files. External seals (Info.plist, resources) are reported,
    /// not checked, as the kernel's own validity check does not check them either.
    pub signing: Option<FileSigning>,
}

/// Reads `file` once (mmap or `pread`), hashes it, parses and verifies its signature, and
/// re-checks its stamp: santad's per-exec call on the fd the kernel handed over.
///
/// It decodes only what a decision needs ([`Detail::Decision`]): no rule type can use
/// entitlements, so their blobs (attacker-controlled bytes, read before any signature check)
/// are hashed for their special slot but never decoded here; `santactl fileinfo`
/// ([`file_info`], [`inspect`]) decodes them.
///
/// `scratch` is the caller's reusable read buffer (see [`FileBytes::load_reusing`]); it comes
/// back through the same `&mut` unless the read itself failed (then it is empty again).
pub fn identify_file(
    file: &std::fs::File,
    limits: &HashLimits,
    scratch: &mut Vec<u8>,
) -> Result<FileIdentity, HashError> {
    let bytes = FileBytes::load_reusing(file, limits, std::mem::take(scratch))?;
    let result = identify_loaded(file, &bytes);
    *scratch = bytes.into_buffer();
    result
}

fn identify_loaded(file: &std::fs::File, bytes: &FileBytes) -> Result<FileIdentity, HashError> {
    let sha256 = bytes.sha256();
    let format = macho::classify(bytes);
    let signing =
        FileSigning::from_bytes_with(bytes, &ExternalFiles::default(), Detail::Decision).ok();
    let changed = !bytes.unchanged(file)?;
    Ok(FileIdentity {
        hash: FileHash {
            sha256,
            key: bytes.key(),
            stamp: bytes.stamp(),
            changed,
            method: bytes.method(),
        },
        format,
        signing,
    })
}

/// Everything `santactl fileinfo` prints about the signature of already-loaded bytes,
/// entitlements included ([`Detail::Full`]). `None` for files that are not Mach-O.
pub fn inspect(bytes: &[u8], external: &ExternalFiles) -> Option<FileSigning> {
    FileSigning::from_bytes(bytes, external).ok()
}

/// Santa's Type line (`SNTCommandFileInfo type`): the kind of the Mach-O, then every slice's
/// architecture that has a Mach-O header, or the kind of a file that is no Mach-O.
fn type_description(signing: Option<&FileSigning>, format: FileFormat, bytes: &[u8]) -> String {
    if let Some(s) = signing {
        let archs: Vec<String> = s
            .slices
            .iter()
            .filter(|sl| sl.unreadable.is_none())
            .map(|sl| macho::arch_name(sl.cpu_type, sl.cpu_subtype))
            .collect();
        let kind = match s.slices.get(s.primary_slice) {
            Some(primary) if primary.unreadable.is_none() => primary.file_type.description(),
            _ => "Unknown",
        };
        return if archs.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} ({})", archs.join(", "))
        };
    }
    // Santa's `humanReadableFileType` for what is not Mach-O.
    if format == FileFormat::Script {
        "Script"
    } else if bytes.starts_with(b"xar!") {
        "XAR Archive"
    } else if bytes.len() >= 512 && bytes[bytes.len() - 512..].starts_with(b"koly") {
        "Disk Image"
    } else {
        "Unknown"
    }
    .to_owned()
}

/// Everything `santactl fileinfo` prints about `path`.
pub fn file_info(path: &Path, options: &FileInfoOptions) -> Result<FileInfo, FileInfoError> {
    let file = std::fs::File::open(path).map_err(|source| HashError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = FileBytes::load(&file, &options.limits).map_err(|e| e.at(path))?;
    let bundle = bundle::find_nearest_bundle(path);
    let external = bundle::external_files_for(path);
    let format = macho::classify(&bytes);
    let signing = FileSigning::from_bytes(&bytes, &external).ok();
    let sha256 = bytes.sha256();
    let sha1 = bytes.sha1();
    let changed = !bytes.unchanged(&file)?;
    let type_description = type_description(signing.as_ref(), format, &bytes);
    let embedded_info = macho::parse(&bytes).ok().and_then(|m| {
        let first = m.slices.first()?;
        bundle::bundle_from_info_plist(path, macho::embedded_info_plist(first)?)
    });
    Ok(FileInfo {
        path: path.to_path_buf(),
        sha256,
        sha1,
        key: bytes.key(),
        stamp: bytes.stamp(),
        changed,
        format,
        type_description,
        signing,
        bundle,
        embedded_info,
    })
}

impl fmt::Display for FileInfo {
    /// Santa's `fileinfo` layout: `Name : value` lines, then the chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line =
            |f: &mut fmt::Formatter<'_>, k: &str, v: &dyn fmt::Display| writeln!(f, "{k:<22}: {v}");
        line(f, "Path", &self.path.display())?;
        line(f, "SHA-256", &self.sha256)?;
        line(f, "SHA-1", &self.sha1)?;
        if self.info_plist().is_some() {
            line(f, "Bundle Name", &self.bundle_name().unwrap_or(""))?;
            line(f, "Bundle Version", &self.bundle_version().unwrap_or(""))?;
            line(
                f,
                "Bundle Version Str",
                &self.bundle_version_str().unwrap_or(""),
            )?;
        }
        line(f, "Type", &self.type_description)?;
        line(f, "Code-signed", &self.code_signed())?;
        let text = |v: Option<&dyn fmt::Display>| v.map(ToString::to_string).unwrap_or_default();
        line(f, "Team ID", &text(self.team_id().map(|t| t as _)))?;
        line(f, "Signing ID", &text(self.signing_id().map(|s| s as _)))?;
        line(f, "CDHash", &text(self.cdhash().as_ref().map(|c| c as _)))?;
        if self.changed {
            line(f, "Warning", &"file changed while it was read")?;
        }
        if !self.signing_chain().is_empty() {
            writeln!(f, "Signing Chain:")?;
            for (i, c) in self.signing_chain().iter().enumerate() {
                writeln!(f, "    {}. SHA-256             : {}", i + 1, c.sha256)?;
                writeln!(f, "       SHA-1               : {}", c.sha1)?;
                let opt = |o: &Option<String>| o.clone().unwrap_or_default();
                writeln!(
                    f,
                    "       Common Name         : {}",
                    opt(&c.subject.common_name)
                )?;
                writeln!(
                    f,
                    "       Organization        : {}",
                    opt(&c.subject.organization)
                )?;
                writeln!(
                    f,
                    "       Organizational Unit : {}",
                    opt(&c.subject.organizational_unit)
                )?;
                writeln!(f, "       Valid From          : {}", c.valid_from)?;
                writeln!(f, "       Valid Until         : {}", c.valid_until)?;
            }
        }
        Ok(())
    }
}
