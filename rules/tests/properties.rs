//! Property tests: the snapshot lookup agrees with a naive scan written from Santa's SQL query;
//! identifier normalisation is idempotent; the JSON parser never panics.
//!
//! proptest prints the failing case and persists its seed under `proptest-regressions/`.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use proptest::prelude::*;
use santa_rules::{
    CdHash, Cleanup, FileIdentity, Rule, RuleChange, RuleIdentifier, RuleState, RuleStore,
    RuleType, Sha256, SigningStatus, Snapshot, TeamId, parse_rules_json,
};

const TEAMS: [&str; 3] = ["AAAAAAAAAA", "BBBBBBBBBB", "CCCCCCCCCC"];
/// Short identifiers, and long ones that share their first 50+ bytes
/// and differ only in the tail.
const IDENTS: [&str; 5] = [
    "com.a",
    "com.b",
    "com.a:x",
    "com.example.a-very-long-signing-identifier-for-testing.tail-one",
    "com.example.a-very-long-signing-identifier-for-testing.tail-two",
];

fn digest32(i: u8) -> [u8; 32] {
    [i; 32]
}

fn identifier_for(t: RuleType, pick: u8) -> RuleIdentifier {
    let p = pick as usize;
    match t {
        RuleType::CdHash => RuleIdentifier::CdHash(CdHash([pick; 20])),
        RuleType::Binary => RuleIdentifier::Binary(Sha256(digest32(pick))),
        RuleType::Certificate => RuleIdentifier::Certificate(Sha256(digest32(pick))),
        RuleType::TeamId => RuleIdentifier::parse(t, TEAMS[p % 3]).unwrap(),
        RuleType::SigningId => {
            let prefix = if p % 4 == 3 { "platform" } else { TEAMS[p % 3] };
            RuleIdentifier::parse(t, &format!("{prefix}:{}", IDENTS[p % IDENTS.len()])).unwrap()
        }
    }
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    (
        0usize..5,
        0u8..4,
        prop::sample::select(RuleState::ALL.to_vec()),
    )
        .prop_map(|(t, pick, state)| Rule::new(identifier_for(RuleType::ALL[t], pick), state))
}

fn arb_change() -> impl Strategy<Value = RuleChange> {
    prop_oneof![
        3 => (arb_rule(), prop::option::of("[a-c]{1,2}")).prop_map(|(mut r, msg)| {
            r.custom_msg = msg;
            RuleChange::Upsert(r)
        }),
        1 => (0usize..5, 0u8..4)
            .prop_map(|(t, pick)| RuleChange::Remove(identifier_for(RuleType::ALL[t], pick))),
    ]
}

#[derive(Debug, Clone)]
struct Probe {
    sha: u8,
    cdhash: Option<u8>,
    cert: Option<u8>,
    team: Option<usize>,
    ident: Option<usize>,
    status: SigningStatus,
    platform: bool,
}

fn arb_probe() -> impl Strategy<Value = Probe> {
    (
        0u8..4,
        prop::option::of(0u8..4),
        prop::option::of(0u8..4),
        prop::option::of(0usize..3),
        prop::option::of(0usize..IDENTS.len()),
        prop::sample::select(vec![
            SigningStatus::Unsigned,
            SigningStatus::Invalid,
            SigningStatus::AdHoc,
            SigningStatus::Development,
            SigningStatus::Production,
        ]),
        any::<bool>(),
    )
        .prop_map(|(sha, cdhash, cert, team, ident, status, platform)| Probe {
            sha,
            cdhash,
            cert,
            team,
            ident,
            status,
            platform,
        })
}

fn file_for(p: &Probe) -> FileIdentity<'static> {
    FileIdentity {
        sha256: Sha256(digest32(p.sha)),
        cdhash: p.cdhash.map(|c| CdHash([c; 20])),
        signing_id: p.ident.map(|i| IDENTS[i]),
        team_id: p
            .team
            .map(|i| TeamId::from_signature(TEAMS[i].as_bytes()).unwrap()),
        cert_sha256: p.cert.map(|c| Sha256(digest32(c))),
        signing_status: p.status,
        is_platform_binary: p.platform,
        path: b"/x",
        signing_time: None,
        secure_signing_time: None,
    }
}

/// Santa's query, spelled out: candidates in rank order, first present wins.
fn naive(rules: &[Rule], p: &Probe) -> Option<(RuleIdentifier, RuleState)> {
    // Later rules replace earlier ones with the same (type, identifier), as INSERT OR REPLACE does.
    let mut table: Vec<&Rule> = Vec::new();
    for r in rules {
        table.retain(|x| x.identifier != r.identifier);
        table.push(r);
    }
    let status = p.status;
    let production = status == SigningStatus::Production;
    let team = p
        .team
        .filter(|_| production)
        .map(|i| TeamId::parse_rule(TEAMS[i]).unwrap());
    let sid = p.ident.filter(|_| production).and_then(|i| {
        let prefix = match (p.team, p.platform) {
            (Some(t), _) => TEAMS[t],
            (None, true) => "platform",
            (None, false) => return None,
        };
        Some(format!("{prefix}:{}", IDENTS[i]))
    });
    let cd = p.cdhash.filter(|_| status >= SigningStatus::AdHoc);
    let cert = p.cert.filter(|_| status >= SigningStatus::Development);

    let rank = |r: &Rule| -> Option<u8> {
        match &r.identifier {
            RuleIdentifier::CdHash(h) if Some(h.0) == cd.map(|c| [c; 20]) => Some(1),
            RuleIdentifier::Binary(h) if h.0 == digest32(p.sha) => {
                Some(if r.state == RuleState::AllowTransitive {
                    6
                } else {
                    2
                })
            }
            RuleIdentifier::SigningId(s) if Some(s.as_str()) == sid.as_deref() => Some(3),
            RuleIdentifier::Certificate(h) if Some(h.0) == cert.map(digest32) => Some(4),
            RuleIdentifier::TeamId(t) if Some(*t) == team => Some(5),
            _ => None,
        }
    };
    table
        .iter()
        .filter_map(|r| rank(r).map(|k| (k, *r)))
        .min_by_key(|(k, _)| *k)
        .map(|(_, r)| (r.identifier.clone(), r.state))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn snapshot_lookup_agrees_with_naive_scan(
        rules in prop::collection::vec(arb_rule(), 0..40),
        probes in prop::collection::vec(arb_probe(), 1..8),
    ) {
        let snapshot = Snapshot::from_rules(1, &rules).unwrap();
        for p in &probes {
            let f = file_for(p);
            let got = snapshot
                .lookup(&f.rule_identifiers())
                .map(|m| (m.identifier().unwrap(), m.state()));
            prop_assert_eq!(got, naive(&rules, p), "probe {:?}", p);
        }
    }

    /// The same agreement against Santa's actual SQL query, run by the store.
    #[test]
    fn snapshot_lookup_agrees_with_santas_sql_query(
        rules in prop::collection::vec(arb_rule(), 0..25),
        probes in prop::collection::vec(arb_probe(), 1..6),
    ) {
        let mut store = RuleStore::open_in_memory().unwrap();
        if !rules.is_empty() {
            let changes: Vec<RuleChange> = rules.iter().cloned().map(RuleChange::Upsert).collect();
            store.apply(&changes, Cleanup::None).unwrap();
        }
        let (snapshot, report) = store.build_snapshot().unwrap();
        prop_assert_eq!(report.skipped_count, 0);
        for p in &probes {
            let f = file_for(p);
            let ids = f.rule_identifiers();
            let sql = store.find_rule(&ids).unwrap().map(|r| (r.identifier, r.state));
            let got = snapshot.lookup(&ids).map(|m| (m.identifier().unwrap(), m.state()));
            prop_assert_eq!(got, sql, "probe {:?}", p);
        }
    }

    /// A snapshot updated in place by change batches equals one rebuilt from the store that
    /// committed the same batches. Small identifier pools make collisions, replacements and
    /// removals of absent rules common.
    #[test]
    fn incremental_snapshot_agrees_with_a_rebuild(
        batches in prop::collection::vec(prop::collection::vec(arb_change(), 1..15), 1..6),
        probes in prop::collection::vec(arb_probe(), 1..8),
    ) {
        let mut store = RuleStore::open_in_memory().unwrap();
        let mut incremental = Snapshot::empty(0);
        for batch in &batches {
            store.apply(batch, Cleanup::None).unwrap();
            incremental = incremental.with_changes(store.generation(), batch).unwrap();
        }
        let (rebuilt, _) = store.build_snapshot().unwrap();
        prop_assert_eq!(incremental.generation(), rebuilt.generation());
        prop_assert_eq!(incremental.stats().rules_by_type, rebuilt.stats().rules_by_type);
        for p in &probes {
            let ids = file_for(p).rule_identifiers();
            let a = incremental.lookup(&ids).map(|m| (m.identifier().unwrap(), m.state(), m.custom().clone()));
            let b = rebuilt.lookup(&ids).map(|m| (m.identifier().unwrap(), m.state(), m.custom().clone()));
            prop_assert_eq!(a, b, "probe {:?}", p);
        }
    }

    #[test]
    fn identifier_normalisation_is_idempotent(t in 0usize..5, text in "[0-9a-zA-Z:.]{0,70}") {
        let t = RuleType::ALL[t];
        if let Ok(id) = RuleIdentifier::parse(t, &text) {
            let again = RuleIdentifier::parse(t, &id.to_string()).unwrap();
            prop_assert_eq!(&again, &id);
            prop_assert_eq!(again.to_string(), id.to_string());
        }
    }

    #[test]
    fn json_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_rules_json(&bytes);
    }

    #[test]
    fn json_parser_handles_structured_junk(
        entries in prop::collection::vec(
            prop::collection::btree_map("[a-zA-Z_]{1,12}", "[ -~]{0,70}", 0..6), 0..6)
    ) {
        let value = serde_json::json!({ "rules": entries });
        let text = serde_json::to_vec(&value).unwrap();
        if let Err(e) = parse_rules_json(&text) {
            prop_assert!(e.to_string().starts_with("rule #"), "{}", e);
        }
    }
}
