//! The durable rule store: an SQLite file in Santa's `rules.db` format (`execution_rules`, schema
//! version 16), so Santa's databases open here and ours open in Santa.
//!
//! Opening checks the file (`PRAGMA quick_check`), refuses a newer schema, and migrates an older
//! Santa database (for example version 7, when execution rules still lived in a table named
//! `rules`) step by step, as Santa does, in one transaction. Nothing is ever deleted to "recover":
//! a corrupt, foreign or newer file is an error the daemon reports while it runs on its
//! configured policy with an empty rule set.
//!
//! - `schema`: the schema version, Santa's migrations, and the checks made on opening.
//! - `read`: loading every rule (into a list or a [`Snapshot`](crate::snapshot::Snapshot)),
//!   Santa's per-exec query, counts; a row that cannot be read is skipped and reported.
//! - `write`: applying a batch of changes in one transaction, Santa's cache-flush rule, and
//!   the transitive rules' housekeeping.
//! - `error`: [`StoreError`].

use std::path::Path;

use rusqlite::Connection;

use error::sql_err;
use schema::{check_integrity, check_schema, migrate, user_version};

mod error;
mod read;
mod schema;
mod write;

pub use error::StoreError;
pub use read::{LoadReport, RuleCounts, SKIPPED_ROWS_REPORTED_MAX, SkippedRow};
pub use schema::SCHEMA_VERSION;
pub use write::{
    APPLE_REFERENCE_DATE_UNIX_SECS, ApplyOutcome, Cleanup, TRANSITIVE_CULL_THRESHOLD_RULES,
    TRANSITIVE_RULE_EXPIRY_SECS, now_apple_reference_secs,
};

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The SQLite rule store. One connection, owned by the daemon's control thread.
#[derive(Debug)]
pub struct RuleStore {
    conn: Connection,
    location: String,
    generation: u64,
}

impl RuleStore {
    /// Opens (creating if absent) and, if needed, migrates the database at `path`.
    pub fn open(path: &Path) -> Result<RuleStore, StoreError> {
        let location = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            location: location.clone(),
            source,
        })?;
        RuleStore::init(conn, location)
    }

    /// A private in-memory store (tests, `santactl` dry runs).
    pub fn open_in_memory() -> Result<RuleStore, StoreError> {
        let location = ":memory:".to_owned();
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            location: location.clone(),
            source,
        })?;
        RuleStore::init(conn, location)
    }

    fn init(mut conn: Connection, location: String) -> Result<RuleStore, StoreError> {
        conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(sql_err(&location, "setting the busy timeout"))?;
        check_integrity(&conn, &location)?;
        migrate(&mut conn, &location)?;
        check_schema(&conn, &location)?;
        Ok(RuleStore {
            conn,
            location,
            generation: 1,
        })
    }

    /// Where the database lives (for messages).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Counts every change applied through this store; snapshots carry it as their generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The schema version on disk (always [`SCHEMA_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        user_version(&self.conn).map_err(sql_err(&self.location, "reading user_version"))
    }
}

#[cfg(test)]
mod tests;
