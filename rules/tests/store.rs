//! The SQLite store against databases laid out by Santa's own schema statements, and JSON
//! round trips through it.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

mod common;

use std::path::Path;

use common::*;
use rusqlite::Connection;
use santa_rules::{
    Action, Cleanup, ClientMode, Policy, Reason, RuleChange, RuleState, RuleStore, RuleType,
    StoreError, decide, export_rules_json, parse_rules_json, read_rules_file,
    store::SCHEMA_VERSION, write_rules_file,
};

/// A path for a rules database in a fresh temporary directory (removed when the guard drops).
fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.db");
    (dir, path)
}

/// Santa's `rules` table as its migrations left it at schema version 4 (SNTRuleTable.mm steps
/// 1, 3 and 4; step 2 changes no schema): the first type numbering.
const SANTA_V4_TABLE: &str =
    "CREATE TABLE 'rules' ('shasum' TEXT NOT NULL, 'state' INTEGER NOT NULL, \
     'type' INTEGER NOT NULL, 'custommsg' TEXT);
     CREATE UNIQUE INDEX rulesunique ON rules (shasum, type);
     ALTER TABLE 'rules' ADD 'timestamp' INTEGER;
     ALTER TABLE 'rules' RENAME COLUMN 'shasum' TO 'identifier';";

/// A database at `path` made by `sql`, and the connection that made it.
fn sqlite(path: &Path, sql: &str) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
    c
}

fn make_santa_v4(path: &Path) -> Connection {
    sqlite(path, &format!("{SANTA_V4_TABLE} PRAGMA user_version = 4;"))
}

/// Santa's `rules` table at schema version 7: step 7 adds custom URLs (steps 5 and 6 change no
/// schema).
fn make_santa_v7(path: &Path) -> Connection {
    sqlite(
        path,
        &format!(
            "{SANTA_V4_TABLE} ALTER TABLE 'rules' ADD 'customurl' TEXT; PRAGMA user_version = 7;"
        ),
    )
}

fn insert_v7(
    c: &Connection,
    identifier: &str,
    state: i64,
    rule_type: i64,
    msg: Option<&str>,
    url: Option<&str>,
) {
    c.execute(
        "INSERT INTO rules (identifier, state, type, custommsg, timestamp, customurl) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        rusqlite::params![identifier, state, rule_type, msg, url],
    )
    .unwrap();
}

#[test]
fn santa_v7_database_is_migrated_and_decides() {
    let (_dir, path) = temp_db();
    {
        let c = make_santa_v7(&path);
        insert_v7(
            &c,
            &identifier_text(RuleType::Binary),
            2,
            1000,
            Some("blocked by IT"),
            Some("https://it/"),
        );
        insert_v7(&c, &identifier_text(RuleType::TeamId), 1, 4000, None, None);
        insert_v7(
            &c,
            &identifier_text(RuleType::SigningId),
            3,
            2000,
            None,
            None,
        );
        insert_v7(
            &c,
            &identifier_text(RuleType::Certificate),
            1,
            3000,
            None,
            None,
        );
        // Rows Santa could hold that are not usable rules: reported, not fatal.
        insert_v7(&c, "not-a-hash", 1, 1000, None, None);
        insert_v7(&c, "ABCDE12345", 1, 9999, None, None);
    }
    let store = RuleStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let (rules, report) = store.rules().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(report.loaded, 4);
    assert_eq!(report.skipped_count, 2);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.identifier == "not-a-hash" && s.problem.contains("64 hexadecimal"))
    );
    assert!(report.skipped.iter().any(|s| s.rule_type == Some(9999)));

    // Columns added by later versions exist and are empty.
    let bin = rules
        .iter()
        .find(|r| r.rule_type() == RuleType::Binary)
        .unwrap();
    assert_eq!(bin.custom_msg.as_deref(), Some("blocked by IT"));
    assert_eq!(bin.custom_url.as_deref(), Some("https://it/"));
    assert_eq!((bin.comment.as_deref(), bin.rule_id), (None, 0));

    let (snap, _) = store.build_snapshot().unwrap();
    let policy = Policy::new(config(ClientMode::Monitor)).unwrap();
    let d = decide(&snap, &policy, &policy.scopes(), &file());
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Binary));
    assert_eq!(d.custom.msg.as_deref(), Some("blocked by IT"));
    drop(store);

    // The migrated file has Santa's v16 layout.
    let c = Connection::open(&path).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "execution_rules",
            "file_access_rules",
            "network_flow_rules",
            "signal_rules"
        ]
    );
    let idx: String = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name='execution_rules_unique'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(idx.contains("'identifier', type"), "{idx}");
}

/// A version-4 database still has Santa's first type numbering and mixed-case hashes; the
/// migration renumbers and normalises them.
#[test]
fn santa_v4_database_types_are_renumbered() {
    let (_dir, path) = temp_db();
    {
        let c = make_santa_v4(&path);
        let ins = |id: String, state: i64, t: i64| {
            c.execute(
                "INSERT INTO rules (identifier, state, type) VALUES (?1, ?2, ?3)",
                rusqlite::params![id, state, t],
            )
            .unwrap();
        };
        ins(identifier_text(RuleType::Binary).to_uppercase(), 1, 1); // binary
        ins(identifier_text(RuleType::Certificate), 2, 2); // certificate
        ins(TEAM.to_lowercase(), 2, 3); // team id
        ins(identifier_text(RuleType::SigningId), 2, 4); // signing id
    }
    let store = RuleStore::open(&path).unwrap();
    let (rules, report) = store.rules().unwrap();
    assert_eq!(report.skipped_count, 0, "{report:?}");
    let mut types: Vec<(RuleType, String)> = rules
        .iter()
        .map(|r| (r.rule_type(), r.identifier.to_string()))
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            (RuleType::Binary, identifier_text(RuleType::Binary)),
            (RuleType::SigningId, identifier_text(RuleType::SigningId)),
            (
                RuleType::Certificate,
                identifier_text(RuleType::Certificate)
            ),
            (RuleType::TeamId, TEAM.to_owned()),
        ]
    );
    // The stored text itself was normalised by migration step 6.
    drop(store);
    let c = Connection::open(&path).unwrap();
    let team: String = c
        .query_row(
            "SELECT identifier FROM execution_rules WHERE type = 4000",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(team, TEAM);
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn newer_database_is_refused_and_left_untouched() {
    let (_dir, path) = temp_db();
    sqlite(
        &path,
        "CREATE TABLE execution_rules (identifier TEXT); PRAGMA user_version = 17;",
    );
    let before = file_bytes(&path);
    let e = RuleStore::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 17,
                supported: 16,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("rules.db") && e.to_string().contains("17"),
        "{e}"
    );
    assert_eq!(file_bytes(&path), before);
}

#[test]
fn garbage_file_is_reported_corrupt_and_left_untouched() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = RuleStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("rules.db"), "{e}");
    assert_eq!(file_bytes(&path), vec![0x5a; 8192]);
}

#[test]
fn damaged_database_is_reported_corrupt() {
    let (_dir, path) = temp_db();
    {
        let mut s = RuleStore::open(&path).unwrap();
        let changes: Vec<RuleChange> = (0..5000u32)
            .map(|i| {
                RuleChange::Upsert(santa_rules::Rule::new(
                    santa_rules::RuleIdentifier::parse(RuleType::Binary, &format!("{i:064x}"))
                        .unwrap(),
                    RuleState::Allow,
                ))
            })
            .collect();
        s.apply(&changes, Cleanup::None).unwrap();
    }
    // Scribble over the middle of the file (b-tree pages), keeping the header intact.
    let mut bytes = file_bytes(&path);
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8192] {
        *b = 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = RuleStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert_eq!(file_bytes(&path), bytes, "never wiped");
}

/// Why the store refuses to open a database made by `sql` (in `dir`, as `name`).
fn refusal_of(dir: &Path, name: &str, sql: &str) -> StoreError {
    let path = dir.join(name);
    sqlite(&path, sql);
    RuleStore::open(&path).unwrap_err()
}

#[test]
fn foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = refusal_of(dir.path(), "other.db", "CREATE TABLE users (name TEXT);");
    assert!(matches!(e, StoreError::Unversioned { .. }), "{e}");
    assert!(e.to_string().contains("users"), "{e}");

    let e = refusal_of(
        dir.path(),
        "lying.db",
        "CREATE TABLE execution_rules (identifier TEXT, state INTEGER); PRAGMA user_version = 16;",
    );
    assert!(matches!(e, StoreError::SchemaMismatch { .. }), "{e}");
    assert!(e.to_string().contains("custommsg"), "{e}");
}

#[test]
fn rules_persist_across_reopen() {
    let (_dir, path) = temp_db();
    {
        let mut s = RuleStore::open(&path).unwrap();
        s.apply(
            &[RuleChange::Upsert(rule(RuleType::CdHash, RuleState::Block))],
            Cleanup::None,
        )
        .unwrap();
    }
    let s = RuleStore::open(&path).unwrap();
    let (rules, _) = s.rules().unwrap();
    assert_eq!(rules, [rule(RuleType::CdHash, RuleState::Block)]);
}

#[test]
fn json_export_import_round_trips_through_stores() {
    let mut a = RuleStore::open_in_memory().unwrap();
    let mut originals = Vec::new();
    for (i, t) in RuleType::ALL.into_iter().enumerate() {
        let mut r = rule(
            t,
            [RuleState::Allow, RuleState::Block, RuleState::SilentBlock][i % 3],
        );
        r.custom_msg = Some(format!("msg {i} \"quoted\" ünïcode"));
        r.custom_url = (i % 2 == 0).then(|| format!("https://example/{i}"));
        r.comment = Some(format!("comment {i}"));
        r.event_detail_button_text = (i == 1).then(|| "Details".to_owned());
        originals.push(r);
    }
    let mut compiler = santa_rules::Rule::new(
        santa_rules::RuleIdentifier::parse(RuleType::Binary, &"ab".repeat(32)).unwrap(),
        RuleState::AllowCompiler,
    );
    compiler.comment = Some("cc".into());
    originals.push(compiler);
    let transitive = santa_rules::Rule::new(
        santa_rules::RuleIdentifier::parse(RuleType::Binary, &"cd".repeat(32)).unwrap(),
        RuleState::AllowTransitive,
    );
    let mut changes: Vec<RuleChange> = originals.iter().cloned().map(RuleChange::Upsert).collect();
    changes.push(RuleChange::Upsert(transitive));
    a.apply(&changes, Cleanup::None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.json");
    let (rules, _) = a.rules().unwrap();
    let summary = write_rules_file(&path, &rules).unwrap();
    assert_eq!(
        (summary.exported, summary.skipped_transitive),
        (originals.len(), 1)
    );

    let imported = read_rules_file(&path).unwrap();
    let mut b = RuleStore::open_in_memory().unwrap();
    b.apply(&imported, Cleanup::None).unwrap();
    let (mut got, _) = b.rules().unwrap();
    let mut want = originals.clone();
    let key = |r: &santa_rules::Rule| (r.rule_type(), r.identifier.to_string());
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want);

    // And the text is stable: exporting the import gives the same bytes.
    let (again, _) = export_rules_json(&got);
    let (first, _) = export_rules_json(&want);
    assert_eq!(again, first);
    assert!(parse_rules_json(again.as_bytes()).is_ok());
}

#[test]
fn malformed_rules_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        br#"{"rules":[{"identifier":"12","policy":"BLOCKLIST","rule_type":"CDHASH"}]}"#,
    )
    .unwrap();
    let e = read_rules_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("bad.json") && e.contains("invalid CDHASH identifier \"12\""),
        "{e}"
    );
    let missing = dir.path().join("missing.json");
    assert!(
        read_rules_file(&missing)
            .unwrap_err()
            .to_string()
            .contains("missing.json")
    );
}
