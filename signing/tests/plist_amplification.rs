//! Hostile property lists: sharing one object by many references (the amplification of the
//! security issue: 300 KB decoding to ~480 MB), deep nesting, direct and indirect cycles, huge
//! declared counts, offsets and references pointing anywhere. Each decode must end in a value
//! or a typed error without a panic, and its peak heap must stay under a bound proportional to
//! the input's length.
//!
//! Peak heap is measured by the counting global allocator of `common/counting_alloc.rs`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::counting_alloc::peak_during;

use proptest::prelude::*;
use santa_signing::plist::{self, Plist, PlistError};

/// Heap a decode may hold beyond [`plist::decoded_bytes_max`]: the decoder's path stack (a few
/// hundred bytes) is not charged to its budget.
const PEAK_SLACK_BYTES: usize = 1 << 10;

/// Decodes `bytes`, checks the peak heap against the bound, and returns the result.
fn decode_bounded(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (r, peak) = peak_during(|| plist::parse(bytes).map(drop));
    let bound = plist::decoded_bytes_max(bytes.len()) + PEAK_SLACK_BYTES;
    prop_assert!(
        peak <= bound,
        "peak {peak} bytes for {} input bytes (bound {bound}): {r:?}",
        bytes.len()
    );
    Ok(())
}

// ---- A binary plist writer that can lie about everything. ----

/// A length-prefixed marker: `kind` in the high nibble, `n` in the low one or as an integer
/// object after it.
fn marker(kind: u8, n: u64) -> Vec<u8> {
    if n < 15 {
        return vec![(kind << 4) | n as u8];
    }
    let mut v = vec![(kind << 4) | 0xf];
    v.extend(int(n));
    v
}

/// An integer object of the smallest size that holds `n`.
fn int(n: u64) -> Vec<u8> {
    let (log2, len) = match n {
        0..=0xff => (0, 1),
        0x100..=0xffff => (1, 2),
        0x1_0000..=0xffff_ffff => (2, 4),
        _ => (3, 8),
    };
    let mut v = vec![0x10 | log2];
    v.extend_from_slice(&n.to_be_bytes()[8 - len..]);
    v
}

fn be(n: u64, size: u8) -> Vec<u8> {
    n.to_be_bytes()[8 - usize::from(size)..].to_vec()
}

fn array(refs: &[u64], ref_size: u8) -> Vec<u8> {
    let mut v = marker(0xa, refs.len() as u64);
    for &r in refs {
        v.extend(be(r, ref_size));
    }
    v
}

fn dict(keys: &[u64], values: &[u64], ref_size: u8) -> Vec<u8> {
    assert_eq!(keys.len(), values.len());
    let mut v = marker(0xd, keys.len() as u64);
    for &r in keys.iter().chain(values) {
        v.extend(be(r, ref_size));
    }
    v
}

fn data(bytes: &[u8]) -> Vec<u8> {
    let mut v = marker(0x4, bytes.len() as u64);
    v.extend_from_slice(bytes);
    v
}

fn ascii(s: &[u8]) -> Vec<u8> {
    let mut v = marker(0x5, s.len() as u64);
    v.extend_from_slice(s);
    v
}

fn utf16(units: &[u16]) -> Vec<u8> {
    let mut v = marker(0x6, units.len() as u64);
    for u in units {
        v.extend_from_slice(&u.to_be_bytes());
    }
    v
}

/// Objects in order, then the offset table, then the trailer. Every trailer field can be
/// overridden, and so can any offset-table entry.
#[derive(Clone, Debug)]
struct Bplist {
    objects: Vec<Vec<u8>>,
    ref_size: u8,
    offset_size: u8,
    top: u64,
    count: Option<u64>,
    table_offset: Option<u64>,
    offsets: Vec<(usize, u64)>,
}

impl Bplist {
    fn new(objects: Vec<Vec<u8>>, ref_size: u8) -> Self {
        Self {
            objects,
            ref_size,
            offset_size: 4,
            top: 0,
            count: None,
            table_offset: None,
            offsets: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = b"bplist00".to_vec();
        let mut offsets = Vec::with_capacity(self.objects.len());
        for o in &self.objects {
            offsets.push(b.len() as u64);
            b.extend_from_slice(o);
        }
        for &(i, off) in &self.offsets {
            if let Some(slot) = offsets.get_mut(i) {
                *slot = off;
            }
        }
        let table = b.len() as u64;
        for off in offsets {
            b.extend(be(off, self.offset_size));
        }
        santa_testkit::BplistTrailer {
            offset_size: self.offset_size,
            ref_size: self.ref_size,
            objects: self.count.unwrap_or(self.objects.len() as u64),
            top: self.top,
            table: self.table_offset.unwrap_or(table),
        }
        .push(&mut b);
        b
    }
}

// ---- The regression test of the security issue. ----

/// 1600 references to one 300 000-byte data object: 310 KB of input that decoded to 1600
/// copies, 480 MB, before the output budget (measured with this file's allocator: peak
/// 480 051 200 bytes, 0.44 s in release). The old decoder refused arrays longer than the
/// object count, so the table declares 1600 objects (1598 `false`s after the two that
/// matter), as the file did.
fn shared_data_1600_times() -> Vec<u8> {
    let mut objects = vec![array(&[1; 1600], 1), data(&vec![0xab; 300_000])];
    objects.extend(std::iter::repeat_n(vec![0x08], 1598));
    Bplist::new(objects, 1).encode()
}

#[test]
fn regression_bplist_shared_object_amplification_300kb_is_refused_quickly_in_small_heap() {
    let bytes = shared_data_1600_times();
    assert!(bytes.len() > 300_000 && bytes.len() < 310_000);
    let started = Instant::now();
    let (r, peak) = peak_during(|| plist::parse(&bytes).map(drop));
    let took = started.elapsed();
    eprintln!(
        "{} input bytes: {r:?} after {took:?}, peak heap {peak} bytes",
        bytes.len()
    );
    assert_eq!(
        r,
        Err(PlistError::DecodedTooLarge {
            limit_bytes: plist::decoded_bytes_max(bytes.len())
        })
    );
    // The budget is 32 bytes per input byte plus 64 KiB: about 10 MB here, against 480 MB.
    assert!(peak <= plist::decoded_bytes_max(bytes.len()) + PEAK_SLACK_BYTES);
    assert!(peak < 12 << 20, "peak {peak} bytes");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn regression_the_same_sharing_within_the_budget_still_decodes() {
    // Honest sharing (CoreFoundation uniques strings, numbers and booleans): 1600 references
    // to one 30-byte string decode to 1600 equal strings.
    let s = b"com.apple.security.app-sandbox";
    let bytes = Bplist::new(vec![array(&[1; 1600], 1), ascii(s)], 1).encode();
    let (r, peak) = peak_during(|| plist::parse(&bytes));
    let Ok(Plist::Array(items)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(items.len(), 1600);
    assert!(
        items
            .iter()
            .all(|i| i.as_str() == Some("com.apple.security.app-sandbox"))
    );
    assert!(peak <= plist::decoded_bytes_max(bytes.len()) + PEAK_SLACK_BYTES);
}

#[test]
fn cycles_direct_and_indirect_are_typed_errors() {
    // An array that contains itself.
    let direct = Bplist::new(vec![array(&[0], 1)], 1).encode();
    assert_eq!(plist::parse(&direct), Err(PlistError::Cycle { object: 0 }));
    // a -> dict -> b -> a, reached after an honest sibling.
    let indirect = Bplist::new(
        vec![
            array(&[3, 1], 1),
            dict(&[4], &[2], 1),
            array(&[0], 1),
            vec![0x09],
            ascii(b"k"),
        ],
        1,
    )
    .encode();
    assert_eq!(
        plist::parse(&indirect),
        Err(PlistError::Cycle { object: 0 })
    );
    // A shared object that is not on its own path is not a cycle: a diamond decodes.
    let diamond = Bplist::new(
        vec![
            array(&[1, 2], 1),
            array(&[3], 1),
            array(&[3], 1),
            array(&[], 1),
        ],
        1,
    )
    .encode();
    assert!(plist::parse(&diamond).is_ok());
}

#[test]
fn nesting_beyond_the_cap_is_too_deep_and_at_the_cap_decodes() {
    let chain = |n: usize| {
        let mut objects: Vec<Vec<u8>> = (0..n).map(|i| array(&[i as u64 + 1], 2)).collect();
        objects.push(array(&[], 2));
        Bplist::new(objects, 2).encode()
    };
    // `DEPTH_MAX` containers around the innermost one: depth 0 ..= DEPTH_MAX.
    assert!(plist::parse(&chain(plist::DEPTH_MAX)).is_ok());
    assert_eq!(
        plist::parse(&chain(plist::DEPTH_MAX + 1)),
        Err(PlistError::TooDeep)
    );
    assert_eq!(plist::parse(&chain(5000)), Err(PlistError::TooDeep));
}

#[test]
fn huge_declared_counts_are_typed_errors() {
    let base = Bplist::new(vec![array(&[1], 1), vec![0x08]], 1);
    let with_count = |c: u64| Bplist {
        count: Some(c),
        ..base.clone()
    };
    assert_eq!(
        plist::parse(&with_count(u64::MAX).encode()),
        Err(PlistError::TooManyObjects)
    );
    assert!(matches!(
        plist::parse(&with_count(plist::OBJECT_COUNT_MAX as u64).encode()),
        Err(PlistError::Malformed {
            what: "offset table",
            ..
        })
    ));
    // An array that claims 2^64 - 1 elements, with one reference present.
    let mut liar = marker(0xa, u64::MAX);
    liar.push(1);
    let b = Bplist::new(vec![liar, vec![0x09]], 1).encode();
    assert!(matches!(
        plist::parse(&b),
        Err(PlistError::Malformed {
            what: "object refs",
            ..
        })
    ));
}

// ---- Property tests. ----

/// One object of a generated graph: containers refer to any index, sharing and cycles included.
#[derive(Clone, Debug)]
enum Obj {
    Array(Vec<u16>),
    Dict(Vec<(u16, u16)>),
    Data(usize),
    Ascii(Vec<u8>),
    Utf16(Vec<u16>),
    Int(u64),
    Bool(bool),
    Raw(Vec<u8>),
}

fn obj() -> impl Strategy<Value = Obj> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u16>(), 0..64).prop_map(Obj::Array),
        2 => proptest::collection::vec((any::<u16>(), any::<u16>()), 0..32).prop_map(Obj::Dict),
        2 => (0usize..8192).prop_map(Obj::Data),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Obj::Ascii),
        1 => proptest::collection::vec(any::<u16>(), 0..64).prop_map(Obj::Utf16),
        1 => any::<u64>().prop_map(Obj::Int),
        1 => any::<bool>().prop_map(Obj::Bool),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(Obj::Raw),
    ]
}

/// A graph of up to 48 objects whose references point at any object (or past the end).
fn graph() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(obj(), 1..48),
        any::<u16>(),
        proptest::collection::vec((any::<u16>(), any::<u64>()), 0..3),
    )
        .prop_map(|(objs, top, bad_offsets)| {
            let n = objs.len() as u64;
            // Most references land inside the table; a few (index % (n + 2)) do not.
            let r = |i: u16| u64::from(i) % (n + 2);
            let objects = objs
                .iter()
                .map(|o| match o {
                    Obj::Array(refs) => array(&refs.iter().map(|&i| r(i)).collect::<Vec<_>>(), 1),
                    Obj::Dict(pairs) => {
                        let keys: Vec<u64> = pairs.iter().map(|p| r(p.0)).collect();
                        let values: Vec<u64> = pairs.iter().map(|p| r(p.1)).collect();
                        dict(&keys, &values, 1)
                    }
                    Obj::Data(len) => data(&vec![0x5a; *len]),
                    Obj::Ascii(s) => ascii(s),
                    Obj::Utf16(u) => utf16(u),
                    Obj::Int(v) => int(*v),
                    Obj::Bool(b) => vec![if *b { 0x09 } else { 0x08 }],
                    Obj::Raw(bytes) => bytes.clone(),
                })
                .collect();
            let mut p = Bplist::new(objects, 1);
            p.top = u64::from(top) % n;
            p.offsets = bad_offsets
                .into_iter()
                .map(|(i, off)| (usize::from(i) % objs.len(), off % 0x1_0000))
                .collect();
            p.encode()
        })
}

/// Layers of arrays, each referring `fanout` times to the next, over one leaf: the visits
/// multiply, `fanout ^ layers`.
fn amplifier() -> impl Strategy<Value = (Vec<u8>, u64)> {
    (1u64..3000, 1usize..5, 0usize..40_000, 0u8..4).prop_map(|(fanout, layers, leaf_len, kind)| {
        let mut objects: Vec<Vec<u8>> = (0..layers)
            .map(|i| array(&vec![i as u64 + 1; fanout as usize], 1))
            .collect();
        objects.push(match kind {
            0 => data(&vec![1; leaf_len]),
            1 => ascii(&vec![b'a'; leaf_len]),
            2 => utf16(&vec![0x20ac; leaf_len / 2]),
            // A dictionary whose one value is the data object after it.
            _ => dict(&[layers as u64 + 2], &[layers as u64 + 1], 1),
        });
        if kind == 3 {
            objects.push(data(&vec![2; leaf_len]));
            objects.push(ascii(b"key"));
        }
        let visits = fanout.saturating_pow(layers as u32);
        (Bplist::new(objects, 1).encode(), visits)
    })
}

/// A chain of containers whose last refers back to an earlier one (or to itself).
fn cycle() -> impl Strategy<Value = Vec<u8>> {
    (1usize..48, any::<prop::sample::Index>(), any::<u64>()).prop_map(|(len, back, kinds)| {
        let back = back.index(len) as u64;
        let objects = (0..len)
            .map(|i| {
                let next = if i + 1 == len { back } else { i as u64 + 1 };
                if kinds >> (i % 64) & 1 == 0 {
                    array(&[next], 1)
                } else {
                    // Key `len` is an honest string after the chain.
                    dict(&[len as u64], &[next], 1)
                }
            })
            .chain([ascii(b"k")])
            .collect();
        Bplist::new(objects, 1).encode()
    })
}

/// An honest plist whose trailer, offsets or lengths are then overwritten with anything.
fn liar() -> impl Strategy<Value = Vec<u8>> {
    (
        graph(),
        proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<u64>(), 1usize..9),
            1..6,
        ),
    )
        .prop_map(|(mut b, edits)| {
            for (at, v, width) in edits {
                // The trailer (last 32 bytes) half the time, anywhere else otherwise.
                let len = b.len();
                let i = if v & 1 == 0 {
                    len - 32 + at.index(32)
                } else {
                    at.index(len)
                };
                let w = width.min(len - i);
                b[i..i + w].copy_from_slice(&v.to_be_bytes()[8 - w..]);
            }
            b
        })
}

/// XML that nests and repeats: no references, but every element is a value to build.
fn xml() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..6, 0..400).prop_map(|ops| {
        let mut s = String::from("<plist><array>");
        let mut open: Vec<&str> = vec!["array"];
        for op in ops {
            match op {
                0 => {
                    s.push_str("<array>");
                    open.push("array");
                }
                1 => {
                    s.push_str("<dict><key>k</key><array>");
                    open.push("dict");
                    open.push("array");
                }
                2 => s.push_str("<true/>"),
                3 => s.push_str("<string>&amp;&#x1F600;x</string>"),
                4 => s.push_str("<data>AAECAwQFBgcICQ==</data>"),
                _ => {
                    if open.len() > 1 {
                        let t = open.pop().unwrap();
                        s.push_str(&format!("</{t}>"));
                    }
                }
            }
        }
        while let Some(t) = open.pop() {
            s.push_str(&format!("</{t}>"));
        }
        s.push_str("</plist>");
        s.into_bytes()
    })
}

/// The property tests' cases per run.
const CASES: u32 = 256;

/// Property tests that only check that each input of a strategy decodes within the bound: one
/// test per `name in strategy` line.
macro_rules! decode_stays_bounded {
    ($($name:ident in $strategy:expr;)*) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]
            $(
                #[test]
                fn $name(bytes in $strategy) {
                    decode_bounded(&bytes)?;
                }
            )*
        }
    };
}

decode_stays_bounded! {
    arbitrary_object_graphs_stay_bounded in graph();
    lying_trailers_offsets_and_lengths_stay_bounded in liar();
    deep_and_wide_xml_stays_bounded in xml();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn shared_objects_never_amplify_beyond_the_bound((bytes, visits) in amplifier()) {
        decode_bounded(&bytes)?;
        // Enough copies of a big enough leaf must be refused, not built.
        // Every visit of the leaf fills a 32-byte slot of its array, whatever the leaf.
        if visits.saturating_mul(32) > plist::decoded_bytes_max(bytes.len()) as u64 {
            prop_assert!(
                matches!(plist::parse(&bytes), Err(PlistError::DecodedTooLarge { .. })),
                "{visits} visits of a {}-byte input decoded",
                bytes.len()
            );
        }
    }

    #[test]
    fn cycles_are_errors_never_hangs(bytes in cycle()) {
        decode_bounded(&bytes)?;
        let r = plist::parse(&bytes);
        prop_assert!(
            matches!(r, Err(PlistError::Cycle { .. } | PlistError::TooDeep)),
            "{r:?}"
        );
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_stay_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut b = b"bplist00".to_vec();
        b.extend_from_slice(&body);
        decode_bounded(&b)?;
    }
}
