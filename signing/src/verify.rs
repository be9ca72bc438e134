//! Verification of a slice's code signature, and the signing status Santa decides on.
//!
//! Order of checks, first failure wins: the SuperBlob and CodeDirectories parse; every code
//! page of every CodeDirectory hashes to its slot; every special slot matches its blob (or the
//! external file, when given); then, unless ad-hoc, the CMS: its message digest is the digest of
//! the slot-0 CodeDirectory, its signature verifies with the leaf key, the hash-agility
//! attributes bind every other CodeDirectory, each certificate is signed by its issuer, the
//! chain ends at Apple Root CA, and every certificate was valid at signing time.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::cms::{CmsError, CmsSignature};
use crate::codesign::{
    self, CodeDirectory, CodeSignFlags, EmbeddedSignature, HashType, SignatureError,
};
use crate::ids::{CdHash, Sha256, SigningId, TeamId};
use crate::macho::{CpuType, MachFileType, MachOError, Slice, UnreadableSlice};
use crate::x509::{self, Certificate, SignatureCheck, oid};

/// SHA-256 of Apple Root CA (the 2006 RSA root that anchors Developer ID and Apple's own
/// software signing), the trust anchor of every production signature.
pub const APPLE_ROOT_CA_SHA256: Sha256 = Sha256([
    0xb0, 0xb1, 0x73, 0x0e, 0xcb, 0xc7, 0xff, 0x45, 0x05, 0x14, 0x2c, 0x49, 0xf1, 0x29, 0x5e, 0x6e,
    0xda, 0x6b, 0xca, 0xed, 0x7e, 0x2c, 0x68, 0xc5, 0xbe, 0x91, 0xb5, 0xa1, 0x10, 0x01, 0xf0, 0x24,
]);

/// Why a signature is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// The Mach-O structure itself is malformed.
    MachO(MachOError),
    /// The SuperBlob or a CodeDirectory is malformed.
    Malformed(SignatureError),
    /// A code page does not hash to its slot: the code was modified after signing.
    PageHashMismatch {
        /// Slot of the CodeDirectory (0 or 0x1000..).
        code_directory: u32,
        /// Page index.
        page: u32,
    },
    /// A special slot does not match its blob or file (requirements, entitlements,
    /// Info.plist, resources).
    SpecialSlotMismatch {
        /// Slot of the CodeDirectory.
        code_directory: u32,
        /// Special slot number (1 = Info.plist, 2 = requirements, ...).
        special_slot: u32,
    },
    /// A blob (such as entitlements) that no CodeDirectory seals.
    UnsealedBlob {
        /// Its slot type.
        slot: u32,
    },
    /// Not ad-hoc, yet no CMS signature.
    MissingCms,
    /// The CMS blob is malformed.
    Cms(CmsError),
    /// The CMS message digest is not the digest of the slot-0 CodeDirectory.
    CmsDigestMismatch,
    /// The CMS signature does not verify with the signer's key.
    CmsSignatureInvalid,
    /// A key or signature algorithm this crate cannot verify.
    UnsupportedAlgorithm,
    /// An alternate CodeDirectory not bound by the hash-agility attributes.
    UnboundCodeDirectory {
        /// Its slot.
        code_directory: u32,
    },
    /// A certificate is not signed by its issuer.
    CertificateSignatureInvalid {
        /// SHA-256 of the certificate.
        certificate: Sha256,
    },
    /// The chain stops before a self-signed root.
    ChainIncomplete,
    /// The CodeDirectory names a Team ID that is not its leaf certificate's OU.
    TeamIdMismatch {
        /// The CodeDirectory's Team ID.
        team: TeamId,
    },
    /// A certificate of the chain is used for what its extensions do not allow.
    CertificateNotAllowed {
        /// SHA-256 of the certificate.
        certificate: Sha256,
        /// What it may not do.
        why: &'static str,
    },
    /// A certificate was not valid at signing time.
    CertificateNotValidAtSigningTime {
        /// SHA-256 of the certificate.
        certificate: Sha256,
    },
    /// The slices of a fat file are not all signed the same way (Santa refuses these).
    InconsistentArchitectures,
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MachO(e) => write!(f, "malformed Mach-O: {e}"),
            Self::Malformed(e) => write!(f, "malformed signature: {e}"),
            Self::PageHashMismatch {
                code_directory,
                page,
            } => write!(
                f,
                "code page {page} does not match CodeDirectory {code_directory:#x}"
            ),
            Self::SpecialSlotMismatch {
                code_directory,
                special_slot,
            } => write!(
                f,
                "special slot -{special_slot} does not match CodeDirectory {code_directory:#x}"
            ),
            Self::UnsealedBlob { slot } => write!(f, "blob in slot {slot:#x} is not sealed"),
            Self::MissingCms => write!(f, "not ad-hoc but no CMS signature"),
            Self::Cms(e) => write!(f, "{e}"),
            Self::CmsDigestMismatch => {
                write!(f, "CMS message digest does not match the CodeDirectory")
            }
            Self::CmsSignatureInvalid => write!(f, "CMS signature does not verify"),
            Self::UnsupportedAlgorithm => write!(f, "unsupported signature algorithm"),
            Self::UnboundCodeDirectory { code_directory } => write!(
                f,
                "CodeDirectory {code_directory:#x} is not bound by the CMS signature"
            ),
            Self::CertificateSignatureInvalid { certificate } => {
                write!(f, "certificate {certificate} is not signed by its issuer")
            }
            Self::ChainIncomplete => write!(f, "certificate chain does not reach a root"),
            Self::TeamIdMismatch { team } => write!(
                f,
                "the CodeDirectory's Team ID {team} is not the signing certificate's"
            ),
            Self::CertificateNotAllowed { certificate, why } => {
                write!(f, "certificate {certificate} may not be used here: {why}")
            }
            Self::CertificateNotValidAtSigningTime { certificate } => {
                write!(f, "certificate {certificate} was not valid at signing time")
            }
            Self::InconsistentArchitectures => {
                write!(f, "signing is not consistent for all architectures")
            }
        }
    }
}

impl Serialize for InvalidReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Santa's signing status of a binary, from least to most trusted; it decides which identities
/// the rules may match on (`santa_rules` filters by this order). The one definition: the rules
/// crate, the control protocol and the macOS kernel facts all use this type. Why an `Invalid`
/// signature is invalid is an [`InvalidReason`] beside it, where verification knows one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningStatus {
    /// No code signature.
    Unsigned,
    /// A signature that does not verify (tampered, revoked, malformed); identity by SHA-256
    /// only.
    Invalid,
    /// Valid ad-hoc signature (no certificate): CDHash and SHA-256.
    AdHoc,
    /// Valid, signed with a development certificate: CDHash, SHA-256, certificate.
    Development,
    /// Valid, signed with a production certificate (Developer ID, App Store, Apple):
    /// every identity.
    Production,
}

impl SigningStatus {
    /// The status is a verified signature (ad-hoc or certificate).
    pub fn is_valid(self) -> bool {
        matches!(self, Self::AdHoc | Self::Development | Self::Production)
    }

    /// Santa's `fileinfo` wording for the Code-signed line, its fixed strings exactly
    /// (`SNTFileInfo codesignStatus`): `invalid_reason` is why an `Invalid` signature is
    /// invalid, `platform` whether the signature names an Apple platform. As in Santa, ad-hoc is
    /// said before platform, and platform before a development certificate.
    pub fn code_signed_text(
        self,
        invalid_reason: Option<&InvalidReason>,
        platform: bool,
    ) -> String {
        match self {
            Self::Unsigned => "No",
            Self::Invalid => invalid_reason.map_or(SIGNATURE_CHANGED, InvalidReason::santa_wording),
            Self::AdHoc => "Yes, but ad-hoc",
            Self::Development | Self::Production if platform => "Yes, platform binary",
            Self::Development => "Yes, but with development certificate",
            Self::Production => "Yes",
        }
        .into()
    }
}

/// Santa's words for a signature that fails to verify for most reasons (Security's
/// `errSecCSSignatureFailed`, `errSecCSStaticCodeChanged`, `errSecCSSignatureNotVerifiable`,
/// `errSecCSSignatureUnsupported`).
const SIGNATURE_CHANGED: &str = "Yes, but code/signature changed/unverifiable";

impl InvalidReason {
    /// The Code-signed line Santa prints for a signature invalid for this reason: the reasons
    /// Security reports under their own error code get Santa's words for that code (a modified
    /// Info.plist is `errSecCSInfoPlistFailed`, sealed resources that do not match are
    /// `errSecCSResourcesInvalid`, slices signed differently are Santa's own check); every
    /// other failure is "changed/unverifiable". The reason itself is not part of Santa's line.
    pub fn santa_wording(&self) -> &'static str {
        match self {
            Self::InconsistentArchitectures => {
                "Yes, but signing is not consistent for all architectures"
            }
            Self::SpecialSlotMismatch {
                special_slot: 1, ..
            } => "Yes, but can't validate as the Info.plist has been modified",
            Self::SpecialSlotMismatch {
                special_slot: 3, ..
            } => "Yes, but resources invalid",
            // Security's own check of the Team ID against the leaf, reported as an invalid
            // signature rather than a changed one.
            Self::TeamIdMismatch { .. } => "Yes, but the signature is invalid",
            _ => SIGNATURE_CHANGED,
        }
    }
}

/// Files outside the binary that special slots seal (the bundle's), when known.
#[derive(Clone, Debug, Default)]
pub struct ExternalFiles {
    /// `Contents/Info.plist` bytes (special slot 1).
    pub info_plist: Option<Vec<u8>>,
    /// `Contents/_CodeSignature/CodeResources` bytes (special slot 3).
    pub code_resources: Option<Vec<u8>>,
}

/// What a special slot was compared with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "hash")]
pub enum SlotState {
    /// Matches the blob or file it seals.
    Verified,
    /// Seals a file outside the binary that was not available; the sealed hash.
    External(String),
    /// Does not match.
    Mismatch,
}

/// One non-empty special slot of a CodeDirectory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpecialSlot {
    /// Slot number (slot -n in codesign's notation).
    pub slot: u32,
    /// Name: InfoSlot, Requirements, ResourceDir, Entitlements, DEREntitlements, ...
    pub name: &'static str,
    /// Result of the comparison.
    pub state: SlotState,
}

fn special_slot_name(n: u32) -> &'static str {
    match n {
        codesign::SLOT_INFO => "InfoSlot",
        codesign::SLOT_REQUIREMENTS => "Requirements",
        codesign::SLOT_RESOURCE_DIR => "ResourceDir",
        codesign::SLOT_APPLICATION => "Application",
        codesign::SLOT_ENTITLEMENTS => "Entitlements",
        codesign::SLOT_REP_SPECIFIC => "RepSpecific",
        codesign::SLOT_DER_ENTITLEMENTS => "DEREntitlements",
        8 => "LaunchConstraintSelf",
        9 => "LaunchConstraintParent",
        10 => "LaunchConstraintResponsible",
        11 => "LibraryConstraint",
        _ => "Unknown",
    }
}

/// A CodeDirectory's facts and its verification.
#[derive(Clone, Debug, Serialize)]
pub struct CodeDirectoryReport {
    /// SuperBlob slot (0, or 0x1000.. for alternates).
    pub slot: u32,
    /// Format version.
    pub version: u32,
    /// Flags.
    pub flags: CodeSignFlags,
    /// Hash type.
    pub hash_type: HashType,
    /// log2 of the page size.
    pub page_size_log2: u8,
    /// Number of code slots.
    pub n_code_slots: u32,
    /// Number of special slots.
    pub n_special_slots: u32,
    /// Bytes covered by page hashes.
    pub code_limit: u64,
    /// First 20 bytes of the digest.
    pub cdhash: CdHash,
    /// The full digest, lowercase hex.
    pub digest: String,
    /// Every code page matched its hash.
    pub pages_verified: bool,
    /// The non-empty special slots.
    pub special_slots: Vec<SpecialSlot>,
}

/// Everything a slice's signature says, verified.
#[derive(Clone, Debug, Serialize)]
pub struct SignatureReport {
    /// Every CodeDirectory, slot order.
    pub code_directories: Vec<CodeDirectoryReport>,
    /// CDHash of the best CodeDirectory.
    pub cdhash: CdHash,
    /// Hash type of that CodeDirectory.
    pub hash_type: HashType,
    /// Raw signing identifier.
    pub identifier: String,
    /// Team ID.
    pub team_id: Option<TeamId>,
    /// Santa's Signing ID (`TEAMID:ident` or `platform:ident`).
    pub signing_id: Option<SigningId>,
    /// Flags of the best CodeDirectory.
    pub flags: CodeSignFlags,
    /// Platform identifier byte.
    pub platform: u8,
    /// Entitlements, from the XML blob or else the DER blob; `None` also when they were not
    /// asked for ([`Detail::Decision`]) or do not decode within their bounds.
    pub entitlements: Option<serde_json::Value>,
    /// The XML entitlements blob is present.
    pub has_xml_entitlements: bool,
    /// The DER entitlements blob is present.
    pub has_der_entitlements: bool,
    /// Number of requirements in the requirements set.
    pub requirements_count: Option<u32>,
    /// The CMS signature (absent for ad-hoc).
    pub cms: Option<CmsSignature>,
    /// The certificate chain, leaf first.
    pub chain: Vec<Certificate>,
    /// Signed by Apple's Software Signing certificate under Apple Root CA.
    pub platform_binary: bool,
}

impl SignatureReport {
    /// SHA-256 of the leaf certificate (Santa's CERTIFICATE identity).
    pub fn leaf_certificate_sha256(&self) -> Option<Sha256> {
        self.chain.first().map(|c| c.sha256)
    }
}

/// One architecture's facts and signing status.
#[derive(Clone, Debug, Serialize)]
pub struct SliceReport {
    /// CPU family.
    pub arch: CpuType,
    /// Raw `cputype`.
    pub cpu_type: i32,
    /// `cpusubtype` without capability bits.
    pub cpu_subtype: u32,
    /// File type.
    pub file_type: MachFileType,
    /// Offset of the slice in the file.
    pub offset: u64,
    /// Size of the slice.
    pub size_bytes: u64,
    /// The slice has a proper `__PAGEZERO`.
    pub has_pagezero: bool,
    /// The signature, if one was found and parsed.
    pub signature: Option<SignatureReport>,
    /// The slice's signing status.
    pub status: SigningStatus,
    /// Why the slice's signature is invalid, when `status` is `Invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<InvalidReason>,
    /// Why the slice's bytes are not a readable Mach-O (then it has no signature and its
    /// `file_type` means nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<MachOError>,
}

/// How much of a signature to decode beyond what its signing status needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// What santad decides on: the status, the CDHash, Signing ID, Team ID and the chain.
    /// Entitlements are not decoded, as no rule type can use them (a hostile entitlements
    /// blob is attacker-controlled bytes on the exec path, parsed before any signature
    /// check): [`SignatureReport::entitlements`] is `None`, the `has_*_entitlements` flags
    /// still say whether the blobs are there, and their special slots are still checked.
    Decision,
    /// Everything `santactl fileinfo` prints, entitlements included.
    Full,
}

/// Parses and verifies the signature of one slice, decoding everything ([`Detail::Full`]).
pub fn verify_slice(slice: &Slice<'_>, external: &ExternalFiles) -> SliceReport {
    verify_slice_with(slice, external, Detail::Full)
}

/// Parses and verifies the signature of one slice, decoding what `detail` asks for.
pub fn verify_slice_with(
    slice: &Slice<'_>,
    external: &ExternalFiles,
    detail: Detail,
) -> SliceReport {
    let mut report = SliceReport {
        arch: slice.cpu,
        cpu_type: slice.cpu_type_raw,
        cpu_subtype: slice.cpu_subtype,
        file_type: slice.file_type,
        offset: slice.offset,
        size_bytes: slice.size_bytes(),
        has_pagezero: slice.has_pagezero,
        signature: None,
        status: SigningStatus::Unsigned,
        invalid_reason: None,
        unreadable: None,
    };
    let Some(loc) = slice.code_signature else {
        return report;
    };
    // The Mach-O parser checked the area lies inside the slice.
    let area = crate::bytes::slice_at(
        slice.bytes,
        loc.data_offset as usize,
        loc.data_size as usize,
    )
    .unwrap_or(&[]);
    let sig = match EmbeddedSignature::parse(area, slice.size_bytes()) {
        Ok(s) => s,
        Err(e) => {
            report.status = SigningStatus::Invalid;
            report.invalid_reason = Some(InvalidReason::Malformed(e));
            return report;
        }
    };
    let (signature, outcome) = verify_embedded(slice.bytes, &sig, external, detail);
    report.signature = Some(signature);
    match outcome {
        Ok(status) => report.status = status,
        Err(r) => {
            report.status = SigningStatus::Invalid;
            report.invalid_reason = Some(r);
        }
    }
    report
}

fn first_err(acc: &mut Option<InvalidReason>, r: InvalidReason) {
    if acc.is_none() {
        *acc = Some(r);
    }
}

fn verify_embedded(
    code: &[u8],
    sig: &EmbeddedSignature<'_>,
    external: &ExternalFiles,
    detail: Detail,
) -> (SignatureReport, Result<SigningStatus, InvalidReason>) {
    let mut failure: Option<InvalidReason> = None;
    let mut cd_reports = Vec::with_capacity(sig.code_directories.len());
    for cd in &sig.code_directories {
        let pages = verify_pages(code, cd);
        if let Err(r) = &pages {
            first_err(&mut failure, r.clone());
        }
        let specials = verify_special_slots(sig, cd, external, &mut failure);
        let digest = cd.digest();
        cd_reports.push(CodeDirectoryReport {
            slot: cd.slot,
            version: cd.version,
            flags: cd.flags,
            hash_type: cd.hash_type,
            page_size_log2: cd.page_size_log2,
            n_code_slots: cd.n_code_slots,
            n_special_slots: cd.n_special_slots,
            code_limit: cd.code_limit,
            // Every hash type's digest is at least 20 bytes.
            cdhash: CdHash::from_prefix(&digest).unwrap_or_else(|| cd.cdhash()),
            digest: crate::ids::hex(&digest),
            pages_verified: pages.is_ok(),
            special_slots: specials,
        });
    }
    // Internal blobs that no CodeDirectory seals could be swapped freely.
    for b in &sig.superblob.blobs {
        let sealable = b.slot > 0 && b.slot < codesign::SLOT_ALTERNATE_CODE_DIRECTORIES;
        if sealable
            && sig
                .code_directories
                .iter()
                .any(|cd| b.slot > cd.n_special_slots)
        {
            first_err(&mut failure, InvalidReason::UnsealedBlob { slot: b.slot });
        }
    }

    let best = sig.best_code_directory();
    let best_cdhash = cd_reports
        .iter()
        .find(|r| r.slot == best.slot)
        .map_or_else(|| best.cdhash(), |r| r.cdhash);
    let xml = sig
        .superblob
        .blob(codesign::SLOT_ENTITLEMENTS)
        .filter(|b| b.magic == codesign::MAGIC_ENTITLEMENTS);
    let der = sig
        .superblob
        .blob(codesign::SLOT_DER_ENTITLEMENTS)
        .filter(|b| b.magic == codesign::MAGIC_DER_ENTITLEMENTS);
    let entitlements = match detail {
        Detail::Decision => None,
        Detail::Full => xml
            .and_then(|b| crate::entitlements::from_xml(b.payload()).ok())
            .or_else(|| der.and_then(|b| crate::entitlements::from_der(b.payload()).ok())),
    };
    let team_id = best.team();
    let mut report = SignatureReport {
        code_directories: cd_reports,
        cdhash: best_cdhash,
        hash_type: best.hash_type,
        identifier: best.identifier.to_string(),
        signing_id: SigningId::format(best.identifier, team_id.as_ref(), best.platform),
        team_id,
        flags: best.flags,
        platform: best.platform,
        entitlements,
        has_xml_entitlements: xml.is_some(),
        has_der_entitlements: der.is_some(),
        requirements_count: sig.requirements_count(),
        cms: None,
        chain: Vec::new(),
        platform_binary: false,
    };

    let adhoc = best.flags.adhoc();
    let cms = match (sig.cms_payload(), adhoc) {
        (None, true) => None,
        (None, false) => {
            first_err(&mut failure, InvalidReason::MissingCms);
            None
        }
        (Some(payload), _) => match CmsSignature::parse(payload) {
            Ok(c) => Some(c),
            Err(e) => {
                // An ad-hoc signature's CMS is ignored by the kernel; a broken one is still
                // a sign of tampering.
                first_err(&mut failure, InvalidReason::Cms(e));
                None
            }
        },
    };
    let mut production_leaf = false;
    if let (Some(cms), false) = (&cms, adhoc) {
        if let Err(r) = verify_cms(cms, sig) {
            first_err(&mut failure, r);
        }
        let chain: Vec<Certificate> = cms
            .chain_indices()
            .into_iter()
            .map(|i| cms.certificates[i].clone())
            .collect();
        // Santa validates without requiring a trusted anchor (Security's static check with no
        // anchor policy), so a chain that ends at any self-signed root verifies. What Apple's
        // root adds is trust in what the leaf claims: only under it are the leaf's production
        // markers and its Team ID Apple's word. Santa's `IsProductionSigningCert` reads the
        // markers alone and says it is best-effort, relying on Endpoint Security for runtime
        // decisions; with no kernel to vouch here, a leaf under any other root is a
        // development certificate ("Yes, but with development certificate"): its certificate
        // and CDHash rules match, its Team ID and Signing ID rules cannot.
        let anchored = chain
            .last()
            .is_some_and(|root| root.sha256 == APPLE_ROOT_CA_SHA256);
        let leaf = &chain[0];
        report.platform_binary = anchored && leaf.has_extension(oid::APPLE_SOFTWARE_SIGNING);
        production_leaf = anchored
            && [
                oid::APPLE_MAC_APP_STORE,
                oid::APPLE_DEVELOPER_ID_APPLICATION,
                oid::APPLE_IOS_APP_STORE,
                oid::APPLE_SOFTWARE_SIGNING,
            ]
            .iter()
            .any(|o| leaf.has_extension(o));
        // The CodeDirectory's Team ID is the signer's claim; the certificate says whose key
        // signed (Apple writes the team into the certificates it issues as the subject's OU,
        // and `codesign` takes the Team ID from there). A CodeDirectory naming another team
        // than its leaf's is refused, under any root: without this, anyone holding any
        // Developer ID could name another team in the CodeDirectory and match that team's
        // Team ID and Signing ID rules.
        // Apple's own signing certificates (the App Stores' re-signing, its software signing)
        // are not issued to the team they sign for, so only certificates issued to a team
        // (Developer ID, development) are held to it.
        let apples_own = [
            oid::APPLE_MAC_APP_STORE,
            oid::APPLE_IOS_APP_STORE,
            oid::APPLE_SOFTWARE_SIGNING,
        ]
        .iter()
        .any(|o| leaf.has_extension(o));
        if !apples_own
            && let Some(team) = &report.team_id
            && leaf.subject.organizational_unit.as_deref() != Some(team.as_str())
        {
            first_err(&mut failure, InvalidReason::TeamIdMismatch { team: *team });
        }
        report.chain = chain;
    }
    report.cms = cms;
    let outcome = match failure {
        Some(r) => Err(r),
        None if adhoc => Ok(SigningStatus::AdHoc),
        None if report.platform_binary || production_leaf => Ok(SigningStatus::Production),
        None => Ok(SigningStatus::Development),
    };
    (report, outcome)
}

/// Hashes every code page and compares it with its slot.
fn verify_pages(code: &[u8], cd: &CodeDirectory<'_>) -> Result<(), InvalidReason> {
    // `EmbeddedSignature::parse` checked `code_limit <= code.len()`.
    let limit = usize::try_from(cd.code_limit)
        .unwrap_or(usize::MAX)
        .min(code.len());
    let page = cd
        .page_size_bytes()
        .map_or(limit.max(1), |p| usize::try_from(p).unwrap_or(usize::MAX));
    let size = cd.hash_type.hash_size();
    for i in 0..cd.n_code_slots {
        let mismatch = InvalidReason::PageHashMismatch {
            code_directory: cd.slot,
            page: i,
        };
        let start = (i as usize).saturating_mul(page);
        let end = start.saturating_add(page).min(limit);
        let bytes = code.get(start..end).ok_or(mismatch.clone())?;
        let want = cd.code_slot(i).ok_or(mismatch.clone())?;
        if &cd.hash_type.digest(bytes).as_ref()[..size] != want {
            return Err(mismatch);
        }
    }
    Ok(())
}

fn verify_special_slots(
    sig: &EmbeddedSignature<'_>,
    cd: &CodeDirectory<'_>,
    external: &ExternalFiles,
    failure: &mut Option<InvalidReason>,
) -> Vec<SpecialSlot> {
    let mut out = Vec::new();
    let size = cd.hash_type.hash_size();
    for n in 1..=cd.n_special_slots {
        let Some(want) = cd.special_slot(n) else {
            continue;
        };
        let empty = want.iter().all(|&b| b == 0);
        let mismatch = InvalidReason::SpecialSlotMismatch {
            code_directory: cd.slot,
            special_slot: n,
        };
        let matches = |bytes: &[u8]| &cd.hash_type.digest(bytes).as_ref()[..size] == want;
        let external_file = match n {
            codesign::SLOT_INFO => Some(external.info_plist.as_deref()),
            codesign::SLOT_RESOURCE_DIR => Some(external.code_resources.as_deref()),
            codesign::SLOT_APPLICATION | codesign::SLOT_REP_SPECIFIC => Some(None),
            _ => None,
        };
        let state = match (sig.superblob.blob(n), external_file) {
            (Some(blob), _) if matches(blob.bytes) => SlotState::Verified,
            (Some(_), _) => SlotState::Mismatch,
            (None, _) if empty => continue,
            (None, Some(Some(file))) if matches(file) => SlotState::Verified,
            (None, Some(Some(_))) => SlotState::Mismatch,
            (None, Some(None)) => SlotState::External(crate::ids::hex(want)),
            // A sealed internal blob that is missing.
            (None, None) => SlotState::Mismatch,
        };
        if state == SlotState::Mismatch {
            first_err(failure, mismatch);
        }
        out.push(SpecialSlot {
            slot: n,
            name: special_slot_name(n),
            state,
        });
    }
    out
}

/// Whether `issuer`'s key made `child`'s signature, as the reason a chain fails.
fn signed_by(child: &Certificate, issuer: &Certificate) -> Result<(), InvalidReason> {
    match child.signed_by(issuer) {
        SignatureCheck::Valid => Ok(()),
        SignatureCheck::Invalid => Err(InvalidReason::CertificateSignatureInvalid {
            certificate: child.sha256,
        }),
        SignatureCheck::Unsupported => Err(InvalidReason::UnsupportedAlgorithm),
    }
}

fn verify_cms(cms: &CmsSignature, sig: &EmbeddedSignature<'_>) -> Result<(), InvalidReason> {
    let cd0 = &sig.code_directories[0];
    let leaf = cms.signer();
    let signed_content = match &cms.signed_attributes {
        Some(attrs) => {
            let digest = cms.digest_algorithm.digest(cd0.bytes);
            if cms.message_digest.as_deref() != Some(digest.as_slice()) {
                return Err(InvalidReason::CmsDigestMismatch);
            }
            attrs.as_slice()
        }
        None => cd0.bytes,
    };
    match leaf
        .public_key
        .verify(cms.digest_algorithm, signed_content, &cms.signature)
    {
        SignatureCheck::Valid => {}
        SignatureCheck::Invalid => return Err(InvalidReason::CmsSignatureInvalid),
        SignatureCheck::Unsupported => return Err(InvalidReason::UnsupportedAlgorithm),
    }
    // Every CodeDirectory other than slot 0 must be named by a signed attribute, or an
    // attacker could swap in an alternate CD (the kernel may pick it) with other page hashes.
    for cd in &sig.code_directories[1..] {
        let full = cd.digest();
        let in_v2 = cms
            .cdhashes_v2
            .iter()
            .any(|h| h.algorithm == Some(cd.hash_type.cms_algorithm()) && h.digest == full);
        let in_v1 = cms
            .cdhashes_v1
            .iter()
            .any(|h| h.as_slice() == &full[..20.min(full.len())]);
        if !(in_v2 || in_v1) {
            return Err(InvalidReason::UnboundCodeDirectory {
                code_directory: cd.slot,
            });
        }
    }
    let chain = cms.chain_indices();
    for pair in chain.windows(2) {
        signed_by(&cms.certificates[pair[0]], &cms.certificates[pair[1]])?;
    }
    let root_index = chain.last().copied().unwrap_or(cms.signer_index);
    let root = &cms.certificates[root_index];
    if !root.is_self_issued() {
        return Err(InvalidReason::ChainIncomplete);
    }
    signed_by(root, root)?;
    check_chain_constraints(cms, &chain)?;
    // With a signing time, every certificate must have been valid then. Without one, Apple's
    // verifier tolerates certificates that have expired (or are not valid yet): it has no time
    // to judge them at but now, and a signature does not stop being one when its intermediate
    // expires.
    if let Some(at) = cms.signing_time_unix {
        for &i in &chain {
            let c = &cms.certificates[i];
            if at < c.not_before_unix || at > c.not_after_unix {
                return Err(InvalidReason::CertificateNotValidAtSigningTime {
                    certificate: c.sha256,
                });
            }
        }
    }
    Ok(())
}

/// What a chain's certificates may do (RFC 5280 §4.2.1, as any X.509 path validation checks):
/// every issuer is a CA (`basicConstraints` `cA`) allowed to sign certificates (`keyUsage`
/// `keyCertSign`, when it has a key usage) within its `pathLenConstraint`; the leaf may make
/// signatures (`digitalSignature`, when it has a key usage) and sign code (`id-kp-codeSigning`
/// or any purpose, when it names its purposes). A chain linked by names and signatures alone
/// would let any end-entity certificate act as an intermediate.
fn check_chain_constraints(cms: &CmsSignature, chain: &[usize]) -> Result<(), InvalidReason> {
    let refuse = |c: &Certificate, why| InvalidReason::CertificateNotAllowed {
        certificate: c.sha256,
        why,
    };
    let leaf = &cms.certificates[chain[0]];
    if leaf
        .key_usage
        .is_some_and(|k| k & x509::KEY_USAGE_DIGITAL_SIGNATURE == 0)
    {
        return Err(refuse(leaf, "its key usage does not allow signatures"));
    }
    if let Some(purposes) = &leaf.ext_key_usage
        && !purposes
            .iter()
            .any(|p| p == oid::CODE_SIGNING || p == oid::ANY_EXT_KEY_USAGE)
    {
        return Err(refuse(
            leaf,
            "its extended key usage does not allow code signing",
        ));
    }
    for (depth, &i) in chain.iter().enumerate().skip(1) {
        let issuer = &cms.certificates[i];
        let Some(bc) = issuer.basic_constraints.filter(|bc| bc.ca) else {
            return Err(refuse(issuer, "it issues a certificate but is not a CA"));
        };
        if issuer
            .key_usage
            .is_some_and(|k| k & x509::KEY_USAGE_KEY_CERT_SIGN == 0)
        {
            return Err(refuse(
                issuer,
                "its key usage does not allow signing certificates",
            ));
        }
        // CA certificates between this one and the leaf.
        let below = depth as u32 - 1;
        if bc.path_len.is_some_and(|max| below > max) {
            return Err(refuse(issuer, "its path length constraint is exceeded"));
        }
    }
    Ok(())
}

/// The signing status of a whole file from its slices, and why it is invalid when it is, by
/// Santa's rule (`MOLCodesignChecker`): every slice must have the same signer — ad-hoc, or
/// the same certificate chain, an unsigned or unreadable slice counting as an empty chain —
/// and a mismatch takes precedence over any other problem
/// ([`InvalidReason::InconsistentArchitectures`]). Then the file is unsigned if every slice
/// is, invalid if one slice is (with that slice's reason), else what its slices are.
pub fn combine_status(slices: &[SliceReport]) -> (SigningStatus, Option<InvalidReason>) {
    let Some(first) = slices.first() else {
        return (SigningStatus::Unsigned, None);
    };
    if !slices.iter().all(|s| same_signer(s, first)) {
        return (
            SigningStatus::Invalid,
            Some(InvalidReason::InconsistentArchitectures),
        );
    }
    if slices.iter().all(|s| s.status == SigningStatus::Unsigned) {
        return (SigningStatus::Unsigned, None);
    }
    if let Some(s) = slices.iter().find(|s| s.status == SigningStatus::Invalid) {
        return (s.status, s.invalid_reason.clone());
    }
    (first.status, None)
}

/// Santa's signer of a slice for the consistency check: `-` for an ad-hoc signature, else the
/// certificate chain (empty without a signature).
fn same_signer(a: &SliceReport, b: &SliceReport) -> bool {
    fn adhoc(s: &SliceReport) -> bool {
        s.signature.as_ref().is_some_and(|sig| sig.flags.adhoc())
    }
    fn chain(s: &SliceReport) -> impl Iterator<Item = Sha256> + '_ {
        let certs = s.signature.as_ref().map_or(&[][..], |sig| &sig.chain[..]);
        certs.iter().map(|c| c.sha256)
    }
    adhoc(a) == adhoc(b) && (adhoc(a) || chain(a).eq(chain(b)))
}

impl SliceReport {
    /// A fat record whose bytes are not a readable thin Mach-O: no signing information, as
    /// Security finds none at that offset.
    pub fn unreadable(slice: &UnreadableSlice) -> SliceReport {
        SliceReport {
            arch: CpuType::from_raw(slice.cpu_type_raw),
            cpu_type: slice.cpu_type_raw,
            cpu_subtype: slice.cpu_subtype,
            file_type: MachFileType::Other(0),
            offset: slice.offset,
            size_bytes: slice.size,
            has_pagezero: false,
            signature: None,
            status: SigningStatus::Unsigned,
            invalid_reason: None,
            unreadable: Some(slice.error.clone()),
        }
    }
}
