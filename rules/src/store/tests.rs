use super::schema::table_names;
use super::*;
use crate::model::{Rule, RuleChange, RuleIdentifier, RuleState, RuleType};

fn rule(t: RuleType, id: &str, state: RuleState) -> Rule {
    Rule::new(RuleIdentifier::parse(t, id).unwrap(), state)
}

fn up(t: RuleType, id: &str, state: RuleState) -> RuleChange {
    RuleChange::Upsert(rule(t, id, state))
}

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

#[test]
fn fresh_store_has_santas_schema_version() {
    let s = RuleStore::open_in_memory().unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let tables = table_names(&s.conn).unwrap();
    for t in [
        "execution_rules",
        "file_access_rules",
        "network_flow_rules",
        "signal_rules",
    ] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
}

#[test]
fn apply_is_all_or_nothing() {
    let mut s = RuleStore::open_in_memory().unwrap();
    s.apply(&[up(RuleType::Binary, H1, RuleState::Allow)], Cleanup::None)
        .unwrap();
    // Drop the table underneath to force a failure mid-transaction.
    s.conn
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON execution_rules \
             WHEN NEW.identifier = '2222222222222222222222222222222222222222222222222222222222222222' \
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .unwrap();
    let err = s
        .apply(
            &[
                RuleChange::Remove(rule(RuleType::Binary, H1, RuleState::Allow).identifier),
                up(RuleType::Binary, H2, RuleState::Block),
            ],
            Cleanup::None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("inserting a rule"), "{err}");
    let (rules, _) = s.rules().unwrap();
    assert_eq!(rules.len(), 1, "the removal was rolled back");
    assert!(matches!(
        s.apply(&[], Cleanup::None),
        Err(StoreError::NothingToApply)
    ));
}

#[test]
fn flush_rule_follows_santa() {
    let mut s = RuleStore::open_in_memory().unwrap();
    // A plain new allow: no flush.
    let o = s
        .apply(&[up(RuleType::Binary, H1, RuleState::Allow)], Cleanup::None)
        .unwrap();
    assert!(!o.flush_cache);
    // A new block: flush. The same block again: no flush.
    let block = up(RuleType::TeamId, "ABCDE12345", RuleState::Block);
    assert!(
        s.apply(std::slice::from_ref(&block), Cleanup::None)
            .unwrap()
            .flush_cache
    );
    assert!(
        !s.apply(std::slice::from_ref(&block), Cleanup::None)
            .unwrap()
            .flush_cache
    );
    // Changing a block to a silent block changes the state: flush.
    let silent = up(RuleType::TeamId, "ABCDE12345", RuleState::SilentBlock);
    assert!(s.apply(&[silent], Cleanup::None).unwrap().flush_cache);
    // An allow replacing an allow-compiler: flush; replacing a plain allow: none.
    let compiler = up(RuleType::Binary, H2, RuleState::AllowCompiler);
    assert!(s.apply(&[compiler], Cleanup::None).unwrap().flush_cache);
    let allow = up(RuleType::Binary, H2, RuleState::Allow);
    assert!(
        s.apply(std::slice::from_ref(&allow), Cleanup::None)
            .unwrap()
            .flush_cache
    );
    assert!(!s.apply(&[allow], Cleanup::None).unwrap().flush_cache);
    // Any removal flushes, even of a rule that does not exist.
    let rm = RuleChange::Remove(RuleIdentifier::parse(RuleType::Binary, H1).unwrap());
    let o = s.apply(std::slice::from_ref(&rm), Cleanup::None).unwrap();
    assert!(o.flush_cache);
    assert_eq!(o.removed, 1);
    assert!(s.apply(&[rm], Cleanup::None).unwrap().flush_cache);
    // Cleanup always flushes.
    assert!(s.apply(&[], Cleanup::All).unwrap().flush_cache);
    assert_eq!(s.counts().unwrap().total, 0);
}

#[test]
fn a_thousand_non_allow_rules_flush_without_lookups() {
    let mut s = RuleStore::open_in_memory().unwrap();
    let changes: Vec<RuleChange> = (0..1000u32)
        .map(|i| up(RuleType::Binary, &format!("{i:064x}"), RuleState::Block))
        .collect();
    assert!(s.apply(&changes, Cleanup::None).unwrap().flush_cache);
    // All present now; 999 identical blocks do not flush, the 1000th non-allow does.
    assert!(!s.apply(&changes[..999], Cleanup::None).unwrap().flush_cache);
    assert!(s.apply(&changes, Cleanup::None).unwrap().flush_cache);
}

#[test]
fn clean_keeps_transitive_rules_and_stamps_them() {
    let mut s = RuleStore::open_in_memory().unwrap();
    s.apply(
        &[
            up(RuleType::Binary, H1, RuleState::AllowTransitive),
            up(RuleType::Binary, H2, RuleState::Block),
        ],
        Cleanup::None,
    )
    .unwrap();
    s.apply(&[], Cleanup::NonTransitive).unwrap();
    let (rules, _) = s.rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].state, RuleState::AllowTransitive);
    assert!(rules[0].timestamp > 0, "transitive rules are stamped");
    let c = s.counts().unwrap();
    assert_eq!((c.transitive, c.by_type[1], c.total), (1, 1, 1));
}

#[test]
fn generation_counts_changes() {
    let mut s = RuleStore::open_in_memory().unwrap();
    let g = s.generation();
    s.apply(&[up(RuleType::Binary, H1, RuleState::Allow)], Cleanup::None)
        .unwrap();
    assert_eq!(s.generation(), g + 1);
    let (snap, report) = s.build_snapshot().unwrap();
    assert_eq!(snap.generation(), g + 1);
    assert_eq!(report.loaded, 1);
}

#[test]
fn transitive_rules_are_touched_and_culled_when_stale() {
    let mut s = RuleStore::open_in_memory().unwrap();
    // Culling needs a large table; lower the bar by filling it.
    let fill: Vec<RuleChange> = (0..TRANSITIVE_CULL_THRESHOLD_RULES as u32)
        .map(|i| {
            up(
                RuleType::Binary,
                &format!("{i:064x}"),
                RuleState::AllowTransitive,
            )
        })
        .collect();
    s.apply(&fill, Cleanup::None).unwrap();
    let now = now_apple_reference_secs();
    let keep = crate::model::Sha256::from_hex(&format!("{:064x}", 7)).unwrap();
    let later = now + TRANSITIVE_RULE_EXPIRY_SECS + 10;
    assert!(s.touch_transitive_rule(&keep, later).unwrap());
    let absent = crate::model::Sha256([0xee; 32]);
    assert!(!s.touch_transitive_rule(&absent, later).unwrap());
    let removed = s.cull_transitive_rules(later).unwrap();
    assert_eq!(removed as i64, TRANSITIVE_CULL_THRESHOLD_RULES - 1);
    let (rules, _) = s.rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].identifier, RuleIdentifier::Binary(keep));
}

#[test]
fn transitive_culling_needs_a_large_table() {
    let mut s = RuleStore::open_in_memory().unwrap();
    s.apply(
        &[up(RuleType::Binary, H1, RuleState::AllowTransitive)],
        Cleanup::None,
    )
    .unwrap();
    let far_future = now_apple_reference_secs() + 10 * TRANSITIVE_RULE_EXPIRY_SECS;
    assert_eq!(s.cull_transitive_rules(far_future).unwrap(), 0);
}
