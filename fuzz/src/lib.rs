//! Shared by the fuzz targets: a counting global allocator, so a target can assert that a
//! decoder's peak heap stays within the bound it documents (libFuzzer's own `-malloc_limit_mb`
//! needs a sanitizer's malloc hooks, which the stable build here runs without).
//!
//! A target installs it with `#[global_allocator] static A: santa_fuzz::Counting =
//! santa_fuzz::Counting;` and measures with [`peak_during`]. libFuzzer runs a target's inputs
//! on one thread and allocates its own memory through C++ `new`, so everything counted is the
//! target's. The allocator is the signing tests' (`signing/tests/common/counting_alloc.rs`),
//! included by path: one counter for every crate that measures heap use.

#[path = "../../signing/tests/common/counting_alloc.rs"]
mod counting_alloc;

pub use counting_alloc::{Counting, peak_during};
