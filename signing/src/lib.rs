//! File identity for santad.
//!
//! This crate will hold everything santad learns about a file before a rule is consulted: its
//! SHA-256 (over an mmap, with a `read()` fallback), its Mach-O structure (thin and fat), its code
//! signature (CDHash, Signing ID, Team ID, flags, certificate chain, verification) and the bundle
//! it belongs to. It is filled by the "signing" issue.
#![forbid(unsafe_code)]
