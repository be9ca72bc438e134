//! Shared by the sync tests: an in-memory host, configs, and a test server with rules.
#![allow(dead_code)]

use santa_sync::proto::{self, ClientMode, Decision, Policy, RuleType};
use santa_sync::testserver::{ServerConfig, TestServer};
use santa_sync::{
    HashedRule, HostError, HostFacts, PendingEvent, RuleCounts, RuleDownload, ServerSettings,
    SyncConfig, SyncHost, SyncKind, SyncRule,
};
use std::collections::BTreeMap;
use std::time::Duration;

pub const MACHINE: &str = "50C7E1EB-2EF5-42D4-A084-A7966FC45A95";

/// A host that keeps everything in memory and records what the client did to it.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub facts: HostFacts,
    pub rules: BTreeMap<(i32, String), SyncRule>,
    pub spool: Vec<PendingEvent>,
    pub applied: Vec<RuleDownload>,
    pub settings: Vec<ServerSettings>,
    pub acknowledged: Vec<u64>,
    /// Reported instead of counting `rules`, to put every count on the wire.
    pub counts: Option<RuleCounts>,
}

/// Santa's `SNTRuleType` database value.
pub fn santa_type(t: RuleType) -> i32 {
    match t {
        RuleType::CdHash => 500,
        RuleType::Binary => 1000,
        RuleType::SigningId => 2000,
        RuleType::Certificate => 3000,
        RuleType::TeamId => 4000,
        RuleType::Unknown => 0,
    }
}

/// Santa's `SNTRuleState` database value.
pub fn santa_state(p: Policy) -> i32 {
    match p {
        Policy::Allowlist => 1,
        Policy::Blocklist => 2,
        Policy::SilentBlocklist => 3,
        Policy::Remove => 4,
        Policy::AllowlistCompiler => 5,
        Policy::Cel => 9,
        Policy::SilentGuiBlocklist => 12,
        Policy::SilentTtyBlocklist => 13,
        Policy::Unknown => 0,
    }
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost {
            facts: HostFacts {
                serial_number: "QYGF4QM373".into(),
                hostname: "host.example.com".into(),
                os_version: "12".into(),
                os_build: "6.1.0".into(),
                model_identifier: "x86_64".into(),
                santa_version: "0.1.0".into(),
                primary_user: "alice".into(),
                primary_user_groups: vec!["staff".into()],
                client_mode: ClientMode::Monitor,
            },
            ..FakeHost::default()
        }
    }

    /// Adds `n` blocked executions to the spool.
    pub fn with_events(mut self, n: u64) -> FakeHost {
        for id in 1..=n {
            self.spool.push(PendingEvent {
                id,
                event: blocked_event(id),
            });
        }
        self
    }

    /// Adds a rule as if an earlier sync had applied it.
    pub fn add_rule(&mut self, rule_type: RuleType, policy: Policy, identifier: String) {
        let rule = SyncRule::from_proto(proto::Rule {
            identifier,
            policy,
            rule_type,
            ..Default::default()
        })
        .expect("a readable rule");
        let key = (santa_type(rule_type), rule.identifier.clone());
        self.rules.insert(key, rule);
    }

    pub fn rule_ids(&self) -> Vec<String> {
        self.rules.keys().map(|(_, id)| id.clone()).collect()
    }
}

pub fn blocked_event(id: u64) -> proto::Event {
    proto::Event {
        file_sha256: format!("{id:064x}"),
        file_path: "/tmp/work".into(),
        file_name: format!("tool{id}"),
        executing_user: "alice".into(),
        execution_time: 1_751_111_111.25,
        decision: Decision::BlockUnknown,
        pid: 2222,
        ppid: 1,
        parent_name: "bash".into(),
        ..Default::default()
    }
}

impl SyncHost for FakeHost {
    fn host_facts(&mut self) -> Result<HostFacts, HostError> {
        Ok(self.facts.clone())
    }

    fn rule_counts(&mut self) -> Result<RuleCounts, HostError> {
        if let Some(counts) = self.counts {
            return Ok(counts);
        }
        let mut counts = RuleCounts::default();
        for rule in self.rules.values() {
            match rule.rule_type {
                RuleType::Binary => counts.binary += 1,
                RuleType::Certificate => counts.certificate += 1,
                RuleType::TeamId => counts.teamid += 1,
                RuleType::SigningId => counts.signingid += 1,
                RuleType::CdHash => counts.cdhash += 1,
                RuleType::Unknown => {}
            }
            if rule.policy == Policy::AllowlistCompiler {
                counts.compiler += 1;
            }
        }
        Ok(counts)
    }

    fn rules_hash(&mut self) -> Result<String, HostError> {
        Ok(santa_sync::rules_hash(self.rules.values().map(|r| {
            HashedRule {
                identifier: &r.identifier,
                state: santa_state(r.policy),
                rule_type: santa_type(r.rule_type),
                cel_expr: &r.cel_expr,
            }
        })))
    }

    fn pending_events(&mut self, max: usize) -> Result<Vec<PendingEvent>, HostError> {
        Ok(self.spool.iter().take(max).cloned().collect())
    }

    fn acknowledge_events(&mut self, ids: &[u64]) -> Result<(), HostError> {
        self.spool.retain(|e| !ids.contains(&e.id));
        self.acknowledged.extend_from_slice(ids);
        Ok(())
    }

    fn apply_rules(&mut self, download: RuleDownload) -> Result<u32, HostError> {
        if download.kind != SyncKind::Normal {
            self.rules.clear();
        }
        for rule in &download.rules {
            let key = (santa_type(rule.rule_type), rule.identifier.clone());
            if rule.policy == Policy::Remove {
                self.rules.remove(&key);
            } else {
                self.rules.insert(key, rule.clone());
            }
        }
        let n = download.rules.len() as u32;
        self.applied.push(download);
        Ok(n)
    }

    fn apply_settings(&mut self, settings: &ServerSettings) -> Result<(), HostError> {
        if let Some(mode) = settings.client_mode {
            self.facts.client_mode = mode;
        }
        self.settings.push(settings.clone());
        Ok(())
    }
}

/// A client config for `server`, with waits short enough for tests.
pub fn config_for(base_url: &str) -> SyncConfig {
    let mut config = SyncConfig::new(base_url, MACHINE);
    config.limits.backoff_first = Duration::from_millis(1);
    config.limits.request_timeout = Duration::from_secs(10);
    config
}

pub fn binary(n: u32) -> String {
    format!("{n:064x}")
}

/// A global.toml with `mode` and Binary rules `rules` (ids from [`binary`]).
pub fn global_toml(mode: &str, policy: &str, rules: std::ops::Range<u32>) -> String {
    global_toml_with(mode, "", policy, rules)
}

/// [`global_toml`] with more top-level keys (`extra`, whole lines).
pub fn global_toml_with(
    mode: &str,
    extra: &str,
    policy: &str,
    rules: std::ops::Range<u32>,
) -> String {
    let mut toml = format!("client_mode = \"{mode}\"\nbatch_size = 2\n{extra}");
    for n in rules {
        toml += &format!(
            "[[rules]]\nrule_type = \"BINARY\"\npolicy = \"{policy}\"\nidentifier = \"{}\"\ncustom_msg = \"rule {n}\"\n",
            binary(n)
        );
    }
    toml
}

pub fn server_with(toml: &str) -> TestServer {
    TestServer::start(ServerConfig::from_global_toml(toml).expect("config")).expect("server")
}

/// One sync of `host` against `server` with [`config_for`].
pub fn sync(
    server: &TestServer,
    host: &mut FakeHost,
    kind: SyncKind,
) -> Result<santa_sync::SyncReport, santa_sync::SyncError> {
    sync_with(&config_for(&server.base_url()), host, kind)
}

/// One sync of `host` with `config`, through a fresh client.
pub fn sync_with(
    config: &SyncConfig,
    host: &mut impl SyncHost,
    kind: SyncKind,
) -> Result<santa_sync::SyncReport, santa_sync::SyncError> {
    santa_sync::SyncClient::new(config)
        .expect("config")
        .sync(host, kind)
}

/// The stage and request error a sync stopped with; panics on any other failure.
pub fn request_error(
    err: &santa_sync::SyncError,
) -> (santa_sync::Stage, &santa_sync::RequestError) {
    match err {
        santa_sync::SyncError::Request { stage, source } => (*stage, source),
        other => panic!("not a failed request: {other}"),
    }
}

/// Asserts the sync failed for want of an HTTP answer (refused, timed out, TLS).
pub fn assert_no_answer(err: &santa_sync::SyncError) {
    let (_, source) = request_error(err);
    assert!(
        matches!(source, santa_sync::RequestError::Transport { .. }),
        "{err}"
    );
}
