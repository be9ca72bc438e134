//! DER entitlements: no panic, and the heap the decoded JSON takes stays within the bound
//! `entitlements::der_decoded_bytes_max` documents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use santa_signing::entitlements;

#[global_allocator]
static ALLOCATOR: santa_fuzz::Counting = santa_fuzz::Counting;

fuzz_target!(|data: &[u8]| {
    let (decoded, peak) = santa_fuzz::peak_during(|| entitlements::from_der(data));
    let bound = entitlements::der_decoded_bytes_max(data.len());
    assert!(
        peak <= bound,
        "{} input bytes held {peak} heap bytes (bound {bound}): {decoded:?}",
        data.len()
    );
});
