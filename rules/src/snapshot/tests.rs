use super::*;
use crate::identity::FileIdentity;
use crate::model::{SigningIdPrefix, TeamId};

fn rule(t: RuleType, id: &str, state: RuleState) -> Rule {
    Rule::new(RuleIdentifier::parse(t, id).unwrap(), state)
}

#[test]
fn replace_keeps_one_entry_and_latest_state() {
    let h = "a".repeat(64);
    let mut r = rule(RuleType::Binary, &h, RuleState::Allow);
    let mut b = SnapshotBuilder::new(1);
    b.insert(&r).unwrap();
    r.state = RuleState::Block;
    r.custom_msg = Some("no".into());
    b.insert(&r).unwrap();
    let s = b.build();
    assert_eq!(s.stats().rules(), 1);
    let ids = RuleIdentifiers {
        binary: Some(Sha256([0xaa; 32])),
        ..Default::default()
    };
    let m = s.lookup(&ids).unwrap();
    assert_eq!(m.state(), RuleState::Block);
    assert_eq!(m.custom().msg.as_deref(), Some("no"));
    assert_eq!(m.identifier().unwrap().to_string(), h);
}

#[test]
fn signing_id_lookup_uses_parts() {
    let s = Snapshot::from_rules(
        7,
        &[
            rule(RuleType::SigningId, "ABCDE12345:com.x", RuleState::Block),
            rule(
                RuleType::SigningId,
                "platform:com.apple.ls",
                RuleState::Allow,
            ),
        ],
    )
    .unwrap();
    assert_eq!(s.generation(), 7);
    let team = TeamId::from_signature(b"ABCDE12345").unwrap();
    let mut f = FileIdentity::unsigned(Sha256([0; 32]), b"/x");
    f.signing_status = crate::identity::SigningStatus::Production;
    f.signing_id = Some("com.x");
    f.team_id = Some(team);
    let m = s.lookup(&f.rule_identifiers()).unwrap();
    assert_eq!(m.rule_type(), RuleType::SigningId);
    assert_eq!(m.identifier().unwrap().to_string(), "ABCDE12345:com.x");
    f.signing_id = Some("com.X");
    assert!(
        s.lookup(&f.rule_identifiers()).is_none(),
        "signing ids are case-sensitive"
    );
    f.team_id = None;
    f.is_platform_binary = true;
    f.signing_id = Some("com.apple.ls");
    let m = s.lookup(&f.rule_identifiers()).unwrap();
    assert_eq!(m.state(), RuleState::Allow);
    let ids = f.rule_identifiers();
    assert_eq!(ids.signing_id.unwrap().prefix, SigningIdPrefix::Platform);
}

/// Many keys per table: growth, probing past collisions and replacement after growth.
#[test]
fn every_inserted_key_is_found_and_no_other() {
    let mut b = SnapshotBuilder::new(1);
    let n = 5000u32;
    let key = |i: u32| {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k[31] = 0x5a;
        k
    };
    for i in 0..n {
        let mut r = Rule::new(RuleIdentifier::Binary(Sha256(key(i))), RuleState::Allow);
        r.rule_id = i64::from(i);
        b.insert(&r).unwrap();
        let team = format!("{:0>10}", i);
        b.insert(&Rule::new(
            RuleIdentifier::parse(RuleType::TeamId, &team).unwrap(),
            RuleState::Block,
        ))
        .unwrap();
    }
    // Replace every tenth after all the growth happened.
    for i in (0..n).step_by(10) {
        let mut r = Rule::new(RuleIdentifier::Binary(Sha256(key(i))), RuleState::Block);
        r.rule_id = -1;
        b.insert(&r).unwrap();
    }
    let s = b.build();
    assert_eq!(s.stats().rules_by_type, [0, n as usize, 0, 0, n as usize]);
    for i in 0..n + 500 {
        let ids = RuleIdentifiers {
            binary: Some(Sha256(key(i))),
            ..Default::default()
        };
        let m = s.lookup(&ids);
        if i < n {
            let m = m.expect("inserted key found");
            let replaced = i % 10 == 0;
            assert_eq!(m.rule_id(), if replaced { -1 } else { i64::from(i) });
            assert_eq!(
                m.identifier().unwrap(),
                RuleIdentifier::Binary(Sha256(key(i)))
            );
        } else {
            assert!(m.is_none(), "absent key {i} must miss");
        }
        let team = TeamId::parse_rule(&format!("{:0>10}", i)).unwrap();
        let ids = RuleIdentifiers {
            team_id: Some(team),
            ..Default::default()
        };
        assert_eq!(s.lookup(&ids).is_some(), i < n);
    }
}

/// Removal shifts entries back; every survivor must stay reachable, every removed key gone.
#[test]
fn removal_keeps_every_other_key_reachable() {
    let key = |i: u32| {
        let mut k = [0u8; 20];
        k[..4].copy_from_slice(&i.to_le_bytes());
        CdHash(k)
    };
    let n = 4000u32;
    let mut b = SnapshotBuilder::new(1);
    for i in 0..n {
        b.insert(&Rule::new(RuleIdentifier::CdHash(key(i)), RuleState::Allow))
            .unwrap();
    }
    let base = b.build();
    let mut b = SnapshotBuilder::from_snapshot(&base, 2);
    for i in (0..n).step_by(3) {
        assert!(b.remove(&RuleIdentifier::CdHash(key(i))));
        assert!(!b.remove(&RuleIdentifier::CdHash(key(i))), "already gone");
    }
    let s = b.build();
    assert_eq!(s.generation(), 2);
    assert_eq!(s.stats().rules(), (n - n.div_ceil(3)) as usize);
    for i in 0..n {
        let ids = RuleIdentifiers {
            cdhash: Some(key(i)),
            ..Default::default()
        };
        assert_eq!(s.lookup(&ids).is_some(), i % 3 != 0, "key {i}");
        assert!(
            base.lookup(&ids).is_some(),
            "the base snapshot is untouched"
        );
    }
}

/// Keys whose hashes collide completely (same home slot, same fingerprint) are told apart by
/// the key comparison, survive each other's removal, and probing past them still ends.
#[test]
fn colliding_hashes_are_told_apart_by_key() {
    let meta = |rule_id| Meta {
        state: RuleState::Allow,
        custom: 0,
        rule_id,
    };
    let same_hash = |_: &Sha256| 0xdead_beef_0000_0003u64;
    let mut t: Table<Sha256> = Table::with_capacity(0);
    for i in 0..5u8 {
        assert!(t.upsert(
            same_hash(&Sha256([i; 32])),
            Sha256([i; 32]),
            meta(i64::from(i)),
            |a, b| a == b,
            same_hash
        ));
    }
    let find = |t: &Table<Sha256>, i: u8| {
        t.find_from(same_hash(&Sha256([i; 32])), |k| *k == Sha256([i; 32]))
            .map(|(_, m)| m.rule_id)
    };
    for i in 0..5u8 {
        assert_eq!(find(&t, i), Some(i64::from(i)));
    }
    assert_eq!(find(&t, 9), None);
    assert!(t.remove(
        same_hash(&Sha256([1; 32])),
        |k| *k == Sha256([1; 32]),
        same_hash
    ));
    assert_eq!(find(&t, 1), None);
    for i in [0u8, 2, 3, 4] {
        assert_eq!(find(&t, i), Some(i64::from(i)), "survivor {i}");
    }
    assert_eq!(t.len, 4);
}

/// Long identifiers sharing a long prefix, identifiers that are prefixes of others, and equal
/// lengths differing in one byte: only exact matches hit.
#[test]
fn long_signing_ids_compare_their_tails() {
    let head = "com.example.".repeat(5); // 60 bytes, longer than the inline part
    let stored = format!("ABCDE12345:{head}one");
    let s = Snapshot::from_rules(
        1,
        &[
            rule(RuleType::SigningId, &stored, RuleState::Block),
            rule(
                RuleType::SigningId,
                "ABCDE12345:com.short",
                RuleState::Allow,
            ),
        ],
    )
    .unwrap();
    let team = TeamId::from_signature(b"ABCDE12345").unwrap();
    let probe = |ident: &str| {
        let ids = RuleIdentifiers {
            signing_id: Some(SigningIdRef {
                prefix: SigningIdPrefix::Team(team),
                ident,
            }),
            ..Default::default()
        };
        s.lookup(&ids).map(|m| m.state())
    };
    assert_eq!(probe(&format!("{head}one")), Some(RuleState::Block));
    assert_eq!(probe(&format!("{head}two")), None, "same head, other tail");
    assert_eq!(
        probe(&format!("{head}on")),
        None,
        "prefix of the stored identifier"
    );
    assert_eq!(probe("com.short"), Some(RuleState::Allow));
    assert_eq!(
        probe("com.shorT"),
        None,
        "same length, differs inside the head"
    );
    assert_eq!(probe("com.shor"), None);
}

#[test]
fn custom_text_is_interned() {
    let mut a = rule(RuleType::Binary, &"1".repeat(64), RuleState::Block);
    let mut b = rule(RuleType::Binary, &"2".repeat(64), RuleState::Block);
    a.custom_msg = Some("same".into());
    b.custom_msg = Some("same".into());
    let s = Snapshot::from_rules(0, &[a, b]).unwrap();
    assert_eq!(s.stats().custom_texts, 1);
}

#[test]
fn publish_swaps_atomically() {
    let cell = SnapshotCell::new(Snapshot::empty(1));
    let old = cell.load_full();
    let prev = cell.publish(Snapshot::empty(2));
    assert!(Arc::ptr_eq(&old, &prev));
    assert_eq!(cell.load().generation(), 2);
    assert_eq!(old.generation(), 1, "a reader's snapshot stays valid");
}
