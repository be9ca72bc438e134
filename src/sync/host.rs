//! santad as the sync client's host ([`SyncHost`]): its facts, its rules (counted, hashed as
//! Santa hashes them, replaced through the same path as `santactl rule`), its spooled events,
//! and the settings the server chose (kept in the sync state, applied by a reload).

use crate::control::server::ControlContext;
use crate::sync::spool::Spool;
use crate::sync::state::{SyncState, SyncedMode};
use santa_rules as rules;
use santa_sync::proto::{ClientMode as WireMode, Policy, RuleType as WireType};
use santa_sync::{
    HashedRule, HostError, HostFacts, PendingEvent, RuleCounts, RuleDownload, ServerSettings,
    SyncHost, SyncKind, SyncRule,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The daemon's side of one sync.
pub struct DaemonHost {
    /// Rules, config and the caches.
    pub control: Arc<ControlContext>,
    /// The spool, if it could be opened.
    pub spool: Option<Arc<Mutex<Spool>>>,
    /// Where the sync state lives.
    pub state_path: PathBuf,
    /// Called when the server changed a setting the running daemon must take up (a reload).
    pub reload: Arc<dyn Fn() + Send + Sync>,
    /// Rules the host refused (an identifier that is not valid for its type), in the last
    /// download.
    pub rules_refused: u32,
    /// How long the last download took to apply.
    pub rules_apply: std::time::Duration,
}

impl std::fmt::Debug for DaemonHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonHost")
            .field("state_path", &self.state_path)
            .finish_non_exhaustive()
    }
}

fn host_err(e: impl std::fmt::Display) -> HostError {
    HostError::new(e.to_string())
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() <= 256).then(|| text.to_owned())
}

/// `VERSION_ID` of os-release (`12` on Debian 12), or `PRETTY_NAME`.
fn os_version() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    field("VERSION_ID")
        .or_else(|| field("PRETTY_NAME"))
        .unwrap_or_default()
}

/// This host's machine ID when `MachineID` is not set: systemd's `/etc/machine-id` (what Santa's
/// hardware UUID is on a Mac: stable for the life of the installation).
pub fn default_machine_id() -> Option<String> {
    read_trimmed("/etc/machine-id").or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
}

/// The host's facts, as Santa's preflight sends them (on Linux: the DMI serial number where root
/// can read it, else the machine ID; os-release's version; the kernel release as the build; the
/// DMI product name as the model).
pub fn host_facts(machine_id: &str, owner: Option<&str>, mode: rules::ClientMode) -> HostFacts {
    let hostname = read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default();
    HostFacts {
        serial_number: read_trimmed("/sys/class/dmi/id/product_serial")
            .unwrap_or_else(|| machine_id.to_owned()),
        hostname,
        os_version: os_version(),
        os_build: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        model_identifier: read_trimmed("/sys/class/dmi/id/product_name").unwrap_or_default(),
        santa_version: env!("CARGO_PKG_VERSION").to_owned(),
        primary_user: owner.unwrap_or_default().to_owned(),
        primary_user_groups: Vec::new(),
        client_mode: match mode {
            rules::ClientMode::Monitor => WireMode::Monitor,
            rules::ClientMode::Lockdown => WireMode::Lockdown,
        },
    }
}

/// A downloaded rule as a change to the store, or why it is refused.
pub fn rule_change(rule: &SyncRule) -> Result<rules::RuleChange, String> {
    let rule_type = match rule.rule_type {
        WireType::Binary => rules::RuleType::Binary,
        WireType::Certificate => rules::RuleType::Certificate,
        WireType::TeamId => rules::RuleType::TeamId,
        WireType::SigningId => rules::RuleType::SigningId,
        WireType::CdHash => rules::RuleType::CdHash,
        WireType::Unknown => return Err("unknown rule type".into()),
    };
    let identifier =
        rules::RuleIdentifier::parse(rule_type, &rule.identifier).map_err(|e| e.to_string())?;
    let state = match rules::RulePolicy::from_santa_name(rule.policy.name()) {
        Some(rules::RulePolicy::Remove) => return Ok(rules::RuleChange::Remove(identifier)),
        Some(rules::RulePolicy::Set(state)) => state,
        None if rule.policy == Policy::Unknown => return Err("unknown policy".into()),
        None => return Err(format!("policy {} is not an execution rule", rule.policy)),
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let rule = rules::Rule {
        custom_msg: text(&rule.custom_msg),
        custom_url: text(&rule.custom_url),
        event_detail_button_text: text(&rule.event_detail_button_label),
        cel_expr: text(&rule.cel_expr),
        ..rules::Rule::new(identifier, state)
    };
    rule.check().map_err(|e| e.to_string())?;
    Ok(rules::RuleChange::Upsert(rule))
}

impl DaemonHost {
    fn spool(&self) -> Result<std::sync::MutexGuard<'_, Spool>, HostError> {
        match &self.spool {
            Some(s) => Ok(s.lock().unwrap_or_else(|e| e.into_inner())),
            None => Err(HostError::new("the event spool is not open".to_owned())),
        }
    }

    /// The sync state with the server's `settings` taken in; `changed` says whether the running
    /// daemon must reload to apply them.
    pub fn merge_settings(state: &mut SyncState, s: &ServerSettings) -> bool {
        let before = state.clone();
        if s.sync_kind != SyncKind::Normal {
            state.forget_server_settings();
        }
        match s.client_mode {
            Some(WireMode::Monitor) => state.client_mode = Some(SyncedMode::Monitor),
            Some(WireMode::Lockdown) => state.client_mode = Some(SyncedMode::Lockdown),
            Some(other) => {
                log::warn!("sync: the server asks for mode {other}; santad keeps its own")
            }
            None => {}
        }
        for (value, slot, key) in [
            (
                &s.allowed_path_regex,
                &mut state.allowed_path_regex,
                "AllowedPathRegex",
            ),
            (
                &s.blocked_path_regex,
                &mut state.blocked_path_regex,
                "BlockedPathRegex",
            ),
        ] {
            if let Some(v) = value
                && (v.is_empty() || SyncState::accept_regex(key, v))
            {
                *slot = Some(v.clone());
            }
        }
        for (value, slot) in [
            (s.enable_bundles, &mut state.enable_bundles),
            (
                s.enable_transitive_rules,
                &mut state.enable_transitive_rules,
            ),
            (
                s.enable_all_event_upload,
                &mut state.enable_all_event_upload,
            ),
            (
                s.disable_unknown_event_upload,
                &mut state.disable_unknown_event_upload,
            ),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        let bounded = |v: &Option<String>| {
            v.as_ref()
                .filter(|v| v.len() <= crate::config::STRING_BYTES_MAX && !v.contains('\0'))
                .cloned()
        };
        if let Some(url) = bounded(&s.event_detail_url) {
            state.event_detail_url = Some(url);
        }
        if let Some(text) = bounded(&s.event_detail_text) {
            state.event_detail_text = Some(text);
        }
        if let Some(secs) = s.full_sync_interval_secs {
            state.full_sync_interval_secs = Some(u64::from(secs).clamp(
                crate::config::FULL_SYNC_INTERVAL_SECS_MIN,
                crate::config::FULL_SYNC_INTERVAL_SECS_MAX,
            ));
        }
        *state != before
    }
}

impl SyncHost for DaemonHost {
    fn host_facts(&mut self) -> Result<HostFacts, HostError> {
        let config = self.control.config();
        let machine_id = config
            .machine_id
            .clone()
            .or_else(default_machine_id)
            .unwrap_or_default();
        Ok(host_facts(
            &machine_id,
            config.sync.machine_owner.as_deref(),
            config.client_mode,
        ))
    }

    fn rule_counts(&mut self) -> Result<RuleCounts, HostError> {
        let counts = self
            .control
            .with_rules(|db| db.store().and_then(|s| s.counts()))
            .map_err(host_err)?;
        let by = |t: rules::RuleType| {
            rules::RuleType::ALL
                .iter()
                .position(|&x| x == t)
                .map_or(0, |i| counts.by_type[i])
        };
        let n = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        Ok(RuleCounts {
            binary: n(by(rules::RuleType::Binary)),
            certificate: n(by(rules::RuleType::Certificate)),
            compiler: n(counts.compiler),
            transitive: n(counts.transitive),
            teamid: n(by(rules::RuleType::TeamId)),
            signingid: n(by(rules::RuleType::SigningId)),
            cdhash: n(by(rules::RuleType::CdHash)),
        })
    }

    fn rules_hash(&mut self) -> Result<String, HostError> {
        let (list, _) = self
            .control
            .with_rules(|db| db.store().and_then(|s| s.rules()))
            .map_err(host_err)?;
        let ids: Vec<String> = list.iter().map(|r| r.identifier.to_string()).collect();
        Ok(santa_sync::rules_hash(list.iter().zip(&ids).map(
            |(r, id)| HashedRule {
                identifier: id,
                state: r.state.db_value() as i32,
                rule_type: r.rule_type().db_value() as i32,
                cel_expr: r.cel_expr.as_deref().unwrap_or(""),
            },
        )))
    }

    fn pending_events(&mut self, max: usize) -> Result<Vec<PendingEvent>, HostError> {
        self.spool()?.pending(max).map_err(host_err)
    }

    fn acknowledge_events(&mut self, ids: &[u64]) -> Result<(), HostError> {
        self.spool()?.acknowledge(ids).map_err(host_err)
    }

    fn apply_rules(&mut self, download: RuleDownload) -> Result<u32, HostError> {
        let cleanup = match download.kind {
            SyncKind::Normal => rules::Cleanup::None,
            SyncKind::Clean => rules::Cleanup::NonTransitive,
            SyncKind::CleanAll => rules::Cleanup::All,
        };
        let mut changes = Vec::with_capacity(download.rules.len());
        self.rules_refused = 0;
        for rule in &download.rules {
            match rule_change(rule) {
                Ok(change) => changes.push(change),
                Err(why) => {
                    self.rules_refused += 1;
                    log::warn!(
                        "sync: rule {} {:?} refused: {why}",
                        rule.rule_type,
                        crate::control::shorten(&rule.identifier)
                    );
                }
            }
        }
        // Nothing usable: leave the rules alone, even for a clean sync (Santa's behaviour for a
        // clean sync that brings no rules).
        if changes.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        self.control
            .apply_changes(&changes, cleanup, "sync")
            .map_err(host_err)?;
        self.rules_apply = started.elapsed();
        Ok(u32::try_from(changes.len()).unwrap_or(u32::MAX))
    }

    fn apply_settings(&mut self, settings: &ServerSettings) -> Result<(), HostError> {
        let mut state = SyncState::load(&self.state_path).map_err(host_err)?;
        let changed = Self::merge_settings(&mut state, settings);
        if changed {
            state.store(&self.state_path).map_err(host_err)?;
            log::info!("sync: the server changed this host's settings; reloading");
            (self.reload)();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(identifier: &str, policy: Policy, rule_type: WireType) -> SyncRule {
        SyncRule {
            identifier: identifier.into(),
            policy,
            rule_type,
            custom_msg: String::new(),
            custom_url: String::new(),
            event_detail_button_label: String::new(),
            cel_expr: String::new(),
        }
    }

    #[test]
    fn downloaded_rules_become_store_changes() {
        let sha = "a".repeat(64);
        let change = rule_change(&wire(&sha, Policy::Blocklist, WireType::Binary)).unwrap();
        let rules::RuleChange::Upsert(r) = change else {
            panic!("an upsert")
        };
        assert_eq!(r.state, rules::RuleState::Block);
        assert!(matches!(
            rule_change(&wire(&sha, Policy::Remove, WireType::Binary)),
            Ok(rules::RuleChange::Remove(_))
        ));
        assert!(rule_change(&wire("not-a-hash", Policy::Allowlist, WireType::Binary)).is_err());
        let team = rule_change(&wire("EQHXZ8M8AV", Policy::Allowlist, WireType::TeamId));
        assert!(team.is_ok());
    }

    #[test]
    fn settings_merge_and_say_when_a_reload_is_needed() {
        let mut state = SyncState::default();
        let mut s = ServerSettings {
            client_mode: Some(WireMode::Lockdown),
            blocked_path_regex: Some("(unclosed".into()),
            allowed_path_regex: Some("^/opt/".into()),
            full_sync_interval_secs: Some(30),
            ..ServerSettings::default()
        };
        assert!(DaemonHost::merge_settings(&mut state, &s));
        assert_eq!(state.client_mode, Some(SyncedMode::Lockdown));
        assert_eq!(
            state.blocked_path_regex, None,
            "a regex that does not compile"
        );
        assert_eq!(state.allowed_path_regex.as_deref(), Some("^/opt/"));
        assert_eq!(state.full_sync_interval_secs, Some(60));
        assert!(!DaemonHost::merge_settings(&mut state, &s), "same again");
        s.client_mode = Some(WireMode::Standalone);
        assert!(!DaemonHost::merge_settings(&mut state, &s));
        // A clean sync forgets what the server set before.
        let clean = ServerSettings {
            sync_kind: SyncKind::Clean,
            ..ServerSettings::default()
        };
        assert!(DaemonHost::merge_settings(&mut state, &clean));
        assert_eq!(state.client_mode, None);
        assert_eq!(state.allowed_path_regex, None);
    }
}
