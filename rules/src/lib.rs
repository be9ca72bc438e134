//! santad's policy.
//!
//! This crate will hold the rule model, Santa's precedence, the decision pipeline, path scopes,
//! client modes, the SQLite rule store (Santa's schema) and the immutable snapshot that workers
//! read without locking. It is filled by the "rules" issue.
#![forbid(unsafe_code)]
