//! The schema: its version, Santa's migration steps, and what opening checks (integrity, version,
//! tables, columns, the unique index).

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::error::{StoreError, corrupt_or_sql_err, sql_err};

/// The schema version this crate reads and writes (Santa's `kRuleTableCurrentVersion`).
pub const SCHEMA_VERSION: u32 = 16;

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

pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    // user_version is a signed 32-bit field; a negative value is nothing we wrote.
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

pub(super) fn check_integrity(conn: &Connection, location: &str) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(corrupt_or_sql_err(location, "checking integrity"))?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.take(4).collect())
        .map_err(corrupt_or_sql_err(location, "checking integrity"))?;
    if findings.len() == 1 && findings[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            location: location.to_owned(),
            detail: findings.join("; "),
        })
    }
}

pub(super) fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

pub(super) fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
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

pub(super) fn check_schema(conn: &Connection, location: &str) -> Result<(), StoreError> {
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
