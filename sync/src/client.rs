//! The sync itself, stage by stage, as Santa's `SNTSyncManager` runs it: preflight, eventupload
//! (only when events wait), ruledownload (every cursor page), postflight. Each stage's Santa
//! source is `Source/santasyncservice/SNTSync<Stage>.mm` in northpolesec/santa.
//!
//! The host (the daemon) is behind [`SyncHost`]: the client asks it for its facts, rule counts,
//! rules hash and waiting events, tells it which events the server took, hands it the whole
//! downloaded rule set at once, and at the end the settings the server chose. A sync that stops
//! early has applied nothing the server sent (rules and settings come last), and has
//! acknowledged only the event batches the server answered 200 to.

use crate::config::{Limits, SyncConfig};
use crate::error::{ConfigError, HostError, RequestError, Stage, SyncError};
use crate::proto::{self, ClientMode, Policy, RuleType, SyncType};
use crate::transport::Transport;
use std::time::{Duration, Instant};

/// Santa's `kDefaultEventBatchSize`: events per upload when the server names no batch size.
pub const DEFAULT_EVENT_BATCH_SIZE: u32 = 50;
/// Santa's `kMinimumFullSyncInterval`, seconds: a server's shorter interval is raised to this.
pub const MINIMUM_FULL_SYNC_INTERVAL_SECS: u32 = 60;
/// Santa's `kEventDetailButtonTextMaxLength`: a rule's button label is cut to this many
/// characters.
pub const EVENT_DETAIL_BUTTON_LABEL_CHARS_MAX: usize = 48;

/// A sync type as the host performs it (Santa's `SNTSyncType`): what is deleted before the
/// downloaded rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncKind {
    /// Apply the downloaded rules on top of the host's.
    #[default]
    Normal,
    /// Delete every rule but transitive ones first (Santa's `SNTRuleCleanupNonTransitive`).
    Clean,
    /// Delete every rule first (Santa's `SNTRuleCleanupAll`).
    CleanAll,
}

impl SyncKind {
    /// The `sync_type` postflight reports for it.
    pub fn proto(self) -> SyncType {
        match self {
            SyncKind::Normal => SyncType::Normal,
            SyncKind::Clean => SyncType::Clean,
            SyncKind::CleanAll => SyncType::CleanAll,
        }
    }

    /// The sync performed for what the host asked and what the server answered (Santa's table
    /// in `SNTSyncPreflight.mm`): the server's CLEAN is CLEAN_ALL if the host asked for that;
    /// CLEAN_ALL is CLEAN_ALL; anything else is NORMAL. Without `sync_type`, the deprecated
    /// `clean_sync: true` acts as CLEAN.
    ///
    /// `CLEAN_RULES` is NORMAL, as in Santa's v1 client (its switch has no case for it).
    pub fn performed(requested: SyncKind, response: &proto::PreflightResponse) -> SyncKind {
        let clean = if requested == SyncKind::CleanAll {
            SyncKind::CleanAll
        } else {
            SyncKind::Clean
        };
        match response.sync_type {
            Some(SyncType::Clean) => clean,
            Some(SyncType::CleanAll) => SyncKind::CleanAll,
            Some(_) => SyncKind::Normal,
            None if response.deprecated_clean_sync == Some(true) => clean,
            None => SyncKind::Normal,
        }
    }
}

/// What the host says about itself in preflight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The serial number, or the machine's own ID where there is none.
    pub serial_number: String,
    /// The fully qualified host name.
    pub hostname: String,
    /// The OS version (Linux: `VERSION_ID` of os-release, or the kernel release).
    pub os_version: String,
    /// The OS build.
    pub os_build: String,
    /// The hardware model.
    pub model_identifier: String,
    /// The agent's version.
    pub santa_version: String,
    /// `MachineOwner`.
    pub primary_user: String,
    /// `MachineOwnerGroups`.
    pub primary_user_groups: Vec<String>,
    /// The mode the host runs in now.
    pub client_mode: ClientMode,
}

/// The host's rules, counted by type (preflight's `*_rule_count`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Binary rules.
    pub binary: u32,
    /// Certificate rules.
    pub certificate: u32,
    /// ALLOWLIST_COMPILER rules.
    pub compiler: u32,
    /// Transitive rules.
    pub transitive: u32,
    /// Team ID rules.
    pub teamid: u32,
    /// Signing ID rules.
    pub signingid: u32,
    /// CDHash rules.
    pub cdhash: u32,
}

/// An event waiting in the host's spool, with the host's ID for acknowledging it.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingEvent {
    /// The host's ID for the event.
    pub id: u64,
    /// The event as it goes on the wire.
    pub event: proto::Event,
}

/// A downloaded rule the client could read: an identifier, a known policy and a known type. The
/// identifier is as the server sent it; the host validates and normalizes it (Santa: `SNTRule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRule {
    /// The identifier (`identifier`, or the deprecated `sha256` when that is empty).
    pub identifier: String,
    /// The policy; never `POLICY_UNKNOWN`.
    pub policy: Policy,
    /// The rule type; never `RULETYPE_UNKNOWN`.
    pub rule_type: RuleType,
    /// The block message, empty for none.
    pub custom_msg: String,
    /// The block notification's URL, empty for none.
    pub custom_url: String,
    /// The block notification's button label, empty for none; at most 48 characters.
    pub event_detail_button_label: String,
    /// The CEL expression (CEL rules only; never empty for them).
    pub cel_expr: String,
}

impl SyncRule {
    /// Reads a wire rule as Santa's `RuleFromProtoRule` does; `None` for a rule Santa drops (no
    /// identifier, unknown policy or type, a CEL rule without an expression).
    pub fn from_proto(rule: proto::Rule) -> Option<SyncRule> {
        let identifier = if rule.identifier.is_empty() {
            rule.deprecated_sha256
        } else {
            rule.identifier
        };
        if identifier.is_empty()
            || rule.policy == Policy::Unknown
            || rule.rule_type == RuleType::Unknown
            || (rule.policy == Policy::Cel && rule.cel_expr.is_empty())
        {
            return None;
        }
        let event_detail_button_label = rule
            .event_detail_button_label
            .chars()
            .take(EVENT_DETAIL_BUTTON_LABEL_CHARS_MAX)
            .collect();
        Some(SyncRule {
            identifier,
            policy: rule.policy,
            rule_type: rule.rule_type,
            custom_msg: rule.custom_msg,
            custom_url: rule.custom_url,
            event_detail_button_label,
            cel_expr: rule.cel_expr,
        })
    }
}

/// Every rule of one sync, to apply at once (one transaction, one snapshot swap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleDownload {
    /// What to delete first.
    pub kind: SyncKind,
    /// The rules, in the server's order; `REMOVE` rules remove.
    pub rules: Vec<SyncRule>,
}

/// What the server chose for the host, read from preflight as Santa reads it; `None` means the
/// server did not say, and the host keeps what it has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// The mode to move into (`None` when the server sent none or an unknown one).
    pub client_mode: Option<ClientMode>,
    /// The sync performed.
    pub sync_kind: SyncKind,
    /// Events per upload (the server's, or 50).
    pub batch_size: u32,
    /// Seconds between full syncs (at least 60).
    pub full_sync_interval_secs: Option<u32>,
    /// Bundle hashing and bundle events.
    pub enable_bundles: Option<bool>,
    /// Transitive (ALLOWLIST_COMPILER) rules.
    pub enable_transitive_rules: Option<bool>,
    /// Upload every execution event, not only blocks and would-be blocks.
    pub enable_all_event_upload: Option<bool>,
    /// Do not upload events for executions that Lockdown would have blocked.
    pub disable_unknown_event_upload: Option<bool>,
    /// `AllowedPathRegex` (an empty string clears it).
    pub allowed_path_regex: Option<String>,
    /// `BlockedPathRegex` (an empty string clears it).
    pub blocked_path_regex: Option<String>,
    /// `EventDetailURL`.
    pub event_detail_url: Option<String>,
    /// `EventDetailText`.
    pub event_detail_text: Option<String>,
}

impl ServerSettings {
    /// The settings in a preflight answer, with Santa's defaults, bounds and deprecated keys.
    pub fn from_preflight(response: &proto::PreflightResponse, sync_kind: SyncKind) -> Self {
        let r = response;
        ServerSettings {
            client_mode: match r.client_mode {
                ClientMode::Unknown => None,
                mode => Some(mode),
            },
            sync_kind,
            batch_size: if r.batch_size > 0 {
                r.batch_size
            } else {
                DEFAULT_EVENT_BATCH_SIZE
            },
            full_sync_interval_secs: (r.full_sync_interval_seconds > 0).then(|| {
                r.full_sync_interval_seconds
                    .max(MINIMUM_FULL_SYNC_INTERVAL_SECS)
            }),
            enable_bundles: r.enable_bundles.or(r.deprecated_bundles_enabled),
            enable_transitive_rules: r
                .enable_transitive_rules
                .or(r.deprecated_enabled_transitive_whitelisting)
                .or(r.deprecated_transitive_whitelisting_enabled),
            enable_all_event_upload: r.enable_all_event_upload,
            disable_unknown_event_upload: r.disable_unknown_event_upload,
            allowed_path_regex: r
                .allowed_path_regex
                .clone()
                .or_else(|| r.deprecated_whitelist_regex.clone()),
            blocked_path_regex: r
                .blocked_path_regex
                .clone()
                .or_else(|| r.deprecated_blacklist_regex.clone()),
            event_detail_url: r.event_detail_url.clone(),
            event_detail_text: r.event_detail_text.clone(),
        }
    }
}

/// What the client reads from and writes to the host. Calls come from the sync's own thread, in
/// stage order; none is on an execution's path.
pub trait SyncHost {
    /// The host's facts for preflight.
    fn host_facts(&mut self) -> Result<HostFacts, HostError>;
    /// The host's rules, counted by type.
    fn rule_counts(&mut self) -> Result<RuleCounts, HostError>;
    /// The host's [`crate::rules_hash`] (asked in preflight, and again after the rules applied).
    fn rules_hash(&mut self) -> Result<String, HostError>;
    /// Up to `max` waiting events, oldest first. The same events come back until acknowledged.
    fn pending_events(&mut self, max: usize) -> Result<Vec<PendingEvent>, HostError>;
    /// The server took these events: they may go.
    fn acknowledge_events(&mut self, ids: &[u64]) -> Result<(), HostError>;
    /// Applies every downloaded rule at once. Called only when there is at least one rule (a
    /// clean sync that brings no rule leaves the host's rules alone, as Santa does). Returns how
    /// many rules the host accepted (postflight's `rules_processed`).
    fn apply_rules(&mut self, download: RuleDownload) -> Result<u32, HostError>;
    /// Applies the server's settings, after postflight (so the mode changes only once the rules
    /// are in).
    fn apply_settings(&mut self, settings: &ServerSettings) -> Result<(), HostError>;
}

/// What one successful sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// The settings the server chose (also handed to [`SyncHost::apply_settings`]).
    pub settings: ServerSettings,
    /// Events the server took.
    pub events_uploaded: usize,
    /// EventUpload requests made.
    pub event_batches: u32,
    /// Events left waiting because this was a clean sync.
    pub events_deferred: bool,
    /// Bundle hashes whose binaries the server asked for (`event_upload_bundle_binaries`).
    pub bundle_binaries_requested: Vec<String>,
    /// RuleDownload pages read.
    pub rule_pages: u32,
    /// Rules in all pages (postflight's `rules_received`).
    pub rules_received: u32,
    /// Rules the client dropped as unreadable (no identifier, unknown policy or type).
    pub rules_dropped: u32,
    /// Rules the host accepted (postflight's `rules_processed`).
    pub rules_processed: u32,
    /// True if rules were handed to the host.
    pub rules_applied: bool,
    /// A failed postflight request. Santa ignores it and completes the sync; so does this client.
    pub postflight_error: Option<RequestError>,
    /// A failed eventupload request in a full sync: the events stay in the host's spool, and the
    /// sync goes on, as Santa's does.
    pub event_upload_error: Option<RequestError>,
    /// How long the sync took.
    pub elapsed: Duration,
}

/// A sync client for one server and machine. Keeps its connections and XSRF token between syncs.
#[derive(Debug)]
pub struct SyncClient {
    transport: Transport,
    machine_id: String,
    upload_events_in_clean_sync: bool,
    limits: Limits,
}

/// One sync in progress.
struct Run<'a> {
    client: &'a mut SyncClient,
    host: &'a mut dyn SyncHost,
    started: Instant,
    report: SyncReport,
}

impl SyncClient {
    /// Checks the configuration and loads its TLS files.
    pub fn new(config: &SyncConfig) -> Result<SyncClient, ConfigError> {
        Ok(SyncClient {
            transport: Transport::new(config)?,
            machine_id: config.machine_id.clone(),
            upload_events_in_clean_sync: config.upload_events_in_clean_sync,
            limits: config.limits.clone(),
        })
    }

    /// Runs one full sync. `requested` is what the operator asked for (`santactl sync --clean`
    /// is [`SyncKind::Clean`]); the server decides what is performed.
    pub fn sync(
        &mut self,
        host: &mut dyn SyncHost,
        requested: SyncKind,
    ) -> Result<SyncReport, SyncError> {
        self.run(host, |run| {
            run.preflight(requested)?;
            run.event_upload(false)?;
            run.rule_download()?;
            run.postflight()
        })
    }

    /// Uploads the waiting events alone, in batches of `batch_size` (the last preflight's): what
    /// Santa does between full syncs when an execution is blocked (`SNTSyncEventUpload` run on
    /// its own, no preflight). The report says how many went up; nothing else changes.
    pub fn upload_events(
        &mut self,
        host: &mut dyn SyncHost,
        batch_size: u32,
    ) -> Result<SyncReport, SyncError> {
        self.run(host, |run| {
            run.report.settings.batch_size = batch_size.max(1);
            run.event_upload(true)
        })
    }

    /// One run of `stages` with a fresh report, timed.
    fn run(
        &mut self,
        host: &mut dyn SyncHost,
        stages: impl FnOnce(&mut Run<'_>) -> Result<(), SyncError>,
    ) -> Result<SyncReport, SyncError> {
        self.transport.start_sync();
        let mut run = Run {
            client: self,
            host,
            started: Instant::now(),
            report: SyncReport::default(),
        };
        stages(&mut run)?;
        run.report.elapsed = run.started.elapsed();
        Ok(run.report)
    }
}

impl Run<'_> {
    fn host<T>(stage: Stage, result: Result<T, HostError>) -> Result<T, SyncError> {
        result.map_err(|source| SyncError::Host { stage, source })
    }

    fn call<M: serde::Serialize, R: serde::de::DeserializeOwned + Default>(
        &mut self,
        stage: Stage,
        message: &M,
        response_name: &'static str,
    ) -> Result<R, RequestError> {
        self.client
            .transport
            .call(stage.path(), message, response_name)
    }

    fn check_time(&self, stage: Stage) -> Result<(), SyncError> {
        let max = self.client.limits.sync_time_max;
        if self.started.elapsed() > max {
            return Err(SyncError::TooLong { stage, max });
        }
        Ok(())
    }

    fn preflight(&mut self, requested: SyncKind) -> Result<(), SyncError> {
        let stage = Stage::Preflight;
        let facts = Self::host(stage, self.host.host_facts())?;
        let counts = Self::host(stage, self.host.rule_counts())?;
        let rules_hash = Self::host(stage, self.host.rules_hash())?;
        let request = proto::PreflightRequest {
            serial_number: facts.serial_number,
            hostname: facts.hostname,
            os_version: facts.os_version,
            os_build: facts.os_build,
            model_identifier: facts.model_identifier,
            santa_version: facts.santa_version,
            primary_user: facts.primary_user,
            primary_user_groups: facts.primary_user_groups,
            client_mode: facts.client_mode,
            request_clean_sync: requested != SyncKind::Normal,
            binary_rule_count: counts.binary,
            certificate_rule_count: counts.certificate,
            compiler_rule_count: counts.compiler,
            transitive_rule_count: counts.transitive,
            teamid_rule_count: counts.teamid,
            signingid_rule_count: counts.signingid,
            cdhash_rule_count: counts.cdhash,
            machine_id: self.client.machine_id.clone(),
            rules_hash,
            ..Default::default()
        };
        let response: proto::PreflightResponse = self
            .call(stage, &request, "PreflightResponse")
            .map_err(|source| SyncError::Request { stage, source })?;
        let kind = SyncKind::performed(requested, &response);
        self.report.settings = ServerSettings::from_preflight(&response, kind);
        Ok(())
    }

    /// `alone`: an events-only upload, whose failure is the run's; in a full sync it is not.
    fn event_upload(&mut self, alone: bool) -> Result<(), SyncError> {
        let stage = Stage::EventUpload;
        if self.report.settings.sync_kind != SyncKind::Normal
            && !self.client.upload_events_in_clean_sync
        {
            self.report.events_deferred = true;
            return Ok(());
        }
        let batch = self
            .report
            .settings
            .batch_size
            .clamp(1, self.client.limits.batch_size_max.max(1)) as usize;
        while self.report.event_batches < self.client.limits.event_batches_max {
            let mut pending = Self::host(stage, self.host.pending_events(batch))?;
            if pending.is_empty() {
                break;
            }
            pending.truncate(batch);
            let last_batch = pending.len() < batch;
            self.check_time(stage)?;
            let ids: Vec<u64> = pending.iter().map(|p| p.id).collect();
            let request = proto::EventUploadRequest {
                events: pending.into_iter().map(|p| p.event).collect(),
                machine_id: self.client.machine_id.clone(),
            };
            let response: proto::EventUploadResponse =
                match self.call(stage, &request, "EventUploadResponse") {
                    Ok(response) => response,
                    // In a full sync, as in Santa (`SNTSyncEventUpload` reports success whatever
                    // the upload did): the events stay in the spool for the next sync, and the
                    // rules and settings still come down.
                    Err(source) if !alone => {
                        log::warn!("sync: uploading events failed ({source}); they stay spooled");
                        self.report.event_upload_error = Some(source);
                        break;
                    }
                    Err(source) => return Err(SyncError::Request { stage, source }),
                };
            self.report.event_batches += 1;
            Self::host(stage, self.host.acknowledge_events(&ids))?;
            self.report.events_uploaded += ids.len();
            for hash in response.event_upload_bundle_binaries {
                if !self.report.bundle_binaries_requested.contains(&hash) {
                    self.report.bundle_binaries_requested.push(hash);
                }
            }
            if last_batch {
                break;
            }
        }
        Ok(())
    }

    fn rule_download(&mut self) -> Result<(), SyncError> {
        let stage = Stage::RuleDownload;
        let limits = self.client.limits.clone();
        let mut rules = Vec::new();
        let mut received: usize = 0;
        let mut cursor = String::new();
        loop {
            if self.report.rule_pages >= limits.rule_pages_max {
                return Err(SyncError::TooManyPages {
                    max: limits.rule_pages_max,
                });
            }
            self.check_time(stage)?;
            let request = proto::RuleDownloadRequest {
                cursor: std::mem::take(&mut cursor),
                machine_id: self.client.machine_id.clone(),
            };
            let page: proto::RuleDownloadResponse = self
                .call(stage, &request, "RuleDownloadResponse")
                .map_err(|source| SyncError::Request { stage, source })?;
            self.report.rule_pages += 1;
            received = received.saturating_add(page.rules.len());
            if received > limits.rules_max {
                return Err(SyncError::TooManyRules {
                    max: limits.rules_max,
                });
            }
            for rule in page.rules {
                match SyncRule::from_proto(rule) {
                    Some(rule) => rules.push(rule),
                    None => self.report.rules_dropped += 1,
                }
            }
            if page.cursor.is_empty() {
                break;
            }
            cursor = page.cursor;
        }
        // Bounded by rules_max, which fits u32 for any sane bound.
        self.report.rules_received = u32::try_from(received).unwrap_or(u32::MAX);
        if rules.is_empty() {
            return Ok(());
        }
        let given = u32::try_from(rules.len()).unwrap_or(u32::MAX);
        let download = RuleDownload {
            kind: self.report.settings.sync_kind,
            rules,
        };
        let processed = Self::host(stage, self.host.apply_rules(download))?;
        self.report.rules_processed = processed.min(given);
        self.report.rules_applied = true;
        Ok(())
    }

    fn postflight(&mut self) -> Result<(), SyncError> {
        let stage = Stage::Postflight;
        let rules_hash = Self::host(stage, self.host.rules_hash())?;
        let request = proto::PostflightRequest {
            rules_received: self.report.rules_received,
            rules_processed: self.report.rules_processed,
            machine_id: self.client.machine_id.clone(),
            sync_type: self.report.settings.sync_kind.proto(),
            rules_hash,
        };
        // Past the sync's time, the request is skipped, not the settings: the rules are in.
        if let Err(late) = self.check_time(stage) {
            log::warn!("sync: {late}; postflight skipped");
        } else if let Err(e) =
            self.call::<_, proto::PostflightResponse>(stage, &request, "PostflightResponse")
        {
            log::warn!("sync: postflight failed ({e}); the sync completes, as in Santa");
            self.report.postflight_error = Some(e);
        }
        Self::host(stage, self.host.apply_settings(&self.report.settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(json: &str) -> proto::PreflightResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_client_can_move_to_the_sync_thread() {
        fn send<T: Send>() {}
        send::<SyncClient>();
        send::<SyncReport>();
        send::<SyncError>();
    }

    #[test]
    fn santas_clean_sync_table() {
        use SyncKind::*;
        let cases = [
            (Normal, "{}", Normal),
            (Normal, r#"{"sync_type":"NORMAL"}"#, Normal),
            (Normal, r#"{"sync_type":"CLEAN"}"#, Clean),
            (Normal, r#"{"sync_type":"CLEAN_ALL"}"#, CleanAll),
            (Normal, r#"{"clean_sync":true}"#, Clean),
            (
                Normal,
                r#"{"sync_type":"NORMAL","clean_sync":true}"#,
                Normal,
            ),
            (Clean, "{}", Normal),
            (Clean, r#"{"syncType":"CLEAN"}"#, Clean),
            (Clean, r#"{"sync_type":3}"#, CleanAll),
            (CleanAll, r#"{"sync_type":"CLEAN"}"#, CleanAll),
            (CleanAll, r#"{"clean_sync":true}"#, CleanAll),
            (CleanAll, r#"{"sync_type":"NORMAL"}"#, Normal),
            (Normal, r#"{"sync_type":"CLEAN_RULES"}"#, Normal),
            (Normal, r#"{"sync_type":"CLEAN_STANDALONE"}"#, Normal),
        ];
        for (requested, json, expected) in cases {
            assert_eq!(
                SyncKind::performed(requested, &preflight(json)),
                expected,
                "{requested:?} {json}"
            );
        }
    }

    #[test]
    fn settings_take_santas_defaults_bounds_and_deprecated_keys() {
        let s = ServerSettings::from_preflight(&preflight("{}"), SyncKind::Normal);
        assert_eq!(s.batch_size, 50);
        assert_eq!(s.client_mode, None);
        assert_eq!(s.full_sync_interval_secs, None);
        let s = ServerSettings::from_preflight(
            &preflight(
                r#"{"client_mode":"LOCKDOWN","full_sync_interval":5,"bundles_enabled":true,
                    "transitive_whitelisting_enabled":true,"whitelist_regex":"^/opt/",
                    "blockedPathRegex":"","batchSize":"7"}"#,
            ),
            SyncKind::Normal,
        );
        assert_eq!(s.client_mode, Some(ClientMode::Lockdown));
        assert_eq!(s.full_sync_interval_secs, Some(60));
        assert_eq!(s.enable_bundles, Some(true));
        assert_eq!(s.enable_transitive_rules, Some(true));
        assert_eq!(s.allowed_path_regex.as_deref(), Some("^/opt/"));
        assert_eq!(s.blocked_path_regex.as_deref(), Some(""));
        assert_eq!(s.batch_size, 7);
    }

    #[test]
    fn unreadable_rules_are_dropped_as_santa_drops_them() {
        let rule = |json: &str| SyncRule::from_proto(serde_json::from_str(json).unwrap());
        assert!(rule(r#"{"policy":"ALLOWLIST","rule_type":"BINARY"}"#).is_none());
        assert!(rule(r#"{"identifier":"x","policy":"SEATBELT","rule_type":"BINARY"}"#).is_none());
        assert!(rule(r#"{"identifier":"x","policy":"ALLOWLIST","rule_type":"PATH"}"#).is_none());
        assert!(rule(r#"{"identifier":"x","policy":"CEL","rule_type":"BINARY"}"#).is_none());
        let r = rule(r#"{"sha256":"ab","policy":"BLACKLIST","rule_type":1}"#).unwrap();
        assert_eq!(
            (r.identifier.as_str(), r.policy, r.rule_type),
            ("ab", Policy::Blocklist, RuleType::Binary)
        );
        let long = "é".repeat(100);
        let r = rule(&format!(
            r#"{{"identifier":"x","policy":1,"rule_type":1,"event_detail_button_label":"{long}"}}"#
        ))
        .unwrap();
        assert_eq!(r.event_detail_button_label.chars().count(), 48);
    }
}
