//! [`StoreError`], and the small constructors that attach the file and the operation to an
//! SQLite error.

use std::fmt;

use rusqlite::ErrorCode;

use crate::snapshot::SnapshotError;

/// A rule store operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The database file could not be opened or created.
    Open {
        /// The file.
        location: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database, or SQLite reports it corrupt.
    Corrupt {
        /// The file.
        location: String,
        /// SQLite's message or the integrity check's first findings.
        detail: String,
    },
    /// The schema version is newer than this build understands; it is left untouched.
    NewerSchema {
        /// The file.
        location: String,
        /// Its `PRAGMA user_version`.
        found: u32,
        /// [`SCHEMA_VERSION`](super::SCHEMA_VERSION).
        supported: u32,
    },
    /// The database has tables but no schema version: it was not written by Santa or by us.
    Unversioned {
        /// The file.
        location: String,
        /// The tables found.
        tables: Vec<String>,
    },
    /// The schema does not match what its version promises.
    SchemaMismatch {
        /// The file.
        location: String,
        /// What is missing or wrong.
        detail: String,
    },
    /// A migration step failed; the transaction was rolled back and the file is unchanged.
    Migration {
        /// The file.
        location: String,
        /// The version the file had.
        from: u32,
        /// The step that failed.
        step: u32,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A query or write failed.
    Sqlite {
        /// The file.
        location: String,
        /// What was being done.
        operation: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Nothing to apply: no changes and no cleanup (Santa refuses this too).
    NothingToApply,
    /// The rules did not fit in a snapshot.
    Snapshot(SnapshotError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { location, source } => {
                write!(f, "cannot open rules database {location}: {source}")
            }
            StoreError::Corrupt { location, detail } => write!(
                f,
                "rules database {location} is corrupt or not an SQLite database ({detail}); \
                 it was left untouched"
            ),
            StoreError::NewerSchema {
                location,
                found,
                supported,
            } => write!(
                f,
                "rules database {location} has schema version {found}, newer than the supported \
                 {supported}; it was left untouched"
            ),
            StoreError::Unversioned { location, tables } => write!(
                f,
                "{location} has tables ({}) but no schema version: not a Santa rules database",
                tables.join(", ")
            ),
            StoreError::SchemaMismatch { location, detail } => {
                write!(
                    f,
                    "rules database {location} has an unexpected schema: {detail}"
                )
            }
            StoreError::Migration {
                location,
                from,
                step,
                source,
            } => write!(
                f,
                "migrating rules database {location} from version {from} failed at step {step}: \
                 {source}; the file is unchanged"
            ),
            StoreError::Sqlite {
                location,
                operation,
                source,
            } => write!(f, "rules database {location}: {operation} failed: {source}"),
            StoreError::NothingToApply => f.write_str("no rule changes and no cleanup requested"),
            StoreError::Snapshot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Open { source, .. }
            | StoreError::Migration { source, .. }
            | StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Snapshot(e) => Some(e),
            _ => None,
        }
    }
}

pub(super) fn sql_err(
    location: &str,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let location = location.to_owned();
    move |source| StoreError::Sqlite {
        location,
        operation,
        source,
    }
}

pub(super) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// A corrupt file as [`StoreError::Corrupt`], any other failure as [`StoreError::Sqlite`] of
/// `operation`.
pub(super) fn corrupt_or_sql_err(
    location: &str,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let location = location.to_owned();
    move |e| {
        if is_corruption(&e) {
            StoreError::Corrupt {
                location,
                detail: e.to_string(),
            }
        } else {
            StoreError::Sqlite {
                location,
                operation,
                source: e,
            }
        }
    }
}
