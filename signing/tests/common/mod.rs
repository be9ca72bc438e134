//! Helpers shared by the integration tests that include them with `mod common;`: the golden
//! fixtures and their manifest, and the counting allocator. Such a test binary runs on the
//! counting allocator ([`counting_alloc`]), which counts bytes only inside
//! [`counting_alloc::peak_during`].
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; a panic is the failure report

pub mod counting_alloc;

use std::path::PathBuf;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// The golden Mach-O fixtures shared by the workspace (`../shared/fixtures/macho`). They are
/// required: a missing directory fails the test run, it does not skip.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/macho");
    assert!(
        dir.join("manifest.json").is_file(),
        "fixtures missing at {}: clone the repository with shared/ beside it",
        dir.display()
    );
    dir
}

pub fn fixture_path(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// The bytes of fixture `name`, failing the test with its path if it is missing.
pub fn fixture(name: &str) -> Vec<u8> {
    let p = fixture_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {} missing: {e}", p.display()))
}

/// The fixtures' `manifest.json`: the golden values, taken from Apple's tools, not this crate.
pub fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The big-endian `u32` at `at` (Mach-O signatures are big-endian).
pub fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

/// The little-endian `u32` at `at` (Mach-O headers and load commands of x86_64 and arm64).
pub fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}
