//! CEL rules (Santa's v1): the context an expression sees, its results, what may be cached, and
//! Santa's handling of errors.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::*;
use santa_rules::{
    Action, CelRule, ClientMode, Decision, ExecFacts, FileIdentity, NoExec, PathScopes, Policy,
    PolicyConfig, Reason, Rule, RuleChange, RuleState, RuleType, Snapshot, decide_exec,
    parse_rules_json,
};

/// An execution with the given facts; `args`/`envs` unavailable as on Linux.
struct Exec {
    euid: u32,
    cwd: &'static str,
    args: Option<Vec<&'static str>>,
}

impl ExecFacts for Exec {
    fn euid(&self) -> Result<u32, &'static str> {
        Ok(self.euid)
    }
    fn cwd(&self) -> Result<String, &'static str> {
        Ok(self.cwd.to_owned())
    }
    fn args(&self) -> Result<Vec<String>, &'static str> {
        self.args
            .as_ref()
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .ok_or("not readable here")
    }
    fn envs(&self) -> Result<Vec<(String, String)>, &'static str> {
        Ok(vec![("HOME".into(), "/root".into())])
    }
}

fn as_uid(euid: u32) -> Exec {
    Exec {
        euid,
        cwd: "/home/u",
        args: None,
    }
}

fn cel_rule(t: RuleType, expr: &str) -> Rule {
    let mut r = rule(t, RuleState::Cel);
    r.cel_expr = Some(expr.into());
    r
}

fn decide_cel(
    rules: &[Rule],
    cfg: PolicyConfig,
    f: &FileIdentity<'_>,
    exec: &dyn ExecFacts,
) -> Decision {
    let snapshot = Snapshot::from_rules(1, rules).unwrap();
    let policy = Policy::new(cfg).unwrap();
    let scopes: PathScopes = policy.scopes();
    decide_exec(&snapshot, &policy, &scopes, f, exec)
}

fn lockdown() -> PolicyConfig {
    config(ClientMode::Lockdown)
}

#[test]
fn cel_rules_allow_and_block_by_path_and_by_euid() {
    let by_path = cel_rule(
        RuleType::Binary,
        "path.startsWith('/opt/tools/') ? ALLOWLIST : BLOCKLIST",
    );
    let d = decide_cel(
        std::slice::from_ref(&by_path),
        lockdown(),
        &file(),
        &as_uid(1000),
    );
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Binary));
    assert_eq!(d.explain, Some("CEL rule"));
    assert_eq!(d.matched.as_ref().unwrap().state, RuleState::Cel);
    assert!(!d.cacheable, "it read path");
    let mut elsewhere = file();
    elsewhere.path = b"/tmp/tool";
    let d = decide_cel(
        &[by_path],
        config(ClientMode::Monitor),
        &elsewhere,
        &as_uid(0),
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Binary));

    // By euid, with the bool shorthand: true allows, false blocks.
    let by_euid = cel_rule(RuleType::TeamId, "euid == 0");
    let d = decide_cel(
        std::slice::from_ref(&by_euid),
        lockdown(),
        &file(),
        &as_uid(0),
    );
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::TeamId));
    assert!(!d.cacheable, "it read euid");
    let d = decide_cel(
        &[by_euid],
        config(ClientMode::Monitor),
        &file(),
        &as_uid(1000),
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::TeamId));
}

#[test]
fn a_result_is_cached_only_when_it_read_nothing_but_target() {
    let on_target = cel_rule(
        RuleType::Binary,
        "target.team_id == 'ABCDE12345' && !target.is_platform_binary ? BLOCKLIST : ALLOWLIST",
    );
    let d = decide_cel(&[on_target], lockdown(), &file(), &as_uid(0));
    assert_eq!(d.action, Action::Deny);
    assert!(d.cacheable, "only target was read");

    // Short-circuit: args is never read when the team matches (Santa tracks reads, not names).
    let short = cel_rule(
        RuleType::Binary,
        "target.team_id == 'ABCDE12345' || args[0] == 'x'",
    );
    let d = decide_cel(
        std::slice::from_ref(&short),
        lockdown(),
        &file(),
        &as_uid(0),
    );
    assert_eq!(d.action, Action::Allow);
    assert!(d.cacheable);

    let on_args = cel_rule(
        RuleType::Binary,
        "args.exists(a, a == '--force') ? BLOCKLIST : ALLOWLIST",
    );
    let exec = Exec {
        euid: 0,
        cwd: "/",
        args: Some(vec!["tool", "--force"]),
    };
    let d = decide_cel(std::slice::from_ref(&on_args), lockdown(), &file(), &exec);
    assert_eq!(d.action, Action::Deny);
    assert!(!d.cacheable, "it read args");
    let exec = Exec {
        args: Some(vec!["tool"]),
        ..exec
    };
    let d = decide_cel(&[on_args], lockdown(), &file(), &exec);
    assert_eq!(d.action, Action::Allow);
    assert!(!d.cacheable);
}

#[test]
fn target_fields_are_santas() {
    let mut f = file();
    f.signing_time = Some(1_748_436_989);
    for (expr, want) in [
        ("target.signing_id == 'ABCDE12345:com.example.tool'", true),
        ("target.team_id == 'ABCDE12345'", true),
        ("target.is_platform_binary", false),
        (
            "target.signing_time >= timestamp('2025-05-28T00:00:00Z')",
            true,
        ),
        ("target.signing_time == timestamp(1748436989)", true),
        ("target.secure_signing_time == timestamp(0)", true),
        ("target.signing_id.split(':')[0] == target.team_id", true),
        ("cwd == '/home/u' && envs.HOME == '/root'", true),
    ] {
        let r = CelRule::compile(expr).evaluate(&f, &as_uid(5));
        let state = if want {
            RuleState::Allow
        } else {
            RuleState::Block
        };
        assert_eq!(r.outcome, santa_rules::CelOutcome::State(state), "{expr}");
    }
    // A platform binary with no Team ID: `platform:` prefix.
    let mut p = file();
    p.team_id = None;
    p.is_platform_binary = true;
    let r =
        CelRule::compile("target.signing_id == 'platform:com.example.tool'").evaluate(&p, &NoExec);
    assert_eq!(r.outcome, santa_rules::CelOutcome::State(RuleState::Allow));
}

#[test]
fn every_return_value_and_the_type_state_table() {
    for (name, state, action) in [
        ("ALLOWLIST", RuleState::Allow, Action::Allow),
        (
            "ALLOWLIST_COMPILER",
            RuleState::AllowCompiler,
            Action::Allow,
        ),
        ("BLOCKLIST", RuleState::Block, Action::Deny),
        ("SILENT_BLOCKLIST", RuleState::SilentBlock, Action::Deny),
        (
            "SILENT_GUI_BLOCKLIST",
            RuleState::SilentBlockGui,
            Action::Deny,
        ),
        (
            "SILENT_TTY_BLOCKLIST",
            RuleState::SilentBlockTty,
            Action::Deny,
        ),
    ] {
        let r = CelRule::compile(name).evaluate(&file(), &NoExec);
        assert_eq!(r.outcome, santa_rules::CelOutcome::State(state), "{name}");
        let d = decide_cel(
            &[cel_rule(RuleType::Binary, name)],
            lockdown(),
            &file(),
            &NoExec,
        );
        assert_eq!(d.action, action, "{name}");
        assert!(d.cacheable, "{name} read nothing");
    }
    let mut cfg = lockdown();
    cfg.enable_transitive_rules = true;
    let d = decide_cel(
        &[cel_rule(RuleType::Binary, "ALLOWLIST_COMPILER")],
        cfg.clone(),
        &file(),
        &NoExec,
    );
    assert!(d.compiler);
    // A compiler result on a Team ID rule is not in Santa's table: no rule, the mode decides.
    let d = decide_cel(
        &[cel_rule(RuleType::TeamId, "ALLOWLIST_COMPILER")],
        cfg,
        &file(),
        &NoExec,
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
    let d = decide_cel(
        &[cel_rule(RuleType::Binary, "SILENT_BLOCKLIST")],
        lockdown(),
        &file(),
        &NoExec,
    );
    assert!(d.silence.gui && d.silence.tty);
}

#[test]
fn errors_are_no_rule_or_fail_closed_and_unspecified_is_always_no_rule() {
    let mut cfg = lockdown();
    cfg.allowed_path_regex = vec!["/opt/".into()];
    for (expr, exec) in [
        // Linux cannot read the arguments of a held exec.
        ("args.size() > 1", &as_uid(0) as &dyn ExecFacts),
        ("envs.MISSING == 'x'", &as_uid(0)),
        ("euid == 0", &NoExec),
        ("'a string'", &as_uid(0)),
        ("99", &as_uid(0)),
        ("1u", &as_uid(0)),
    ] {
        let rules = [cel_rule(RuleType::Binary, expr)];
        let d = decide_cel(&rules, cfg.clone(), &file(), exec);
        assert_eq!(
            (d.action, d.reason),
            (Action::Allow, Reason::Scope),
            "{expr}: an error is no rule; the scope decides"
        );
        let mut closed = cfg.clone();
        closed.fail_closed = true;
        let d = decide_cel(&rules, closed, &file(), exec);
        assert_eq!(
            (d.action, d.reason, d.explain),
            (
                Action::Deny,
                Reason::Unknown,
                Some("CEL evaluation failed (FailClosed)")
            ),
            "{expr}"
        );
        // An error about what this execution supplied is not cached (another execution of the
        // file may evaluate fine); one about the expression alone is.
        let exec_read = !["'a string'", "99", "1u"].contains(&expr);
        assert_eq!(d.cacheable, !exec_read, "{expr}");
    }
    let r = CelRule::compile("args.size() > 1").evaluate(&file(), &as_uid(0));
    assert!(
        matches!(&r.outcome, santa_rules::CelOutcome::Error(e) if e.contains("args is not available")),
        "{r:?}"
    );
    // UNSPECIFIED (0) is no rule even with FailClosed.
    let mut closed = cfg.clone();
    closed.fail_closed = true;
    let d = decide_cel(
        &[cel_rule(RuleType::Binary, "euid == 0 ? ALLOWLIST : 0")],
        closed,
        &file(),
        &as_uid(7),
    );
    assert_eq!((d.action, d.reason), (Action::Allow, Reason::Scope));
    assert!(!d.cacheable, "the no-rule outcome depended on euid too");
}

#[test]
fn invalid_expressions_are_refused_when_added() {
    for bad in [
        "this is not CEL",
        "target.signing_id ==",
        "nosuchvar == 1",
        "target.nonexistent == 'x'",
        "args.exists(a, b == 1)",
        "UNSPECIFIED",
        "ancestors.size() > 0",
        "",
        &"(".repeat(300),
        &format!("{}1 > 0{}", "[".repeat(40), "]".repeat(40)),
        &format!("{}1 > 0", "1 + ".repeat(40)),
        &format!("{}true", "[".repeat(40)),
        &"x".repeat(9000),
        "[1].exists(a, [2].exists(b, [3].exists(c, a + b + c > 5)))",
        &format!("[{}].size() > 0", vec!["1"; 300].join(", ")),
    ] {
        assert!(santa_rules::cel::check(bad).is_err(), "{bad:.60}");
        let json = format!(
            r#"{{"rules":[{{"identifier":"ABCDE12345","rule_type":"TEAMID","policy":"CEL","cel_expr":{}}}]}}"#,
            serde_json::to_string(bad).unwrap()
        );
        let e = parse_rules_json(json.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("CEL"), "{e}");
    }
    for good in [
        "args.exists(a, a == '-x')",
        "[1, 2].map(x, x * 2) == [2, 4]",
        "has(envs.HOME)",
        "path.matches('^/usr/')",
        "[1, 2].exists(a, [3].exists(b, a < b))",
        "args.filter(a, a.startsWith('-')).map(a, a.size()).exists(n, n > 2)",
        "santa_free_var_shadow.exists(x, true)"
            .replace("santa_free_var_shadow", "args")
            .as_str(),
    ] {
        santa_rules::cel::check(good).unwrap();
    }
    // Long chains of alternatives are fine, and the deepest expression accepted evaluates on a
    // thread with the stack of a worker (2 MiB).
    let alternatives = format!("{}false", "target.team_id == 'X' || ".repeat(300));
    let deep = format!(
        "{}1 > 0",
        "1 + ".repeat(santa_rules::cel::CEL_DEPTH_MAX - 2)
    );
    for text in [alternatives, deep] {
        santa_rules::cel::check(&text).unwrap();
        let rule = CelRule::compile(&text);
        let outcome = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || rule.evaluate(&file(), &NoExec).outcome)
            .unwrap()
            .join()
            .unwrap();
        assert!(
            matches!(outcome, santa_rules::CelOutcome::State(_)),
            "{outcome:?}"
        );
    }
    let ok = parse_rules_json(
        br#"{"rules":[{"identifier":"ABCDE12345","rule_type":"TEAMID","policy":"CEL","cel_expr":"euid == 0"}]}"#,
    )
    .unwrap();
    assert!(matches!(&ok[0], RuleChange::Upsert(r) if r.state == RuleState::Cel));
}

/// A stored expression that does not compile (a database written elsewhere) fails at every
/// evaluation, as in Santa, and never panics.
#[test]
fn a_stored_invalid_expression_fails_each_evaluation() {
    let mut cfg = lockdown();
    cfg.fail_closed = true;
    let d = decide_cel(
        &[cel_rule(RuleType::Binary, "not ( valid")],
        cfg,
        &file(),
        &NoExec,
    );
    assert_eq!((d.action, d.reason), (Action::Deny, Reason::Unknown));
}
