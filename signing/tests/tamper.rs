//! A byte flipped in the code, a CodeDirectory, the CMS or a sealed blob turns the status to
//! invalid with the reason that names it. Offsets are found from golden facts (the manifest's
//! slice offsets and certificate hashes, strings in the file), not from this crate's parser.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use common::{be32, fixture, fixture_path};
use santa_signing::verify::{ExternalFiles, InvalidReason, SigningStatus};
use santa_signing::{FileSigning, Sha256};

const DEVID: &str = "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector";
/// From manifest.json: the x86_64 slice of the Developer ID binary.
const DEVID_X86_OFFSET: usize = 16384;
const DEVID_X86_CODE_LIMIT: usize = 1_308_976;
const DEVID_LEAF_SHA256: &str = "0a06c79b2e48d77e9f694fa3e4b71cc64b01d6ab2743b04ecf5364ee3e29c262";
const DUALCD: &str = "adhoc_dualcd_x86_64.pillow950_libwebpdemux.2.dylib";

/// Each slice's status and, when invalid, why.
fn status_of(bytes: &[u8]) -> Vec<(SigningStatus, Option<InvalidReason>)> {
    FileSigning::from_bytes(bytes, &ExternalFiles::default())
        .unwrap()
        .slices
        .into_iter()
        .map(|s| (s.status, s.invalid_reason))
        .collect()
}

/// The first slice's status must be invalid for `reason`.
fn assert_first_slice_invalid(bytes: &[u8], reason: InvalidReason) {
    assert_eq!(status_of(bytes)[0], (SigningStatus::Invalid, Some(reason)));
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> usize {
    from + hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("pattern not found"))
}

/// The Developer ID binary with the case of the first letter of `needle` (a string inside the
/// x86_64 slice's signature) flipped.
fn devid_with_x86_signature_string_flipped(needle: &[u8]) -> Vec<u8> {
    let mut b = fixture(DEVID);
    let sig_start = DEVID_X86_OFFSET + DEVID_X86_CODE_LIMIT;
    let at = find(&b, needle, sig_start);
    b[at] ^= 0x20;
    b
}

#[test]
fn untouched_devid_slices_are_production() {
    let b = fixture(DEVID);
    assert_eq!(
        status_of(&b),
        vec![
            (SigningStatus::Production, None),
            (SigningStatus::Production, None)
        ]
    );
}

#[test]
fn flipped_code_byte_is_a_page_hash_mismatch() {
    let mut b = fixture(DEVID);
    b[DEVID_X86_OFFSET + 5 * 4096 + 100] ^= 0x01;
    assert_first_slice_invalid(
        &b,
        InvalidReason::PageHashMismatch {
            code_directory: 0,
            page: 5,
        },
    );
}

#[test]
fn flipped_code_directory_byte_breaks_the_cms_digest() {
    // The identifier string inside the x86_64 slice's CodeDirectory.
    let b = devid_with_x86_signature_string_flipped(b"org.mitmproxy.macos-redirector\0");
    assert_first_slice_invalid(&b, InvalidReason::CmsDigestMismatch);
}

#[test]
fn flipped_signed_attribute_breaks_the_cms_signature() {
    let mut b = fixture(DEVID);
    let sig_start = DEVID_X86_OFFSET + DEVID_X86_CODE_LIMIT;
    // signingTime attribute: OID 1.2.840.113549.1.9.5, SET, UTCTime "261022004314Z".
    let oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05,
    ];
    let at = find(&b, &oid, sig_start) + oid.len() + 2 + 2;
    assert_eq!(&b[at..at + 13], b"261022004314Z");
    b[at + 11] = b'5'; // 14 -> 15 seconds: still a valid time, no longer what was signed
    assert_first_slice_invalid(&b, InvalidReason::CmsSignatureInvalid);
}

#[test]
fn flipped_certificate_byte_breaks_the_chain() {
    let mut b = fixture(DEVID);
    // Locate the leaf certificate by its golden SHA-256: every `30 82 len` is a candidate.
    let sig_start = DEVID_X86_OFFSET + DEVID_X86_CODE_LIMIT;
    let want = Sha256::from_hex(DEVID_LEAF_SHA256).unwrap();
    let (start, len) = (sig_start..b.len() - 4)
        .filter(|&i| b[i] == 0x30 && b[i + 1] == 0x82)
        .map(|i| (i, 4 + usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]))))
        .find(|&(i, len)| i + len <= b.len() && Sha256::digest(&b[i..i + len]) == want)
        .expect("leaf certificate present in the x86_64 slice");
    // The last byte belongs to the issuer's signature over the certificate.
    b[start + len - 1] ^= 0x01;
    let flipped = Sha256::digest(&b[start..start + len]);
    assert_first_slice_invalid(
        &b,
        InvalidReason::CertificateSignatureInvalid {
            certificate: flipped,
        },
    );
}

#[test]
fn flipped_entitlements_byte_is_a_special_slot_mismatch() {
    let b = devid_with_x86_signature_string_flipped(b"com.apple.developer.team-identifier");
    assert_first_slice_invalid(
        &b,
        InvalidReason::SpecialSlotMismatch {
            code_directory: 0,
            special_slot: 5,
        },
    );
}

#[test]
fn flipped_page_hash_in_the_alternate_code_directory() {
    let mut b = fixture(DUALCD);
    // The SHA-256 CodeDirectory (slot 0x1000) is the second `fade0c02` blob of the file.
    let magic = [0xfa, 0xde, 0x0c, 0x02];
    let first = find(&b, &magic, 0);
    let second = find(&b, &magic, first + 4);
    let hash_offset = be32(&b, second + 16);
    b[second + hash_offset + 32 * 3] ^= 0x80; // code slot 3
    assert_first_slice_invalid(
        &b,
        InvalidReason::PageHashMismatch {
            code_directory: 0x1000,
            page: 3,
        },
    );
}

#[test]
fn fat_files_with_an_unsigned_slice_are_inconsistent() {
    for name in [
        "fat_x86unsigned_arm64linker.fsevents.node",
        "fat_exec_x86unsigned_arm64linker.get-windows_main",
    ] {
        let b = fixture(name);
        let s = FileSigning::from_bytes(&b, &ExternalFiles::default()).unwrap();
        assert_eq!(
            s.slices.iter().map(|x| &x.status).collect::<Vec<_>>(),
            vec![&SigningStatus::Unsigned, &SigningStatus::AdHoc],
            "{name}"
        );
        assert_eq!(
            (s.status, s.invalid_reason),
            (
                SigningStatus::Invalid,
                Some(InvalidReason::InconsistentArchitectures)
            ),
            "{name}"
        );
    }
}

#[test]
fn modified_info_plist_breaks_special_slot_one() {
    let b = fixture(DEVID);
    let app = fixture_path("devid_app/Mitmproxy Redirector.app/Contents");
    let mut info = std::fs::read(app.join("Info.plist")).unwrap();
    let good = ExternalFiles {
        info_plist: Some(info.clone()),
        code_resources: Some(std::fs::read(app.join("_CodeSignature/CodeResources")).unwrap()),
    };
    let s = FileSigning::from_bytes(&b, &good).unwrap();
    assert_eq!(s.status, SigningStatus::Production);
    let n = info.len();
    info[n / 2] ^= 0x01;
    let bad = ExternalFiles {
        info_plist: Some(info),
        ..good
    };
    let s = FileSigning::from_bytes(&b, &bad).unwrap();
    assert_eq!(
        (s.status, s.invalid_reason),
        (
            SigningStatus::Invalid,
            Some(InvalidReason::SpecialSlotMismatch {
                code_directory: 0,
                special_slot: 1
            })
        )
    );
}

/// The arm64 slice of the Developer ID binary, from manifest.json.
const DEVID_ARM64_OFFSET: usize = 1_359_872;
const DEVID_ARM64_SIG_OFFSET: usize = 1_258_448;
const DEVID_ARM64_SIG_SIZE: usize = 21_968;

#[test]
fn an_alternate_code_directory_not_bound_by_the_cms_is_invalid() {
    // Rebuild the arm64 SuperBlob with one more blob: a copy of the CodeDirectory in slot
    // 0x1000 whose identifier differs by one letter. Its page hashes still hold, but its digest
    // is in neither hash-agility attribute, so the kernel could be steered to it: invalid.
    let mut b = fixture(DEVID);
    let sb = DEVID_ARM64_OFFSET + DEVID_ARM64_SIG_OFFSET;
    let count = be32(&b, sb + 8);
    let mut blobs: Vec<(u32, Vec<u8>)> = (0..count)
        .map(|i| {
            let slot = be32(&b, sb + 12 + 8 * i) as u32;
            let off = sb + be32(&b, sb + 16 + 8 * i);
            (slot, b[off..off + be32(&b, off + 4)].to_vec())
        })
        .collect();
    let mut alt = blobs[0].1.clone();
    assert_eq!(blobs[0].0, 0);
    let ident = be32(&alt, 20);
    alt[ident] ^= 0x20;
    blobs.insert(1, (0x1000, alt));
    let header = 12 + 8 * blobs.len();
    let mut out = Vec::new();
    let total: usize = header + blobs.iter().map(|(_, d)| d.len()).sum::<usize>();
    assert!(total <= DEVID_ARM64_SIG_SIZE, "fits in LC_CODE_SIGNATURE");
    out.extend_from_slice(&0xfade_0cc0u32.to_be_bytes());
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(blobs.len() as u32).to_be_bytes());
    let mut off = header;
    for (slot, d) in &blobs {
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&(off as u32).to_be_bytes());
        off += d.len();
    }
    for (_, d) in &blobs {
        out.extend_from_slice(d);
    }
    b[sb..sb + DEVID_ARM64_SIG_SIZE].fill(0);
    b[sb..sb + out.len()].copy_from_slice(&out);
    let s = FileSigning::from_bytes(&b, &ExternalFiles::default()).unwrap();
    let arm64 = &s.slices[1];
    let sig = arm64.signature.as_ref().unwrap();
    assert_eq!(sig.code_directories.len(), 2);
    assert!(sig.code_directories.iter().all(|cd| cd.pages_verified));
    assert_eq!(
        (arm64.status, arm64.invalid_reason.clone()),
        (
            SigningStatus::Invalid,
            Some(InvalidReason::UnboundCodeDirectory {
                code_directory: 0x1000
            })
        )
    );
    // The same rebuild with an identical copy is bound (same digest) and stays valid.
    let mut b2 = fixture(DEVID);
    let mut same = out.clone();
    let alt_start = be32(&same, 12 + 8 + 4);
    let ident_at = alt_start + ident;
    same[ident_at] ^= 0x20;
    b2[sb..sb + DEVID_ARM64_SIG_SIZE].fill(0);
    b2[sb..sb + same.len()].copy_from_slice(&same);
    let s2 = FileSigning::from_bytes(&b2, &ExternalFiles::default()).unwrap();
    assert_eq!(s2.slices[1].status, SigningStatus::Production);
}
