//! santad's exec path (`identify_file`) decodes only what a decision needs: entitlements, which
//! no rule type uses, are never decoded there, so a hostile entitlements blob costs it
//! nothing. `santactl fileinfo` still decodes them, within the decoders' output bounds. DER
//! entitlements are bounded by their input like plists.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use std::io::Write;

use common::counting_alloc::peak_during;
use common::{be32, fixture, fixture_path, le32};
use proptest::prelude::*;
use santa_signing::verify::{Detail, ExternalFiles, InvalidReason, SigningStatus};
use santa_signing::{FileSigning, HashLimits, entitlements, identify_file, plist};

const DEVID: &str = "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector";
/// A thin arm64 executable signed by the linker (one CodeDirectory, no special slots).
const LINKER_SIGNED: &str = "linker_signed_arm64_exec.node-pty_spawn-helper";
/// Heap a Decision-mode analysis of a small binary may take: the report (a few KiB).
const DECISION_PEAK_BYTES_MAX: usize = 64 << 10;

/// Offset of `LC_CODE_SIGNATURE` in a thin 64-bit Mach-O, found by walking the load commands
/// (not with this crate's parser).
fn code_signature_command(b: &[u8]) -> usize {
    assert_eq!(
        &b[..4],
        &[0xcf, 0xfa, 0xed, 0xfe],
        "thin 64-bit little-endian"
    );
    let ncmds = le32(b, 16);
    let mut at = 32;
    for _ in 0..ncmds {
        if le32(b, at) == 0x1d {
            return at;
        }
        at += le32(b, at + 4);
    }
    panic!("no LC_CODE_SIGNATURE");
}

/// `macho` with its signature replaced by a SuperBlob of its own CodeDirectory and one more
/// blob (`magic`, `payload`) in `slot`: the CodeDirectory still verifies the code, the blob is
/// attacker-chosen.
fn with_extra_blob(macho: &[u8], slot: u32, magic: u32, payload: &[u8]) -> Vec<u8> {
    let lc = code_signature_command(macho);
    let (dataoff, datasize) = (le32(macho, lc + 8), le32(macho, lc + 12));
    assert_eq!(dataoff + datasize, macho.len(), "signature ends the file");
    let sb = &macho[dataoff..];
    let cd = (0..be32(sb, 8))
        .find(|i| be32(sb, 12 + 8 * i) == 0)
        .map(|i| {
            let off = be32(sb, 16 + 8 * i);
            &sb[off..off + be32(sb, off + 4)]
        })
        .unwrap();
    let index_end = 12 + 2 * 8;
    let blob_at = index_end + cd.len();
    let total = blob_at + 8 + payload.len();
    let mut out = macho[..dataoff].to_vec();
    for w in [
        0xfade_0cc0,
        total as u32,
        2,
        0,
        index_end as u32,
        slot,
        blob_at as u32,
    ] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    out.extend_from_slice(cd);
    out.extend_from_slice(&magic.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out[lc + 12..lc + 16].copy_from_slice(&(total as u32).to_le_bytes());
    out
}

/// The binary plist of the security issue: 1600 references to one 300 000-byte data object
/// (480 MB when every reference is copied). The table declares 1600 objects (the rest alias
/// the data object), which the old decoder required of a 1600-element array.
fn amplifying_bplist() -> Vec<u8> {
    let mut b = b"bplist00".to_vec();
    let o0 = b.len();
    b.extend_from_slice(&[0xaf, 0x11, 0x06, 0x40]); // array, 1600 references
    b.extend(std::iter::repeat_n(1u8, 1600));
    let o1 = b.len();
    b.extend_from_slice(&[0x4f, 0x12]); // data, 4-byte length
    b.extend_from_slice(&300_000u32.to_be_bytes());
    b.extend(std::iter::repeat_n(0xabu8, 300_000));
    let table = b.len();
    b.extend_from_slice(&(o0 as u32).to_be_bytes());
    for _ in 1..1600 {
        b.extend_from_slice(&(o1 as u32).to_be_bytes());
    }
    santa_testkit::BplistTrailer::new(4, 1, 1600, table).push(&mut b);
    b
}

fn entitlements_of(s: &FileSigning) -> Vec<Option<serde_json::Value>> {
    s.slices
        .iter()
        .map(|sl| sl.signature.as_ref().unwrap().entitlements.clone())
        .collect()
}

#[test]
fn identify_file_decides_on_the_same_facts_without_decoding_entitlements() {
    let file = std::fs::File::open(fixture_path(DEVID)).unwrap();
    let id = identify_file(&file, &HashLimits::default(), &mut Vec::new()).unwrap();
    let decision = id.signing.unwrap();
    let bytes = fixture(DEVID);
    let full = FileSigning::from_bytes(&bytes, &ExternalFiles::default()).unwrap();

    assert_eq!(entitlements_of(&decision), vec![None, None]);
    for sl in &decision.slices {
        let sig = sl.signature.as_ref().unwrap();
        assert!(sig.has_xml_entitlements && sig.has_der_entitlements);
    }
    // santactl's path still decodes them (values from the fixture's manifest).
    let printed = entitlements_of(&full);
    assert_eq!(
        printed[0].as_ref().unwrap()["com.apple.developer.team-identifier"],
        "S8XHQB96PW"
    );
    // The decision facts are the same either way.
    assert_eq!(decision.status, SigningStatus::Production);
    assert_eq!(decision.status, full.status);
    assert_eq!(decision.cdhash(), full.cdhash());
    assert_eq!(decision.team_id(), full.team_id());
    assert_eq!(decision.signing_id(), full.signing_id());
    assert_eq!(
        decision.leaf_certificate_sha256(),
        full.leaf_certificate_sha256()
    );
}

#[test]
fn regression_amplifying_entitlements_cost_the_exec_path_nothing() {
    let payload = amplifying_bplist();
    // XML-entitlements slot and magic: the plist decoder also accepts binary plists there.
    let b = with_extra_blob(&fixture(LINKER_SIGNED), 5, 0xfade_7171, &payload);

    // The exec path: the blob is hashed as part of the file, never decoded.
    let (decision, peak) = peak_during(|| {
        FileSigning::from_bytes_with(&b, &ExternalFiles::default(), Detail::Decision).unwrap()
    });
    eprintln!("Decision: peak heap {peak} bytes");
    assert!(peak < DECISION_PEAK_BYTES_MAX, "peak {peak} bytes");
    let sig = decision.slices[0].signature.as_ref().unwrap();
    assert!(sig.has_xml_entitlements);
    assert_eq!(sig.entitlements, None);
    // The new `datasize` changed page 0, and no CodeDirectory seals the blob: invalid. (An
    // attacker can sign such a blob ad hoc; the exec path must not decode it either way.)
    assert_eq!(decision.status, SigningStatus::Invalid);
    assert_eq!(
        decision.invalid_reason,
        Some(InvalidReason::PageHashMismatch {
            code_directory: 0,
            page: 0
        })
    );

    // identify_file on the same bytes in a real file.
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&b).unwrap();
    let id = identify_file(f.as_file(), &HashLimits::default(), &mut Vec::new()).unwrap();
    assert_eq!(entitlements_of(&id.signing.unwrap()), vec![None]);

    // santactl's path tries, and the plist decoder refuses within its bound.
    let (full, peak) =
        peak_during(|| FileSigning::from_bytes(&b, &ExternalFiles::default()).unwrap());
    eprintln!("Full: peak heap {peak} bytes");
    assert_eq!(entitlements_of(&full), vec![None]);
    assert!(peak < plist::decoded_bytes_max(payload.len()) + DECISION_PEAK_BYTES_MAX);
}

// ---- DER entitlements. ----

/// One DER element with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    match content.len() {
        n @ 0..=0x7f => v.push(n as u8),
        n @ 0x80..=0xff => v.extend_from_slice(&[0x81, n as u8]),
        n @ 0x100..=0xffff => {
            v.push(0x82);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x84);
            v.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    v.extend_from_slice(content);
    v
}

/// A generated entitlement value.
#[derive(Clone, Debug)]
enum Ent {
    Bool(bool),
    Str(usize),
    Array(Vec<Ent>),
    Dict(Vec<(usize, Ent)>),
}

fn ent() -> impl Strategy<Value = Ent> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Ent::Bool),
        (0usize..40).prop_map(Ent::Str)
    ];
    leaf.prop_recursive(24, 2000, 16, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..16).prop_map(Ent::Array),
            proptest::collection::vec((0usize..24, inner), 0..16).prop_map(Ent::Dict),
        ]
    })
}

fn encode(e: &Ent) -> Vec<u8> {
    match e {
        Ent::Bool(b) => tlv(0x01, &[u8::from(*b)]),
        Ent::Str(n) => tlv(0x0c, &vec![b's'; *n]),
        Ent::Array(items) => tlv(0x30, &items.iter().flat_map(encode).collect::<Vec<_>>()),
        Ent::Dict(entries) => {
            let body: Vec<u8> = entries
                .iter()
                .enumerate()
                // Distinct keys, so a map holds every entry.
                .flat_map(|(i, (len, v))| {
                    let key = format!("{i:04}{}", "k".repeat(*len));
                    let mut pair = tlv(0x0c, key.as_bytes());
                    pair.extend(encode(v));
                    tlv(0x30, &pair)
                })
                .collect();
            tlv(0xb0, &body)
        }
    }
}

fn der_blob(top: &Ent) -> Vec<u8> {
    let mut body = tlv(0x02, &[1]);
    body.extend(encode(top));
    tlv(0x70, &body)
}

fn der_decode_bounded(blob: &[u8]) -> Result<(), TestCaseError> {
    let (r, peak) = peak_during(|| entitlements::from_der(blob).map(drop));
    let bound = entitlements::der_decoded_bytes_max(blob.len()) + (1 << 10);
    prop_assert!(
        peak <= bound,
        "peak {peak} bytes for {} input bytes (bound {bound}): {r:?}",
        blob.len()
    );
    Ok(())
}

#[test]
fn the_densest_der_entitlements_decode_within_their_bound() {
    // A dictionary of 4000 one-entry dictionaries: a B-tree node per 13 input bytes.
    let inner = Ent::Dict(vec![(0, Ent::Bool(true))]);
    let top = Ent::Dict((0..4000).map(|_| (0, inner.clone())).collect());
    let blob = der_blob(&top);
    let (r, peak) = peak_during(|| entitlements::from_der(&blob));
    assert_eq!(r.unwrap().as_object().unwrap().len(), 4000);
    assert!(peak <= entitlements::der_decoded_bytes_max(blob.len()));
    eprintln!("{} DER bytes: peak heap {peak} bytes", blob.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn der_entitlements_decode_within_their_bound(top in ent()) {
        let blob = der_blob(&Ent::Dict(vec![(0, top)]));
        der_decode_bounded(&blob)?;
    }

    #[test]
    fn mutated_der_entitlements_stay_bounded(
        top in ent(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut blob = der_blob(&Ent::Dict(vec![(0, top)]));
        for (at, v) in edits {
            let i = at.index(blob.len());
            blob[i] = v;
        }
        der_decode_bounded(&blob)?;
    }
}
