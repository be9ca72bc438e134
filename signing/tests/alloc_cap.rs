//! Parsing never allocates beyond a fixed cap: the peak heap in use while a file is analysed
//! stays under `ALLOC_CAP_BYTES` whatever the counts and lengths inside claim. A counting
//! allocator measures the current thread only, so other tests cannot disturb the figure.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use common::counting_alloc::peak_during;
use common::fixture;
use proptest::prelude::*;
use santa_signing::FileSigning;
use santa_signing::verify::ExternalFiles;

/// Whatever a header claims, analysing one input may hold at most this much heap beyond the
/// input itself: reports copy certificates and digests (a few KiB per slice) and parsers cap
/// their counts before allocating.
const ALLOC_CAP_BYTES: usize = 4 << 20;

/// The peak heap analysing with `f` holds (see `common::counting_alloc`).
fn peak_while(f: impl FnOnce()) -> usize {
    peak_during(f).1
}

fn analyse(bytes: &[u8]) {
    let _ = FileSigning::from_bytes(bytes, &ExternalFiles::default());
}

#[test]
fn the_real_developer_id_binary_stays_under_the_cap() {
    let b = fixture("devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector");
    let peak = peak_while(|| analyse(&b));
    assert!(peak > 0, "the counter must see the report being built");
    assert!(peak < ALLOC_CAP_BYTES, "peak {peak} bytes");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_signatures_stay_under_the_cap(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u32>()), 1..8),
    ) {
        let mut b = fixture("adhoc_dualcd_x86_64.pillow950_libwebpdemux.2.dylib");
        // Overwrite aligned words inside the signature area (counts, offsets, lengths live
        // there) with arbitrary values, including huge ones.
        let sig = 34832;
        for (at, v) in edits {
            let i = sig + at.index((b.len() - sig) / 4) * 4;
            b[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        let peak = peak_while(|| analyse(&b));
        prop_assert!(peak < ALLOC_CAP_BYTES, "peak {} bytes", peak);
    }
}
