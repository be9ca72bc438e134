//! Shared fixtures: one production-signed file with all five identities, and rule helpers.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic
#![allow(dead_code)]

use santa_rules::{
    CdHash, ClientMode, Decision, FileIdentity, PathScopes, Policy, PolicyConfig, Rule,
    RuleIdentifier, RuleState, RuleType, Sha256, SigningStatus, Snapshot, TeamId, decide,
};

pub const SHA: [u8; 32] = [0x11; 32];
pub const CDHASH: [u8; 20] = [0x22; 20];
pub const CERT: [u8; 32] = [0x33; 32];
pub const TEAM: &str = "ABCDE12345";
pub const SIGNING_IDENT: &str = "com.example.tool";
pub const PATH: &[u8] = b"/opt/tools/bin/tool";

pub fn team() -> TeamId {
    TeamId::from_signature(TEAM.as_bytes()).expect("valid team id")
}

/// A production-signed file carrying all five identities.
pub fn file() -> FileIdentity<'static> {
    FileIdentity {
        sha256: Sha256(SHA),
        cdhash: Some(CdHash(CDHASH)),
        signing_id: Some(SIGNING_IDENT),
        team_id: Some(team()),
        cert_sha256: Some(Sha256(CERT)),
        signing_status: SigningStatus::Production,
        is_platform_binary: false,
        path: PATH,
        signing_time: None,
        secure_signing_time: None,
    }
}

/// The identifier of `file()` for each rule type, as an operator writes it.
pub fn identifier_text(t: RuleType) -> String {
    match t {
        RuleType::CdHash => Sha256Hex(&CDHASH).to_string(),
        RuleType::Binary => Sha256Hex(&SHA).to_string(),
        RuleType::SigningId => format!("{TEAM}:{SIGNING_IDENT}"),
        RuleType::Certificate => Sha256Hex(&CERT).to_string(),
        RuleType::TeamId => TEAM.to_owned(),
    }
}

struct Sha256Hex<'a>(&'a [u8]);
impl std::fmt::Display for Sha256Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

pub fn rule(t: RuleType, state: RuleState) -> Rule {
    Rule::new(
        RuleIdentifier::parse(t, &identifier_text(t)).expect("valid identifier"),
        state,
    )
}

pub fn config(mode: ClientMode) -> PolicyConfig {
    PolicyConfig {
        mode,
        ..PolicyConfig::default()
    }
}

/// Decides `f` against `rules` under `cfg`.
pub fn decide_with(rules: &[Rule], cfg: PolicyConfig, f: &FileIdentity<'_>) -> Decision {
    let snapshot = Snapshot::from_rules(1, rules).expect("snapshot");
    let policy = Policy::new(cfg).expect("policy");
    let scopes: PathScopes = policy.scopes();
    decide(&snapshot, &policy, &scopes, f)
}
