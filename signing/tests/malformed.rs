//! Bad input: truncated, huge-count, overlapping-offset and zero-length inputs each give a typed
//! error; arbitrary bytes and mutated fixtures never panic. Proptest prints the failing input and
//! its seed on failure (set `PROPTEST_CASES` for longer runs).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use common::fixture;
use proptest::prelude::*;
use santa_signing::cms::{CmsError, CmsSignature};
use santa_signing::codesign::{CodeDirectory, SignatureError, SuperBlob};
use santa_signing::macho::{self, MachOError};
use santa_signing::verify::{ExternalFiles, InvalidReason, SigningStatus};
use santa_signing::{FileSigning, plist};

const FIXTURES: &[&str] = &[
    "linker_signed_arm64_bundle.markupsafe_speedups.so",
    "linker_signed_arm64_exec.node-pty_spawn-helper",
    "fat_x86unsigned_arm64linker.fsevents.node",
    "fat_exec_x86unsigned_arm64linker.get-windows_main",
    "adhoc_codesign_arm64.pillow13_libwebpdemux.2.dylib",
    "adhoc_dualcd_x86_64.pillow950_libwebpdemux.2.dylib",
    "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector",
];

fn fat_header(entries: &[(u32, u32, u32)]) -> Vec<u8> {
    let mut b = vec![0xca, 0xfe, 0xba, 0xbe];
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for &(cpu, off, size) in entries {
        for v in [cpu, 0, off, size, 12] {
            b.extend_from_slice(&v.to_be_bytes());
        }
    }
    b
}

#[test]
fn zero_length_and_truncated_macho() {
    assert!(matches!(
        macho::parse(&[]),
        Err(MachOError::Truncated { what: "magic", .. })
    ));
    // A 64-bit little-endian magic with nothing after it.
    assert!(matches!(
        macho::parse(&[0xcf, 0xfa, 0xed, 0xfe]),
        Err(MachOError::Truncated {
            what: "mach_header",
            ..
        })
    ));
    // Every prefix of a real binary up to its header and load commands is a typed error.
    let b = fixture(FIXTURES[1]);
    for len in [8, 31, 33, 100, 1000] {
        assert!(macho::parse(&b[..len]).is_err(), "prefix {len}");
    }
}

#[test]
fn huge_counts_are_refused_before_allocation() {
    let mut b = fat_header(&[]);
    b[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        macho::parse(&b).unwrap_err(),
        MachOError::TooManyArchs { count: u32::MAX }
    );
    assert_eq!(
        macho::parse(&fat_header(&[])).unwrap_err(),
        MachOError::NoArchs
    );
    // 65 slices: one over Santa's cap.
    let b = fat_header(&vec![(7, 0x1000, 0x10); 65]);
    assert_eq!(
        macho::parse(&b).unwrap_err(),
        MachOError::TooManyArchs { count: 65 }
    );
    // A thin header claiming u32::MAX load commands.
    let mut thin = fixture(FIXTURES[1]);
    thin[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        macho::parse(&thin).unwrap_err(),
        MachOError::TooManyLoadCommands { count: u32::MAX }
    );
    // A SuperBlob claiming u32::MAX blobs.
    let mut sb = vec![0xfa, 0xde, 0x0c, 0xc0, 0, 0, 0, 12];
    sb.extend_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        SuperBlob::parse(&sb).unwrap_err(),
        SignatureError::TooManyBlobs { count: u32::MAX }
    );
}

#[test]
fn overlapping_offsets_are_refused() {
    // Two slices sharing bytes.
    let mut b = fat_header(&[(7, 0x1000, 0x2000), (12, 0x2000, 0x2000)]);
    b.resize(0x5000, 0);
    assert_eq!(
        macho::parse(&b).unwrap_err(),
        MachOError::SlicesOverlap {
            first: 0,
            second: Some(1)
        }
    );
    // A slice over the fat header itself.
    let mut b = fat_header(&[(7, 0, 0x100)]);
    b.resize(0x100, 0);
    assert_eq!(
        macho::parse(&b).unwrap_err(),
        MachOError::SlicesOverlap {
            first: 0,
            second: None
        }
    );
    // A slice past the end of the file, and one whose offset + size overflows.
    let b = fat_header(&[(7, 0x1000, 0x1000)]);
    assert!(matches!(
        macho::parse(&b),
        Err(MachOError::SliceOutOfBounds { index: 0, .. })
    ));
    let b = fat_header(&[(7, u32::MAX, u32::MAX)]);
    assert!(matches!(
        macho::parse(&b),
        Err(MachOError::SliceOutOfBounds { .. })
    ));
    // Two blobs at the same offset inside a SuperBlob.
    let mut sb = Vec::new();
    for v in [0xfade_0cc0u32, 44, 2, 0, 28, 2, 28, 0xfade_0c01, 16, 0, 0] {
        sb.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(
        SuperBlob::parse(&sb).unwrap_err(),
        SignatureError::BlobsOverlap {
            first: 0,
            second: 2
        }
    );
}

#[test]
fn zero_length_signature_parts_are_typed_errors() {
    assert!(matches!(
        SuperBlob::parse(&[]),
        Err(SignatureError::Truncated { .. })
    ));
    assert!(matches!(
        CodeDirectory::parse(0, &[]),
        Err(SignatureError::Truncated { .. })
    ));
    assert!(matches!(CmsSignature::parse(&[]), Err(CmsError::Asn1(_))));
    assert!(plist::parse(&[]).is_err());
}

#[test]
fn code_directory_with_lying_counts() {
    // Take the real CodeDirectory of the linker-signed executable and make it lie.
    let b = fixture(FIXTURES[1]);
    let sig = 49968; // LC_CODE_SIGNATURE dataoff from the manifest
    let cd_off = sig + u32::from_be_bytes(b[sig + 16..sig + 20].try_into().unwrap()) as usize;
    let cd_len = u32::from_be_bytes(b[cd_off + 4..cd_off + 8].try_into().unwrap()) as usize;
    let cd = &b[cd_off..cd_off + cd_len];
    assert!(CodeDirectory::parse(0, cd).is_ok());
    let mut lie = cd.to_vec();
    lie[28..32].copy_from_slice(&u32::MAX.to_be_bytes()); // nCodeSlots
    assert_eq!(
        CodeDirectory::parse(0, &lie).unwrap_err(),
        SignatureError::HashesOutOfBounds
    );
    let mut lie = cd.to_vec();
    lie[24..28].copy_from_slice(&1000u32.to_be_bytes()); // nSpecialSlots
    assert_eq!(
        CodeDirectory::parse(0, &lie).unwrap_err(),
        SignatureError::TooManySpecialSlots { count: 1000 }
    );
    let mut lie = cd.to_vec();
    lie[37] = 9; // unknown hash type
    assert!(matches!(
        CodeDirectory::parse(0, &lie),
        Err(SignatureError::BadHashType { hash_type: 9, .. })
    ));
    // In the file, a lying CD is an Invalid status with the parse error as its reason.
    let mut file = b.clone();
    file[cd_off + 28..cd_off + 32].copy_from_slice(&u32::MAX.to_be_bytes());
    let s = FileSigning::from_bytes(&file, &ExternalFiles::default()).unwrap();
    assert_eq!(s.status, SigningStatus::Invalid);
    assert_eq!(
        s.invalid_reason,
        Some(InvalidReason::Malformed(SignatureError::HashesOutOfBounds))
    );
}

fn analyze(bytes: &[u8]) {
    // Any outcome is fine; a panic or an unbounded allocation is not.
    if let Ok(s) = FileSigning::from_bytes(bytes, &ExternalFiles::default()) {
        let _ = serde_json::to_string(&s).unwrap();
        let _ = (
            s.is_missing_page_zero(),
            s.universal_signers().map(|u| u.len()),
        );
        let _ = (s.signing_time_unix(), s.secure_signing_time_unix());
    }
    if let Ok(m) = macho::parse(bytes) {
        for slice in &m.slices {
            if let Some(plist) = macho::embedded_info_plist(slice) {
                let _ = plist::parse(plist);
            }
        }
    }
    let _ = CmsSignature::parse(bytes);
    let _ = plist::parse(bytes);
    let _ = santa_signing::entitlements::from_der(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        analyze(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_macho_magic_never_panic(
        magic in prop::sample::select(vec![
            [0xcf, 0xfa, 0xed, 0xfe], [0xce, 0xfa, 0xed, 0xfe],
            [0xca, 0xfe, 0xba, 0xbe], [0xca, 0xfe, 0xba, 0xbf], [0xfe, 0xed, 0xfa, 0xcf],
        ]),
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut b = magic.to_vec();
        b.extend_from_slice(&body);
        analyze(&b);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut b = fixture(FIXTURES[which]);
        // Concentrate edits on the signature area, where the structure is densest: the last
        // quarter of the file holds it for every fixture.
        let tail = b.len() * 3 / 4;
        for (at, v) in edits {
            let i = tail + at.index(b.len() - tail);
            b[i] = v;
        }
        if truncate {
            b.truncate(cut.index(b.len() + 1));
        }
        analyze(&b);
    }

    #[test]
    fn mutated_fixture_headers_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8),
    ) {
        let mut b = fixture(FIXTURES[which]);
        for (at, v) in edits {
            if at < b.len() {
                b[at] = v;
            }
        }
        analyze(&b);
    }
}
