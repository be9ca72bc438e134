//! Every fixture in `../shared/fixtures/macho` gives exactly the values of its `manifest.json`.
//! The fixtures are required: a missing directory fails the test run, it does not skip.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report
mod common;

use common::{fixtures_dir, manifest};
use santa_signing::verify::{ExternalFiles, SigningStatus, SlotState};
use santa_signing::{FileSigning, HashLimits, hash_path};
use serde_json::Value;

fn fixtures() -> Vec<Value> {
    manifest()["fixtures"].as_array().unwrap().clone()
}

fn external_for(path: &std::path::Path) -> ExternalFiles {
    santa_signing::bundle::external_files_for(path)
}

/// A manifest array of strings.
fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn hex_u32(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn every_fixture_hashes_to_its_manifest_sha256() {
    let fx = fixtures();
    assert_eq!(fx.len(), 7, "manifest lists seven fixtures");
    for f in fx {
        let path = fixtures_dir().join(f["file"].as_str().unwrap());
        let h = hash_path(&path, &HashLimits::default()).unwrap();
        assert_eq!(
            h.sha256.to_string(),
            f["sha256"].as_str().unwrap(),
            "{path:?}"
        );
        assert_eq!(h.stamp.size_bytes, f["size"].as_u64().unwrap());
        assert!(!h.changed);
    }
}

#[test]
fn every_slice_matches_the_manifest() {
    for f in fixtures() {
        let name = f["file"].as_str().unwrap();
        let path = fixtures_dir().join(name);
        let bytes = std::fs::read(&path).unwrap();
        let signing = FileSigning::from_bytes(&bytes, &external_for(&path))
            .unwrap_or_else(|e| panic!("{name}: not Mach-O: {e:?}"));
        assert_eq!(signing.fat, f["fat"].as_bool().unwrap(), "{name}");
        let want_slices = f["slices"].as_array().unwrap();
        assert_eq!(signing.slices.len(), want_slices.len(), "{name}");
        for (got, want) in signing.slices.iter().zip(want_slices) {
            let ctx = format!("{name} [{}]", want["arch"]);
            assert_eq!(
                got.arch.to_string(),
                want["arch"].as_str().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                i64::from(got.cpu_type),
                want["cputype"].as_i64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                u64::from(got.cpu_subtype),
                want["cpusubtype"].as_u64().unwrap()
            );
            assert_eq!(
                got.file_type.constant_name(),
                want["filetype"].as_str().unwrap()
            );
            if let Some(off) = want.get("fat_offset") {
                assert_eq!(got.offset, off.as_u64().unwrap(), "{ctx}");
                assert_eq!(got.size_bytes, want["fat_size"].as_u64().unwrap(), "{ctx}");
            }
            let kind = want["signature_kind"].as_str().unwrap();
            if kind == "unsigned" {
                assert!(got.signature.is_none(), "{ctx}");
                assert_eq!(got.status, SigningStatus::Unsigned, "{ctx}");
                continue;
            }
            let sig = got
                .signature
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: no signature: {:?}", got.status));
            match kind {
                k if k.starts_with("ad-hoc") => {
                    assert_eq!(got.status, SigningStatus::AdHoc, "{ctx}")
                }
                k if k.starts_with("certificate: Developer ID") => {
                    assert_eq!(got.status, SigningStatus::Production, "{ctx}")
                }
                k => panic!("{ctx}: unknown kind {k}"),
            }
            assert_eq!(
                sig.cdhash.to_string(),
                want["cdhash"].as_str().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                sig.hash_type.to_string(),
                want["chosen_cd_hash_type"].as_str().unwrap()
            );
            assert_eq!(sig.flags.0, hex_u32(&want["flags"]), "{ctx}");
            assert_eq!(sig.flags.names(), strs(&want["flag_names"]), "{ctx}");
            assert_eq!(sig.identifier, want["signing_id_raw"].as_str().unwrap());
            assert_eq!(
                sig.team_id.as_ref().map(|t| t.as_str()),
                want["team_id"].as_str(),
                "{ctx}"
            );
            assert_eq!(u64::from(sig.platform), want["platform"].as_u64().unwrap());
            assert_eq!(
                sig.signing_id.as_ref().map(|s| s.as_str()),
                want["santa_signing_id"].as_str(),
                "{ctx}"
            );
            if let Some(n) = want.get("requirements_count") {
                assert_eq!(sig.requirements_count.map(u64::from), n.as_u64(), "{ctx}");
            }
            if let Some(e) = want.get("entitlements") {
                assert_eq!(sig.entitlements.as_ref(), Some(e), "{ctx}");
                assert!(
                    sig.has_xml_entitlements && sig.has_der_entitlements,
                    "{ctx}"
                );
            }
            let want_cds = want["code_directories"].as_array().unwrap();
            assert_eq!(sig.code_directories.len(), want_cds.len(), "{ctx}");
            for (cd, w) in sig.code_directories.iter().zip(want_cds) {
                assert_eq!(cd.slot, hex_u32(&w["slot"]), "{ctx}");
                assert_eq!(cd.hash_type.to_string(), w["hash_type"].as_str().unwrap());
                assert_eq!(cd.version, hex_u32(&w["version"]), "{ctx}");
                assert_eq!(cd.flags.0, hex_u32(&w["flags"]), "{ctx}");
                assert_eq!(
                    u64::from(cd.page_size_log2),
                    w["page_size_log2"].as_u64().unwrap()
                );
                assert_eq!(
                    u64::from(cd.n_code_slots),
                    w["n_code_slots"].as_u64().unwrap()
                );
                assert_eq!(
                    u64::from(cd.n_special_slots),
                    w["n_special_slots"].as_u64().unwrap()
                );
                assert_eq!(cd.code_limit, w["code_limit"].as_u64().unwrap(), "{ctx}");
                assert_eq!(
                    cd.cdhash.to_string(),
                    w["cdhash_truncated"].as_str().unwrap()
                );
                assert_eq!(cd.digest, w["cd_digest_full"].as_str().unwrap(), "{ctx}");
                assert_eq!(cd.pages_verified, w["pages_verified"].as_bool().unwrap());
                let slots = w["special_slots"].as_object().unwrap();
                assert_eq!(cd.special_slots.len(), slots.len(), "{ctx}");
                for s in &cd.special_slots {
                    let expected = slots[s.name].as_str().unwrap();
                    match expected.strip_prefix("external(") {
                        // The kept Info.plist / CodeResources were found beside the binary
                        // and verified against the sealed hash.
                        Some(hash) => {
                            let hash = hash.trim_end_matches(')');
                            assert_eq!(s.state, SlotState::Verified, "{ctx} {}", s.name);
                            let file = match s.name {
                                "InfoSlot" => external_for(&path).info_plist.unwrap(),
                                _ => external_for(&path).code_resources.unwrap(),
                            };
                            assert_eq!(santa_signing::Sha256::digest(&file).to_string(), hash);
                        }
                        None => {
                            assert_eq!(expected, "ok");
                            assert_eq!(s.state, SlotState::Verified, "{ctx} {}", s.name);
                        }
                    }
                }
            }
            match &want["cms"] {
                Value::Object(cms_want) => check_cms(&ctx, sig, cms_want),
                Value::String(_) | Value::Null => assert!(sig.cms.is_none(), "{ctx}"),
                other => panic!("{ctx}: unexpected cms {other}"),
            }
        }
    }
}

fn check_cms(
    ctx: &str,
    sig: &santa_signing::verify::SignatureReport,
    want: &serde_json::Map<String, Value>,
) {
    let cms = sig.cms.as_ref().unwrap_or_else(|| panic!("{ctx}: no CMS"));
    assert_eq!(
        format!("{:?}", cms.digest_algorithm).to_lowercase(),
        want["digest_algorithm"].as_str().unwrap()
    );
    let signing_time = cms.signing_time_unix.map(santa_signing::format_unix_utc);
    assert_eq!(
        signing_time.as_deref(),
        want["signing_time"].as_str(),
        "{ctx}"
    );
    let v1: Vec<String> = cms.cdhashes_v1.iter().map(|h| hex(h)).collect();
    assert_eq!(v1, strs(&want["hash_agility_v1_cdhashes"]), "{ctx}");
    let v2: Vec<(String, String)> = cms
        .cdhashes_v2
        .iter()
        .map(|h| (h.algorithm_oid.clone(), hex(&h.digest)))
        .collect();
    let v2_want: Vec<(String, String)> = want["hash_agility_v2"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(v2, v2_want, "{ctx}");
    assert_eq!(
        cms.has_timestamp_token,
        want["has_timestamp_token"].as_bool().unwrap()
    );
    assert_eq!(
        sig.leaf_certificate_sha256()
            .map(|s| s.to_string())
            .as_deref(),
        want["leaf_cert_sha256"].as_str(),
        "{ctx}"
    );
    assert_eq!(
        sig.chain[0].subject.rfc4514,
        want["leaf_subject"].as_str().unwrap()
    );
    assert_eq!(
        sig.chain.last().unwrap().subject.common_name.as_deref(),
        want["chain_root"].as_str()
    );
    // The CMS order of certificates, with subjects, hashes and expiry.
    let certs = want["certificates"].as_array().unwrap();
    assert_eq!(cms.certificates.len(), certs.len(), "{ctx}");
    for (c, w) in cms.certificates.iter().zip(certs) {
        assert_eq!(c.subject.rfc4514, w["subject"].as_str().unwrap(), "{ctx}");
        assert_eq!(c.sha256.to_string(), w["sha256"].as_str().unwrap(), "{ctx}");
        assert_eq!(c.valid_until, w["not_after"].as_str().unwrap(), "{ctx}");
    }
    // The chain is leaf first, each certificate issued by the next.
    assert_eq!(sig.chain.len(), 3, "{ctx}");
    for pair in sig.chain.windows(2) {
        assert_eq!(pair[0].issuer, pair[1].subject, "{ctx}");
    }
    assert!(want["signature_valid"].as_bool().unwrap());
    assert!(want["message_digest_matches_slot0_cd"].as_bool().unwrap());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn der_entitlements_equal_the_manifest_too() {
    use santa_signing::codesign::{EmbeddedSignature, SLOT_DER_ENTITLEMENTS};
    let f = fixtures()
        .into_iter()
        .find(|f| f["file"].as_str().unwrap().starts_with("devid_app/"))
        .unwrap();
    let bytes = std::fs::read(fixtures_dir().join(f["file"].as_str().unwrap())).unwrap();
    let parsed = santa_signing::macho::parse(&bytes).unwrap();
    for (slice, want) in parsed.slices.iter().zip(f["slices"].as_array().unwrap()) {
        let loc = slice.code_signature.unwrap();
        let area = &slice.bytes[loc.data_offset as usize..][..loc.data_size as usize];
        let sig = EmbeddedSignature::parse(area, slice.size_bytes()).unwrap();
        let der = sig.superblob.blob(SLOT_DER_ENTITLEMENTS).unwrap();
        let value = santa_signing::entitlements::from_der(der.payload()).unwrap();
        assert_eq!(value, want["entitlements"]);
    }
}
