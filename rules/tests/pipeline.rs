//! The decision pipeline end to end: precedence, modes, identity filtering, scopes, special states.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

mod common;

use std::sync::Arc;

use common::*;
use santa_rules::{
    Action, ClientMode, FileIdentity, Policy, PolicyConfig, PolicyEngine, PolicyError, Reason,
    Rule, RuleIdentifier, RuleState, RuleType, Sha256, SigningStatus, Snapshot,
};

/// The reason each rule type's match is logged under, written out here as the expectation.
const REASONS: [(RuleType, Reason); 5] = [
    (RuleType::CdHash, Reason::CdHash),
    (RuleType::Binary, Reason::Binary),
    (RuleType::SigningId, Reason::SigningId),
    (RuleType::Certificate, Reason::Cert),
    (RuleType::TeamId, Reason::TeamId),
];

fn reason_of(t: RuleType) -> Reason {
    REASONS
        .iter()
        .find(|(rt, _)| *rt == t)
        .map(|&(_, r)| r)
        .unwrap()
}

/// Every pair of rule types, with opposite verdicts, inserted in both orders: the higher
/// precedence type decides, in both modes.
#[test]
fn precedence_matrix_every_pair_both_orders() {
    let mut checked = 0;
    for (i, &high) in RuleType::ALL.iter().enumerate() {
        for &low in &RuleType::ALL[i + 1..] {
            for (high_state, low_state) in [
                (RuleState::Block, RuleState::Allow),
                (RuleState::Allow, RuleState::Block),
            ] {
                let a = rule(high, high_state);
                let b = rule(low, low_state);
                for rules in [[a.clone(), b.clone()], [b.clone(), a.clone()]] {
                    for mode in [ClientMode::Monitor, ClientMode::Lockdown] {
                        let d = decide_with(&rules, config(mode), &file());
                        let want = if high_state == RuleState::Allow {
                            Action::Allow
                        } else {
                            Action::Deny
                        };
                        assert_eq!(d.action, want, "{high} over {low}, {mode:?}");
                        assert_eq!(d.reason, reason_of(high), "{high} over {low}");
                        let m = d.matched.expect("a rule matched");
                        assert_eq!(m.identifier.rule_type(), high);
                        assert_eq!(m.identifier.to_string(), identifier_text(high));
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 10 * 2 * 2 * 2);
}

/// A transitive Binary rule ranks below every configured type, including Team ID.
#[test]
fn transitive_binary_ranks_last() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.enable_transitive_rules = true;
    for t in [
        RuleType::CdHash,
        RuleType::SigningId,
        RuleType::Certificate,
        RuleType::TeamId,
    ] {
        let rules = [
            rule(RuleType::Binary, RuleState::AllowTransitive),
            rule(t, RuleState::Block),
        ];
        let d = decide_with(&rules, cfg.clone(), &file());
        assert_eq!((d.action, d.reason), (Action::Deny, reason_of(t)), "{t}");
    }
    let d = decide_with(
        &[rule(RuleType::Binary, RuleState::AllowTransitive)],
        cfg.clone(),
        &file(),
    );
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Transitive));

    // Transitive rules off: the rule is ignored and the mode decides.
    cfg.enable_transitive_rules = false;
    let d = decide_with(
        &[rule(RuleType::Binary, RuleState::AllowTransitive)],
        cfg,
        &file(),
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
    assert!(d.matched.is_none());
}

/// Allowed and blocked by each type, in Monitor and Lockdown; no rule: Monitor allows, Lockdown
/// denies.
#[test]
fn modes_by_rule_kind() {
    for mode in [ClientMode::Monitor, ClientMode::Lockdown] {
        for t in RuleType::ALL {
            let allow = decide_with(&[rule(t, RuleState::Allow)], config(mode), &file());
            assert_eq!(
                (allow.action, allow.reason),
                (Action::Allow, reason_of(t)),
                "{t} {mode:?}"
            );
            assert_eq!(allow.mode, mode);
            assert!(allow.cacheable);
            let block = decide_with(&[rule(t, RuleState::Block)], config(mode), &file());
            assert_eq!(
                (block.action, block.reason),
                (Action::Deny, reason_of(t)),
                "{t} {mode:?}"
            );
            assert_eq!(block.log_decision(), "DENY");
        }
        let none = decide_with(&[], config(mode), &file());
        let want = match mode {
            ClientMode::Monitor => Action::Allow,
            ClientMode::Lockdown => Action::Deny,
        };
        assert_eq!((none.action, none.reason), (want, Reason::Unknown));
        assert!(none.matched.is_none() && none.cacheable);
    }
}

/// Identity filtering by signing status: which rule types can match at all.
#[test]
fn identity_filtering_by_signing_status() {
    let cases = [
        (SigningStatus::Production, &RuleType::ALL[..]),
        (
            SigningStatus::Development,
            &[RuleType::CdHash, RuleType::Binary, RuleType::Certificate][..],
        ),
        (
            SigningStatus::AdHoc,
            &[RuleType::CdHash, RuleType::Binary][..],
        ),
        (SigningStatus::Invalid, &[RuleType::Binary][..]),
        (SigningStatus::Unsigned, &[RuleType::Binary][..]),
    ];
    for (status, matching) in cases {
        let mut f = file();
        f.signing_status = status;
        for t in RuleType::ALL {
            let d = decide_with(
                &[rule(t, RuleState::Block)],
                config(ClientMode::Monitor),
                &f,
            );
            if matching.contains(&t) {
                assert_eq!(
                    (d.action, d.reason),
                    (Action::Deny, reason_of(t)),
                    "{status:?} {t}"
                );
            } else {
                assert_eq!(
                    (d.action, d.reason),
                    (Action::Allow, Reason::Unknown),
                    "{status:?} must not match a {t} rule"
                );
            }
        }
    }
}

/// The issue's example: an ad-hoc file never matches a Team ID rule, even when its (untrusted)
/// signature names the team, and falls to the mode instead.
#[test]
fn ad_hoc_file_never_matches_team_id_rule() {
    let mut f = file();
    f.signing_status = SigningStatus::AdHoc;
    let d = decide_with(
        &[rule(RuleType::TeamId, RuleState::Allow)],
        config(ClientMode::Lockdown),
        &f,
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
}

#[test]
fn scopes_block_then_allow_in_every_mode_after_rules() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.allowed_path_regex = vec!["/opt/tools/".into()];
    cfg.blocked_path_regex = vec!["/opt/tools/bin/bad".into()];
    let mut f = FileIdentity::unsigned(Sha256([9; 32]), b"/opt/tools/bin/tool");
    let d = decide_with(&[], cfg.clone(), &f);
    assert_eq!(
        (d.action, d.reason, d.explain),
        (Action::Allow, Reason::Scope, Some("Allowed Path Regex"))
    );

    f.path = b"/opt/tools/bin/bad-thing";
    for mode in [ClientMode::Monitor, ClientMode::Lockdown] {
        cfg.mode = mode;
        let d = decide_with(&[], cfg.clone(), &f);
        assert_eq!(
            (d.action, d.reason, d.explain),
            (Action::Deny, Reason::Scope, Some("Blocked Path Regex")),
            "blocked path wins over allowed path, {mode:?}"
        );
    }

    // Santa anchors a pattern without '^' at the start of the path.
    f.path = b"/home/u/opt/tools/x";
    cfg.mode = ClientMode::Lockdown;
    let d = decide_with(&[], cfg.clone(), &f);
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));

    // A rule decides before scopes.
    let f = file();
    cfg.blocked_path_regex = vec!["/opt/tools/bin/tool$".into()];
    let d = decide_with(&[rule(RuleType::Binary, RuleState::Allow)], cfg.clone(), &f);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Binary));
    let d = decide_with(&[], cfg, &f);
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Scope));
}

#[test]
fn scope_paths_may_be_non_utf8() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.allowed_path_regex = vec![r"/data/(?-u:\xff)".into()];
    let f = FileIdentity::unsigned(Sha256([9; 32]), b"/data/\xff/run");
    let d = decide_with(&[], cfg, &f);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Scope));
}

#[test]
fn bad_regex_is_rejected_naming_the_pattern() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.blocked_path_regex = vec!["/ok".into(), "/bad(".into()];
    let e = Policy::new(cfg).unwrap_err();
    assert!(matches!(e, PolicyError::BadPathRegex { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("BlockedPathRegex") && msg.contains("/bad("),
        "{msg}"
    );
}

#[test]
fn path_regex_bounds_are_enforced() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.allowed_path_regex = vec!["/x".into(); santa_rules::pipeline::PATH_REGEX_PATTERNS_MAX + 1];
    let e = Policy::new(cfg).unwrap_err();
    assert!(matches!(e, PolicyError::TooManyPathRegexes { .. }), "{e}");

    let mut cfg = config(ClientMode::Lockdown);
    cfg.blocked_path_regex = vec!["(\\w{100}){100}".into()];
    let e = Policy::new(cfg).unwrap_err().to_string();
    assert!(
        e.contains("BlockedPathRegex") && e.contains("size limit"),
        "{e}"
    );

    let mut cfg = config(ClientMode::Lockdown);
    cfg.failsafe_paths = vec![b"/x".to_vec(); santa_rules::pipeline::FAILSAFE_ENTRIES_MAX + 1];
    assert!(matches!(
        Policy::new(cfg),
        Err(PolicyError::TooManyFailsafeEntries { .. })
    ));
}

#[test]
fn failsafe_allows_before_any_rule() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.failsafe_paths = vec![PATH.to_vec()];
    let d = decide_with(
        &[rule(RuleType::Binary, RuleState::Block)],
        cfg.clone(),
        &file(),
    );
    assert_eq!(
        (d.action, d.reason, d.explain),
        (Action::Allow, Reason::Failsafe, Some("failsafe path"))
    );

    cfg.failsafe_paths.clear();
    cfg.failsafe_sha256 = vec![Sha256(SHA)];
    let mut f = file();
    f.path = b"/elsewhere";
    let d = decide_with(&[rule(RuleType::CdHash, RuleState::Block)], cfg, &f);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Failsafe));
}

#[test]
fn bad_signature_protection_denies_invalid_signatures_unless_a_rule_decides() {
    let mut cfg = config(ClientMode::Monitor);
    let mut f = file();
    f.signing_status = SigningStatus::Invalid;
    let d = decide_with(&[], cfg.clone(), &f);
    assert_eq!(d.action, Action::Allow, "off by default");
    cfg.enable_bad_signature_protection = true;
    let d = decide_with(&[], cfg.clone(), &f);
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Cert));
    let d = decide_with(&[rule(RuleType::Binary, RuleState::Allow)], cfg.clone(), &f);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Binary));
    // Unsigned is not a bad signature.
    f.signing_status = SigningStatus::Unsigned;
    assert_eq!(decide_with(&[], cfg, &f).action, Action::Allow);
}

#[test]
fn platform_binaries_are_allowed_after_rules_before_scopes() {
    let mut cfg = config(ClientMode::Lockdown);
    cfg.blocked_path_regex = vec![".*".into()];
    let mut f = file();
    f.is_platform_binary = true;
    let d = decide_with(&[], cfg.clone(), &f);
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Platform));
    let d = decide_with(&[rule(RuleType::TeamId, RuleState::Block)], cfg, &f);
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::TeamId));
}

#[test]
fn silent_blocks_and_custom_text_are_carried() {
    for (state, gui, tty) in [
        (RuleState::SilentBlock, true, true),
        (RuleState::SilentBlockGui, true, false),
        (RuleState::SilentBlockTty, false, true),
        (RuleState::Block, false, false),
    ] {
        let mut r = rule(RuleType::Certificate, state);
        r.custom_msg = Some("Ask IT".into());
        r.custom_url = Some("https://it.example/".into());
        r.rule_id = 42;
        let d = decide_with(&[r], config(ClientMode::Monitor), &file());
        assert_eq!(d.action, Action::Deny);
        assert_eq!((d.silence.gui, d.silence.tty), (gui, tty), "{state:?}");
        assert_eq!(d.custom.msg.as_deref(), Some("Ask IT"));
        assert_eq!(d.custom.url.as_deref(), Some("https://it.example/"));
        let m = d.matched.unwrap();
        assert_eq!((m.state, m.rule_id), (state, 42));
    }
}

#[test]
fn compiler_rules_depend_on_transitive_setting_and_type() {
    let mut cfg = config(ClientMode::Lockdown);
    for t in [RuleType::CdHash, RuleType::Binary, RuleType::SigningId] {
        cfg.enable_transitive_rules = true;
        let d = decide_with(&[rule(t, RuleState::AllowCompiler)], cfg.clone(), &file());
        assert_eq!(
            (d.action, d.reason, d.compiler),
            (Action::Allow, reason_of(t), true)
        );
        assert_eq!(d.log_decision(), "ALLOW_COMPILER");
        cfg.enable_transitive_rules = false;
        let d = decide_with(&[rule(t, RuleState::AllowCompiler)], cfg.clone(), &file());
        assert_eq!((d.action, d.compiler), (Action::Allow, false));
    }
    // A compiler Team ID rule is an invalid pair: treated as no rule, and lower rules are not
    // consulted (Santa returns only the top rule).
    cfg.enable_transitive_rules = true;
    let d = decide_with(
        &[rule(RuleType::TeamId, RuleState::AllowCompiler)],
        cfg.clone(),
        &file(),
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
}

#[test]
fn seatbelt_denies_uncached_and_cel_follows_fail_closed() {
    let d = decide_with(
        &[rule(RuleType::Binary, RuleState::Seatbelt)],
        config(ClientMode::Monitor),
        &file(),
    );
    assert_eq!(
        (d.action, d.reason, d.cacheable),
        (Action::Deny, Reason::Binary, false)
    );

    // A CEL v2 rule is not evaluated here: Santa's "evaluator unavailable" path.
    let mut cel = rule(RuleType::SigningId, RuleState::CelV2);
    cel.cel_expr = Some("true".into());
    let mut cfg = config(ClientMode::Lockdown);
    cfg.allowed_path_regex = vec!["/opt/".into()];
    let d = decide_with(std::slice::from_ref(&cel), cfg.clone(), &file());
    assert_eq!(
        (d.action, d.reason),
        (Action::Allow, Reason::Scope),
        "falls through"
    );
    cfg.fail_closed = true;
    let d = decide_with(std::slice::from_ref(&cel), cfg.clone(), &file());
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
    cfg.mode = ClientMode::Monitor;
    let d = decide_with(&[cel], cfg, &file());
    assert_eq!(
        d.action,
        Action::Allow,
        "FailClosed applies only in Lockdown"
    );
}

#[test]
fn evaluator_follows_snapshot_and_policy_swaps() {
    let engine = Arc::new(PolicyEngine::new(
        Snapshot::empty(1),
        Policy::new(config(ClientMode::Monitor)).unwrap(),
    ));
    let mut ev = engine.evaluator();
    let f = file();
    assert_eq!(ev.decide(&f).action, Action::Allow);

    engine.publish_snapshot(
        Snapshot::from_rules(2, &[rule(RuleType::TeamId, RuleState::Block)]).unwrap(),
    );
    let d = ev.decide(&f);
    assert_eq!(
        (d.action, d.reason, d.rules_generation),
        (Action::Deny, Reason::TeamId, 2)
    );

    engine.publish_snapshot(Snapshot::empty(3));
    let mut cfg = PolicyConfig {
        mode: ClientMode::Lockdown,
        ..PolicyConfig::default()
    };
    engine.set_policy(Policy::new(cfg.clone()).unwrap());
    assert_eq!(ev.decide(&f).reason, Reason::Unknown);
    assert_eq!(ev.decide(&f).action, Action::Deny);
    cfg.allowed_path_regex = vec!["/opt/tools/".into()];
    engine.set_policy(Policy::new(cfg).unwrap());
    assert_eq!(
        ev.decide(&f).reason,
        Reason::Scope,
        "the worker picked up new regexes"
    );
}

/// Readers decide while the control thread publishes snapshots; every decision is consistent with
/// one of the published snapshots (block in even generations, none in odd). The publisher keeps
/// going until the readers have made many decisions, so the two really overlap.
#[test]
fn concurrent_readers_see_whole_snapshots() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const READERS: usize = 3;
    const DECISIONS_MIN: u64 = 30_000;
    const GENERATIONS_MAX: u64 = 10_000_000;
    let engine = Arc::new(PolicyEngine::new(
        Snapshot::empty(1),
        Policy::new(config(ClientMode::Monitor)).unwrap(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let decided = Arc::new(AtomicU64::new(0));
    let start = Arc::new(std::sync::Barrier::new(READERS + 1));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let mut ev = engine.evaluator();
            let (stop, decided, start) =
                (Arc::clone(&stop), Arc::clone(&decided), Arc::clone(&start));
            std::thread::spawn(move || {
                let f = file();
                let mut seen = std::collections::BTreeSet::new();
                start.wait();
                loop {
                    let d = ev.decide(&f);
                    let blocked = d.rules_generation.is_multiple_of(2);
                    assert_eq!(
                        d.action == Action::Deny,
                        blocked,
                        "gen {}",
                        d.rules_generation
                    );
                    seen.insert(d.rules_generation);
                    decided.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        return seen.len();
                    }
                }
            })
        })
        .collect();
    let block = [rule(RuleType::TeamId, RuleState::Block)];
    start.wait();
    let mut generation = 2u64;
    while (decided.load(Ordering::Relaxed) < DECISIONS_MIN || generation < 200)
        && generation < GENERATIONS_MAX
    {
        let s = if generation.is_multiple_of(2) {
            Snapshot::from_rules(generation, &block).unwrap()
        } else {
            Snapshot::empty(generation)
        };
        engine.publish_snapshot(s);
        generation += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<usize> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(decided.load(Ordering::Relaxed) >= DECISIONS_MIN);
    assert!(seen.iter().all(|&n| n >= 1), "{seen:?}");
}

#[test]
fn matched_rule_identifier_is_normalised() {
    let r = santa_rules::Rule::new(
        RuleIdentifier::parse(
            RuleType::SigningId,
            &format!("{}:{SIGNING_IDENT}", TEAM.to_lowercase()),
        )
        .unwrap(),
        RuleState::Block,
    );
    let d = decide_with(&[r], config(ClientMode::Monitor), &file());
    assert_eq!(
        d.matched.unwrap().identifier.to_string(),
        format!("{TEAM}:{SIGNING_IDENT}")
    );
}

/// `StaticRules` are consulted before the database, as in Santa: a static rule of the lowest
/// precedence type still wins over a stored rule of the highest, and where no static rule matches
/// the stored rules decide as before. Within the static rules Santa's type order holds.
#[test]
fn static_rules_win_over_stored_rules_of_every_type() {
    for stored in RuleType::ALL {
        for fixed in RuleType::ALL {
            let mut cfg = config(ClientMode::Monitor);
            let mut block = rule(fixed, RuleState::Block);
            block.custom_msg = Some("static says no".into());
            cfg.static_rules = vec![block];
            let d = decide_with(&[rule(stored, RuleState::Allow)], cfg, &file());
            assert_eq!(
                d.action,
                Action::Deny,
                "static {fixed} over stored {stored}"
            );
            assert_eq!(d.reason, reason_of(fixed));
            let m = d.matched.expect("the static rule matched");
            assert!(m.is_static);
            assert_eq!(m.identifier.rule_type(), fixed);
            assert_eq!(d.custom.msg.as_deref(), Some("static says no"));
        }
    }
    // Two static rules: the higher type wins among them.
    let mut cfg = config(ClientMode::Lockdown);
    cfg.static_rules = vec![
        rule(RuleType::TeamId, RuleState::Block),
        rule(RuleType::Binary, RuleState::Allow),
    ];
    let d = decide_with(&[], cfg.clone(), &file());
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Binary));
    // A file the static rules do not name: the stored rule decides, not flagged static.
    let mut other = file();
    other.sha256 = Sha256([0x99; 32]);
    other.team_id = None;
    let stored = Rule::new(RuleIdentifier::Binary(Sha256([0x99; 32])), RuleState::Allow);
    let d = decide_with(&[stored], cfg, &other);
    assert_eq!(d.action, Action::Allow);
    assert!(!d.matched.expect("stored rule").is_static);
}

/// A later static rule with the same identifier replaces an earlier one; the policy finds it by
/// identifier and counts distinct rules.
#[test]
fn static_rule_duplicates_and_lookup_by_identifier() {
    let mut cfg = config(ClientMode::Monitor);
    cfg.static_rules = vec![
        rule(RuleType::Binary, RuleState::Allow),
        rule(RuleType::Binary, RuleState::Block),
        rule(RuleType::TeamId, RuleState::Allow),
    ];
    let policy = Policy::new(cfg.clone()).unwrap();
    assert_eq!(policy.static_rule_count(), 2);
    let id = rule(RuleType::Binary, RuleState::Allow).identifier;
    assert_eq!(policy.static_rule(&id).unwrap().state, RuleState::Block);
    let cert = rule(RuleType::Certificate, RuleState::Allow).identifier;
    assert!(policy.static_rule(&cert).is_none());
    let d = decide_with(&[], cfg, &file());
    assert_eq!(d.action, Action::Deny);
}
