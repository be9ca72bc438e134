//! The whole signature parse of a file's bytes, as santad's exec path runs it (Decision) and
//! as `santactl fileinfo` runs it (Full): Mach-O (thin and fat), SuperBlob, CodeDirectories,
//! page and special-slot hashes, CMS, X.509, the hash-agility plist and entitlements. Any
//! panic, overflow or out-of-bounds access is a finding; so is a Decision that differs from
//! the Full one in anything a rule decides on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santa_signing::FileSigning;
use santa_signing::verify::{Detail, ExternalFiles};

fuzz_target!(|data: &[u8]| {
    let external = ExternalFiles::default();
    let decision = FileSigning::from_bytes_with(data, &external, Detail::Decision);
    let full = FileSigning::from_bytes_with(data, &external, Detail::Full);
    match (decision, full) {
        (Ok(d), Ok(f)) => {
            assert_eq!(d.status, f.status);
            assert_eq!(d.cdhash(), f.cdhash());
            assert_eq!(d.team_id(), f.team_id());
            assert_eq!(d.signing_id(), f.signing_id());
            assert_eq!(d.leaf_certificate_sha256(), f.leaf_certificate_sha256());
            assert_eq!(d.is_platform_binary(), f.is_platform_binary());
            for s in &d.slices {
                assert!(
                    s.signature
                        .as_ref()
                        .is_none_or(|s| s.entitlements.is_none())
                );
            }
        }
        (Err(d), Err(f)) => assert_eq!(d, f),
        (d, f) => panic!("Decision and Full disagree on the format: {d:?} / {f:?}"),
    }
    // The CMS blob parser on its own (the fixtures' blobs are deep inside the file).
    let _ = santa_signing::cms::CmsSignature::parse(data);
});
