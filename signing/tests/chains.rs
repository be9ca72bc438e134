//! Certificate chains as Santa judges them, on a real Mach-O (the node-pty spawn helper of the
//! shared fixtures) re-signed by `fixtures/make_signed.py` with chains made for each case: a
//! self-signed root other than Apple's, intermediates that expired before or after a signing
//! time, a CodeDirectory whose Team ID is not the leaf's OU, and chains whose extensions forbid
//! how they are used. The expectations are in `fixtures/signed/expected.json`, written when the
//! files were made.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

use santa_signing::verify::{ExternalFiles, InvalidReason, SigningStatus};
use santa_signing::{FileSigning, file_info};
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signed")
}

fn expected(case: &str) -> Value {
    let all: Value =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    all[case].clone()
}

fn signing(case: &str) -> FileSigning {
    let bytes = std::fs::read(dir().join(format!("{case}.macho"))).unwrap();
    assert_eq!(
        santa_signing::Sha256::digest(&bytes).to_string(),
        expected(case)["sha256"],
        "{case}.macho is the file make_signed.py wrote"
    );
    FileSigning::from_bytes(&bytes, &ExternalFiles::default()).unwrap()
}

fn code_signed(case: &str) -> String {
    let info = file_info(&dir().join(format!("{case}.macho")), &Default::default()).unwrap();
    info.code_signed()
}

/// A valid signature under a root that is not Apple's: Santa validates without requiring a
/// trusted anchor, so it is validly signed, by a development certificate.
fn assert_valid_development(case: &str) {
    let s = signing(case);
    let want = expected(case);
    assert_eq!(
        s.status,
        SigningStatus::Development,
        "{case}: {:?}",
        s.invalid_reason
    );
    assert_eq!(
        code_signed(case),
        "Yes, but with development certificate",
        "{case}"
    );
    // The certificate and CDHash identities are there for rules to match.
    assert_eq!(
        s.leaf_certificate_sha256().unwrap().to_string(),
        want["leaf_cert_sha256"],
        "{case}"
    );
    let chain: Vec<String> = s.chain().iter().map(|c| c.sha256.to_string()).collect();
    assert_eq!(serde_json::json!(chain), want["chain_sha256"], "{case}");
    assert!(s.cdhash().is_some(), "{case}");
    assert!(!s.is_platform_binary(), "{case}");
}

fn invalid_reason(case: &str) -> InvalidReason {
    let s = signing(case);
    assert_eq!(s.status, SigningStatus::Invalid, "{case}");
    s.invalid_reason.unwrap()
}

#[test]
fn a_self_signed_root_that_is_not_apples_verifies_as_a_development_certificate() {
    assert_valid_development("selfsigned_root");
}

#[test]
fn production_markers_under_a_root_that_is_not_apples_are_not_trusted() {
    // The leaf carries the Developer ID Application extension, but only Apple's root makes that
    // Apple's word: still a development certificate, so no Team ID or Signing ID rule applies.
    assert_valid_development("selfsigned_root_devid_marker");
}

#[test]
fn an_expired_intermediate_is_tolerated_without_a_signing_time() {
    assert_valid_development("expired_intermediate_no_signing_time");
}

#[test]
fn an_intermediate_expired_at_the_signing_time_is_invalid() {
    assert!(matches!(
        invalid_reason("expired_intermediate_signed_after_expiry"),
        InvalidReason::CertificateNotValidAtSigningTime { .. }
    ));
}

#[test]
fn a_code_directory_naming_another_team_than_the_leafs_is_invalid() {
    let reason = invalid_reason("team_id_not_the_leafs");
    assert!(
        matches!(reason, InvalidReason::TeamIdMismatch { team } if team.as_str() == "ZZZZZ99999"),
        "{reason:?}"
    );
    assert_eq!(
        code_signed("team_id_not_the_leafs"),
        "Yes, but the signature is invalid"
    );
}

#[test]
fn chains_whose_extensions_forbid_their_use_are_invalid() {
    for case in [
        "intermediate_not_a_ca",
        "leaf_not_for_code_signing",
        "path_length_exceeded",
    ] {
        let reason = invalid_reason(case);
        assert!(
            matches!(reason, InvalidReason::CertificateNotAllowed { .. }),
            "{case}: {reason:?}"
        );
    }
}
