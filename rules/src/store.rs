//! The durable rule store: an SQLite file in Santa's `rules.db` format (`execution_rules`, schema
//! version 16), so Santa's databases open here and ours open in Santa.
//!
//! Opening checks the file (`PRAGMA quick_check`), refuses a newer schema, and migrates an older
//! Santa database (for example version 7, when execution rules still lived in a table named
//! `rules`) step by step, as Santa does, in one transaction. Nothing is ever deleted to "recover":
//! a corrupt, foreign or newer file is an error the daemon reports while it runs on its
//! configured policy with an empty rule set.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::ValueRef;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::identity::RuleIdentifiers;
use crate::model::{Rule, RuleChange, RuleIdentifier, RuleState, RuleType, shorten};
use crate::snapshot::{Snapshot, SnapshotBuilder, SnapshotError};

/// The schema version this crate reads and writes (Santa's `kRuleTableCurrentVersion`).
pub const SCHEMA_VERSION: u32 = 16;

/// Seconds between the Unix epoch and Apple's reference date (2001-01-01), in which Santa keeps
/// transitive rule timestamps.
pub const APPLE_REFERENCE_DATE_UNIX_SECS: i64 = 978_307_200;

/// Santa culls stale transitive rules only once the table holds this many rules.
pub const TRANSITIVE_CULL_THRESHOLD_RULES: i64 = 500_000;

/// Santa's age after which an unused transitive rule is stale: six 30-day months.
pub const TRANSITIVE_RULE_EXPIRY_SECS: i64 = 6 * 30 * 24 * 3600;

/// How many unreadable rows a [`LoadReport`] describes in detail (all are counted).
pub const SKIPPED_ROWS_REPORTED_MAX: usize = 32;

/// How long a write waits for another connection's lock before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Santa's non-allow count above which it flushes without looking rules up.
const FLUSH_NON_ALLOW_RULES_MAX: usize = 1000;

/// One migration step: the version it produces and the statements that get there. These are the
/// statements Santa's `SNTRuleTable` runs, so that the resulting schema is the one Santa expects.
const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        "CREATE TABLE 'rules' ('shasum' TEXT NOT NULL, 'state' INTEGER NOT NULL, \
         'type' INTEGER NOT NULL, 'custommsg' TEXT);
         CREATE UNIQUE INDEX rulesunique ON rules (shasum, type);",
    ),
    (
        2,
        "DROP VIEW IF EXISTS binrules; DROP VIEW IF EXISTS certrules;",
    ),
    (3, "ALTER TABLE 'rules' ADD 'timestamp' INTEGER;"),
    (4, "ALTER TABLE 'rules' RENAME COLUMN 'shasum' TO 'identifier';"),
    // Type values were renumbered so that their order is their precedence.
    (
        5,
        "UPDATE rules SET type = 1000 WHERE type = 1;
         UPDATE rules SET type = 3000 WHERE type = 2;
         UPDATE rules SET type = 4000 WHERE type = 3;
         UPDATE rules SET type = 2000 WHERE type = 4;",
    ),
    // Hashes lower-case, Team IDs upper-case. `OR IGNORE`: where two spellings of one identifier
    // both exist, Santa's statement fails as a whole and it carries on; here the colliding row
    // keeps its spelling and is normalised when read (identifiers are parsed on load).
    (
        6,
        "UPDATE OR IGNORE rules SET identifier = LOWER(identifier) WHERE type = 1000 OR type = 3000;
         UPDATE OR IGNORE rules SET identifier = UPPER(identifier) WHERE type = 4000;",
    ),
    (7, "ALTER TABLE 'rules' ADD 'customurl' TEXT;"),
    (8, "ALTER TABLE 'rules' ADD 'comment' TEXT;"),
    (9, "ALTER TABLE 'rules' ADD 'cel_expr' TEXT;"),
    (
        10,
        "DROP INDEX rulesunique;
         ALTER TABLE rules RENAME TO execution_rules;
         CREATE UNIQUE INDEX execution_rules_unique ON execution_rules ('identifier', type);
         CREATE TABLE 'file_access_rules' ('name' TEXT NOT NULL PRIMARY KEY, 'rule_data' BLOB NOT NULL);",
    ),
    (11, "ALTER TABLE 'execution_rules' ADD 'rule_id' INTEGER DEFAULT 0;"),
    (12, "ALTER TABLE 'execution_rules' ADD 'seatbelt_policy' TEXT;"),
    (
        13,
        "CREATE TABLE 'network_flow_rules' ('rule_id' INTEGER PRIMARY KEY, 'rule_blob' BLOB NOT NULL);",
    ),
    (
        14,
        "DROP TABLE 'network_flow_rules';
         CREATE TABLE 'network_flow_rules' ('name' TEXT NOT NULL PRIMARY KEY, \
         'rule_id' INTEGER NOT NULL UNIQUE, 'rule_blob' BLOB NOT NULL);",
    ),
    (
        15,
        "CREATE TABLE 'signal_rules' ('name' TEXT NOT NULL PRIMARY KEY, 'rule_data' BLOB NOT NULL);",
    ),
    (16, "ALTER TABLE 'execution_rules' ADD 'event_detail_button_text' TEXT;"),
];

/// Columns of `execution_rules` this crate reads and writes.
const REQUIRED_COLUMNS: &[&str] = &[
    "identifier",
    "state",
    "type",
    "custommsg",
    "customurl",
    "event_detail_button_text",
    "timestamp",
    "comment",
    "cel_expr",
    "seatbelt_policy",
    "rule_id",
];

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
        /// [`SCHEMA_VERSION`].
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

/// Which existing rules to delete before applying changes (`santactl rule --clean`/`--clean-all`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Keep existing rules.
    None,
    /// Delete every rule except transitive ones (Santa's `--clean`).
    NonTransitive,
    /// Delete every rule (Santa's `--clean-all`).
    All,
}

/// What a successful [`RuleStore::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Cached decisions may now be wrong: flush the decision caches (user space and kernel).
    pub flush_cache: bool,
    /// Rules inserted or replaced.
    pub upserted: usize,
    /// Rules deleted by removals (not counting cleanup).
    pub removed: usize,
}

/// A row that could not be read as a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRow {
    /// Its SQLite rowid.
    pub rowid: i64,
    /// Its identifier text (shortened), if it had text.
    pub identifier: String,
    /// Its `type` value.
    pub rule_type: Option<i64>,
    /// Its `state` value.
    pub state: Option<i64>,
    /// Why it was skipped.
    pub problem: String,
}

/// Rows skipped while loading, for the daemon to log. A bad row never hides the others.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Rows read as rules.
    pub loaded: usize,
    /// Rows skipped.
    pub skipped_count: usize,
    /// The first [`SKIPPED_ROWS_REPORTED_MAX`] skipped rows.
    pub skipped: Vec<SkippedRow>,
}

impl LoadReport {
    fn skip(&mut self, row: SkippedRow) {
        self.skipped_count += 1;
        if self.skipped.len() < SKIPPED_ROWS_REPORTED_MAX {
            self.skipped.push(row);
        }
    }
}

/// Rule counts as `santactl status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Rules per type, in [`RuleType::ALL`] order.
    pub by_type: [i64; 5],
    /// Allow-compiler rules.
    pub compiler: i64,
    /// Transitive rules.
    pub transitive: i64,
    /// All rows.
    pub total: i64,
}

/// The SQLite rule store. One connection, owned by the daemon's control thread.
#[derive(Debug)]
pub struct RuleStore {
    conn: Connection,
    location: String,
    generation: u64,
}

fn sql_err(location: &str, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let location = location.to_owned();
    move |source| StoreError::Sqlite {
        location,
        operation,
        source,
    }
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Seconds since Apple's reference date, as Santa stamps transitive rules.
pub fn now_apple_reference_secs() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    unix - APPLE_REFERENCE_DATE_UNIX_SECS
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

    /// Applies changes in one transaction, after an optional cleanup, and says whether decision
    /// caches must be flushed (computed inside the same transaction, before the writes, against
    /// the rules they replace). Either every change is stored or none is.
    pub fn apply(
        &mut self,
        changes: &[RuleChange],
        cleanup: Cleanup,
    ) -> Result<ApplyOutcome, StoreError> {
        if changes.is_empty() && cleanup == Cleanup::None {
            return Err(StoreError::NothingToApply);
        }
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&location, "beginning a transaction"))?;
        let flush_cache = cleanup != Cleanup::None
            || changes_require_flush(&tx, changes)
                .map_err(sql_err(&location, "checking whether caches need a flush"))?;
        match cleanup {
            Cleanup::None => {}
            Cleanup::NonTransitive => tx
                .execute(
                    "DELETE FROM execution_rules WHERE state != ?1",
                    [RuleState::AllowTransitive.db_value()],
                )
                .map(drop)
                .map_err(sql_err(&location, "deleting non-transitive rules"))?,
            Cleanup::All => tx
                .execute_batch(
                    "DELETE FROM execution_rules; DELETE FROM file_access_rules;
                     DELETE FROM network_flow_rules; DELETE FROM signal_rules;",
                )
                .map_err(sql_err(&location, "deleting all rules"))?,
        }
        let (mut upserted, mut removed) = (0, 0);
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO execution_rules (identifier, state, type, custommsg, \
                     customurl, event_detail_button_text, timestamp, comment, cel_expr, \
                     seatbelt_policy, rule_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql_err(&location, "preparing the rule insert"))?;
            let mut delete = tx
                .prepare_cached("DELETE FROM execution_rules WHERE identifier = ?1 AND type = ?2")
                .map_err(sql_err(&location, "preparing the rule delete"))?;
            let now = now_apple_reference_secs();
            for change in changes {
                match change {
                    RuleChange::Upsert(r) => {
                        let timestamp = if r.state == RuleState::AllowTransitive && r.timestamp == 0
                        {
                            now
                        } else {
                            r.timestamp
                        };
                        insert
                            .execute(params![
                                r.identifier.to_string(),
                                r.state.db_value(),
                                r.rule_type().db_value(),
                                r.custom_msg,
                                r.custom_url,
                                r.event_detail_button_text,
                                timestamp,
                                r.comment,
                                r.cel_expr,
                                r.seatbelt_policy,
                                r.rule_id,
                            ])
                            .map_err(sql_err(&location, "inserting a rule"))?;
                        upserted += 1;
                    }
                    RuleChange::Remove(id) => {
                        removed += delete
                            .execute(params![id.to_string(), id.rule_type().db_value()])
                            .map_err(sql_err(&location, "deleting a rule"))?;
                    }
                }
            }
        }
        tx.commit()
            .map_err(sql_err(&location, "committing rule changes"))?;
        self.generation += 1;
        Ok(ApplyOutcome {
            flush_cache,
            upserted,
            removed,
        })
    }

    /// Every rule, in rowid order, with the rows that could not be read.
    pub fn rules(&self) -> Result<(Vec<Rule>, LoadReport), StoreError> {
        let mut out = Vec::new();
        let report = self.scan(|r| {
            out.push(r);
            Ok(())
        })?;
        Ok((out, report))
    }

    /// Builds a snapshot of every rule (generation = [`RuleStore::generation`]).
    pub fn build_snapshot(&self) -> Result<(Snapshot, LoadReport), StoreError> {
        // No pre-count: counting per type is a full scan of its own and costs more than letting
        // the tables grow (measured with 1,000,000 rows: 250 ms against about 60 ms).
        let mut builder = SnapshotBuilder::new(self.generation);
        let report = self.scan(|r| builder.insert(&r).map_err(StoreError::Snapshot))?;
        Ok((builder.build(), report))
    }

    fn scan(
        &self,
        mut each: impl FnMut(Rule) -> Result<(), StoreError>,
    ) -> Result<LoadReport, StoreError> {
        let loc = &self.location;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rowid, identifier, state, type, custommsg, customurl, \
                 event_detail_button_text, timestamp, comment, cel_expr, seatbelt_policy, rule_id \
                 FROM execution_rules ORDER BY rowid",
            )
            .map_err(sql_err(loc, "preparing the rule scan"))?;
        let mut rows = stmt.query([]).map_err(sql_err(loc, "scanning rules"))?;
        let mut report = LoadReport::default();
        while let Some(row) = rows.next().map_err(|e| {
            if is_corruption(&e) {
                StoreError::Corrupt {
                    location: loc.clone(),
                    detail: e.to_string(),
                }
            } else {
                StoreError::Sqlite {
                    location: loc.clone(),
                    operation: "reading a rule row",
                    source: e,
                }
            }
        })? {
            match row_to_rule(row) {
                Ok(rule) => {
                    each(rule)?;
                    report.loaded += 1;
                }
                Err(skipped) => report.skip(skipped),
            }
        }
        Ok(report)
    }

    /// The rule Santa's own per-exec query returns for these identifiers (one SQL statement,
    /// `UNION ALL` over the five types in precedence order, transitive Binary last). The daemon
    /// answers from the snapshot instead; this serves one-off checks (`santactl rule --check`)
    /// and is the baseline the snapshot is tested and benchmarked against. A top row that cannot
    /// be read as a rule yields `None`, as Santa then has no usable rule either.
    pub fn find_rule(&self, ids: &RuleIdentifiers<'_>) -> Result<Option<Rule>, StoreError> {
        const COLUMNS: &str = "rowid, identifier, state, type, custommsg, customurl, \
             event_detail_button_text, timestamp, comment, cel_expr, seatbelt_policy, rule_id";
        let sql = format!(
            "SELECT {COLUMNS} FROM ( \
               SELECT 1 AS prio, {COLUMNS} FROM execution_rules WHERE identifier = ?1 AND type = 500 \
               UNION ALL SELECT 2, {COLUMNS} FROM execution_rules \
                 WHERE identifier = ?2 AND type = 1000 AND state <> ?6 \
               UNION ALL SELECT 3, {COLUMNS} FROM execution_rules WHERE identifier = ?3 AND type = 2000 \
               UNION ALL SELECT 4, {COLUMNS} FROM execution_rules WHERE identifier = ?4 AND type = 3000 \
               UNION ALL SELECT 5, {COLUMNS} FROM execution_rules WHERE identifier = ?5 AND type = 4000 \
               UNION ALL SELECT 6, {COLUMNS} FROM execution_rules \
                 WHERE identifier = ?2 AND type = 1000 AND state = ?6 \
             ) ORDER BY prio ASC LIMIT 1"
        );
        let loc = &self.location;
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sql_err(loc, "preparing the rule query"))?;
        let sid = ids
            .signing_id
            .map(|s| format!("{}:{}", s.prefix.as_str(), s.ident));
        let mut rows = stmt
            .query(params![
                ids.cdhash.map(|h| h.to_string()),
                ids.binary.map(|h| h.to_string()),
                sid,
                ids.certificate.map(|h| h.to_string()),
                ids.team_id.map(|t| t.as_str().to_owned()),
                RuleState::AllowTransitive.db_value(),
            ])
            .map_err(sql_err(loc, "querying a rule"))?;
        let row = rows.next().map_err(sql_err(loc, "querying a rule"))?;
        Ok(row.and_then(|r| row_to_rule(r).ok()))
    }

    /// Rule counts by type and by special state.
    pub fn counts(&self) -> Result<RuleCounts, StoreError> {
        let loc = &self.location;
        let mut stmt = self
            .conn
            .prepare("SELECT type, state, COUNT(*) FROM execution_rules GROUP BY type, state")
            .map_err(sql_err(loc, "preparing rule counts"))?;
        let mut rows = stmt.query([]).map_err(sql_err(loc, "counting rules"))?;
        let mut c = RuleCounts::default();
        while let Some(row) = rows.next().map_err(sql_err(loc, "counting rules"))? {
            let t: Option<i64> = row.get(0).ok();
            let s: Option<i64> = row.get(1).ok();
            let n: i64 = row.get(2).map_err(sql_err(loc, "counting rules"))?;
            c.total += n;
            if let Some(i) = t
                .and_then(RuleType::from_db_value)
                .and_then(|t| RuleType::ALL.iter().position(|&x| x == t))
            {
                c.by_type[i] += n;
            }
            match s.and_then(RuleState::from_db_value) {
                Some(RuleState::AllowCompiler) => c.compiler += n,
                Some(RuleState::AllowTransitive) => c.transitive += n,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Records that a transitive rule just allowed an execution (Santa's
    /// `resetTimestampForExecutionRule:`), so culling keeps rules that are still used. Returns
    /// whether such a rule exists. Does not change decisions, so it does not bump the generation.
    pub fn touch_transitive_rule(
        &mut self,
        sha256: &crate::model::Sha256,
        now_apple_secs: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE execution_rules SET timestamp = ?1 \
                 WHERE identifier = ?2 AND type = ?3 AND state = ?4",
                params![
                    now_apple_secs,
                    sha256.to_string(),
                    RuleType::Binary.db_value(),
                    RuleState::AllowTransitive.db_value()
                ],
            )
            .map_err(sql_err(
                &self.location,
                "updating a transitive rule's timestamp",
            ))?;
        Ok(n > 0)
    }

    /// Santa's housekeeping: once the table holds [`TRANSITIVE_CULL_THRESHOLD_RULES`] rules,
    /// delete transitive rules unused for [`TRANSITIVE_RULE_EXPIRY_SECS`]. Returns how many went.
    /// Deleting allows never needs a cache flush beyond the daemon's usual epoch bump.
    pub fn cull_transitive_rules(&mut self, now_apple_secs: i64) -> Result<usize, StoreError> {
        let loc = self.location.clone();
        let total: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM execution_rules", [], |r| r.get(0))
            .map_err(sql_err(&loc, "counting rules"))?;
        if total < TRANSITIVE_CULL_THRESHOLD_RULES {
            return Ok(0);
        }
        let n = self
            .conn
            .execute(
                "DELETE FROM execution_rules WHERE state = ?1 AND timestamp < ?2",
                params![
                    RuleState::AllowTransitive.db_value(),
                    now_apple_secs - TRANSITIVE_RULE_EXPIRY_SECS
                ],
            )
            .map_err(sql_err(&loc, "culling transitive rules"))?;
        if n > 0 {
            self.generation += 1;
        }
        Ok(n)
    }
}

fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Text(b) => std::str::from_utf8(b)
            .ok()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

fn int_of(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

/// Reads one row, trusting nothing in it.
fn row_to_rule(row: &rusqlite::Row<'_>) -> Result<Rule, SkippedRow> {
    let col = |i: usize| row.get_ref(i).unwrap_or(ValueRef::Null);
    let rowid = int_of(col(0)).unwrap_or(-1);
    let identifier_text = match col(1) {
        ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let state_value = int_of(col(2));
    let type_value = int_of(col(3));
    let skipped = |problem: String| SkippedRow {
        rowid,
        identifier: shorten(&identifier_text),
        rule_type: type_value,
        state: state_value,
        problem,
    };
    let Some(rule_type) = type_value.and_then(RuleType::from_db_value) else {
        return Err(skipped("unknown rule type".into()));
    };
    let Some(state) = state_value.and_then(RuleState::from_db_value) else {
        return Err(skipped("unknown rule state".into()));
    };
    let identifier = match col(1) {
        ValueRef::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => RuleIdentifier::parse(rule_type, s).map_err(|e| skipped(e.to_string()))?,
            Err(_) => return Err(skipped("identifier is not UTF-8".into())),
        },
        _ => return Err(skipped("identifier is not text".into())),
    };
    Ok(Rule {
        identifier,
        state,
        custom_msg: text_of(col(4)),
        custom_url: text_of(col(5)),
        event_detail_button_text: text_of(col(6)),
        timestamp: int_of(col(7)).unwrap_or(0),
        comment: text_of(col(8)),
        cel_expr: text_of(col(9)),
        seatbelt_policy: text_of(col(10)),
        rule_id: int_of(col(11)).unwrap_or(0),
    })
}

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    // user_version is a signed 32-bit field; a negative value is nothing we wrote.
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

fn check_integrity(conn: &Connection, location: &str) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        location: location.to_owned(),
        detail,
    };
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(|e| {
        if is_corruption(&e) {
            corrupt(e.to_string())
        } else {
            StoreError::Sqlite {
                location: location.to_owned(),
                operation: "checking integrity",
                source: e,
            }
        }
    })?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.take(4).collect())
        .map_err(|e| {
            if is_corruption(&e) {
                corrupt(e.to_string())
            } else {
                StoreError::Sqlite {
                    location: location.to_owned(),
                    operation: "checking integrity",
                    source: e,
                }
            }
        })?;
    if findings.len() == 1 && findings[0] == "ok" {
        Ok(())
    } else {
        Err(corrupt(findings.join("; ")))
    }
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(sql_err(location, "beginning the schema transaction"))?;
    let from = user_version(&tx).map_err(sql_err(location, "reading user_version"))?;
    if from > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            location: location.to_owned(),
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    if from == SCHEMA_VERSION {
        return Ok(());
    }
    if from == 0 {
        let tables = table_names(&tx).map_err(sql_err(location, "listing tables"))?;
        if !tables.is_empty() {
            return Err(StoreError::Unversioned {
                location: location.to_owned(),
                tables,
            });
        }
    }
    run_migrations(&tx, from).map_err(|(step, source)| StoreError::Migration {
        location: location.to_owned(),
        from,
        step,
        source,
    })?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql_err(location, "setting user_version"))?;
    tx.commit()
        .map_err(sql_err(location, "committing the schema migration"))
}

fn run_migrations(tx: &Transaction<'_>, from: u32) -> Result<(), (u32, rusqlite::Error)> {
    for &(version, sql) in MIGRATIONS {
        if from < version {
            tx.execute_batch(sql).map_err(|e| (version, e))?;
        }
    }
    Ok(())
}

fn check_schema(conn: &Connection, location: &str) -> Result<(), StoreError> {
    let mismatch = |detail: String| StoreError::SchemaMismatch {
        location: location.to_owned(),
        detail,
    };
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('execution_rules')")
        .map_err(sql_err(location, "reading the execution_rules schema"))?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql_err(location, "reading the execution_rules schema"))?;
    if columns.is_empty() {
        return Err(mismatch("table execution_rules is missing".into()));
    }
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|x| x == c))
        .collect();
    if !missing.is_empty() {
        return Err(mismatch(format!(
            "execution_rules lacks column(s) {}",
            missing.join(", ")
        )));
    }
    let unique: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'execution_rules' \
             AND name = 'execution_rules_unique'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err(location, "reading indices"))?;
    if unique.is_none() {
        return Err(mismatch(
            "the unique index execution_rules_unique on (identifier, type) is missing".into(),
        ));
    }
    Ok(())
}

/// Santa's rule for when added rules invalidate cached decisions
/// (`SNTRuleTable addedRulesShouldFlushDecisionCache:`):
///
/// - any removal flushes (cached decisions of other precedence may depend on the removed rule);
/// - 1000 or more non-allow rules flush without further checks;
/// - a non-allow rule (block, silent block, compiler, CEL, ...) flushes unless the same rule
///   (identifier, type, state, and CEL expression) is already stored;
/// - an allow flushes if it replaces an allow-compiler rule (CDHash, Binary, Signing ID) for the
///   same identifier, so the process stops being treated as a compiler;
/// - plain new allows do not flush: denies are cached only briefly, so a new allow takes effect
///   when they expire.
fn changes_require_flush(tx: &Transaction<'_>, changes: &[RuleChange]) -> rusqlite::Result<bool> {
    let mut non_allow = 0usize;
    for c in changes {
        match c {
            RuleChange::Remove(_) => return Ok(true),
            RuleChange::Upsert(r) if !r.state.is_plain_allow() => {
                non_allow += 1;
                if non_allow >= FLUSH_NON_ALLOW_RULES_MAX {
                    return Ok(true);
                }
            }
            RuleChange::Upsert(_) => {}
        }
    }
    let mut same = tx.prepare_cached(
        "SELECT COUNT(*) FROM execution_rules WHERE identifier = ?1 AND type = ?2 AND state = ?3 \
         AND (cel_expr IS NULL OR cel_expr = ?4) LIMIT 1",
    )?;
    let mut compiler = tx.prepare_cached(
        "SELECT COUNT(*) FROM execution_rules WHERE identifier = ?1 AND type IN (?2, ?3, ?4) \
         AND state = ?5 LIMIT 1",
    )?;
    for c in changes {
        let RuleChange::Upsert(r) = c else { continue };
        let id = r.identifier.to_string();
        if !r.state.is_plain_allow() {
            let n: i64 = same.query_row(
                params![id, r.rule_type().db_value(), r.state.db_value(), r.cel_expr],
                |row| row.get(0),
            )?;
            if n == 0 {
                return Ok(true);
            }
        } else if !matches!(r.rule_type(), RuleType::Certificate | RuleType::TeamId) {
            let n: i64 = compiler.query_row(
                params![
                    id,
                    RuleType::CdHash.db_value(),
                    RuleType::Binary.db_value(),
                    RuleType::SigningId.db_value(),
                    RuleState::AllowCompiler.db_value()
                ],
                |row| row.get(0),
            )?;
            if n > 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
