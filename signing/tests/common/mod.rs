//! Helpers shared by the integration tests that include them with `mod common;`.

pub mod counting_alloc;
