//! The property-list decoder (XML and binary): no panic, no hang, and the heap it holds never
//! exceeds the output bound it documents, however the input shares, nests or cycles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santa_signing::plist;

#[global_allocator]
static ALLOCATOR: santa_fuzz::Counting = santa_fuzz::Counting;

/// Heap the decoder holds outside its budget: the path of at most `DEPTH_MAX + 1` containers.
const UNCHARGED_BYTES_MAX: usize = 1 << 10;

fuzz_target!(|data: &[u8]| {
    let (decoded, peak) = santa_fuzz::peak_during(|| plist::parse(data));
    let bound = plist::decoded_bytes_max(data.len()) + UNCHARGED_BYTES_MAX;
    assert!(
        peak <= bound,
        "{} input bytes held {peak} heap bytes (bound {bound}): {decoded:?}",
        data.len()
    );
    if let Ok(p) = decoded {
        // What santactl prints.
        let _ = p.to_json();
    }
});
