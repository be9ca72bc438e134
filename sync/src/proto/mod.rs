//! The messages of Santa's sync protocol v1 (`santa.sync.v1` in northpolesec/protos
//! `sync/v1.proto`), as Santa's `santasyncservice` writes and reads them in JSON.
//!
//! Names on the wire: Santa prints with protobuf's JSON printer at its default options, so each
//! field is written under its `json_name` where the proto sets one (snake_case: `serial_num`,
//! `file_sha256`) and under protobuf's lowerCamelCase name where it does not (`sipStatus`,
//! `rulesHash`, `csFlags`); a field holding its default value (0, "", false, an empty list, the
//! zero enum) is left out; enums are names. Reading accepts both a field's JSON name and its proto
//! name (protobuf's parser does), ignores unknown fields, and reads `null` as the default (see
//! `lenient.rs`).
//!
//! Each struct names the proto message it is. Fields that santad cannot use (file access events,
//! audit events, removable-media, export and push settings, sync v2) are not declared: on reading
//! they are unknown fields and ignored; on writing they are defaults and omitted, as Santa omits
//! them.

mod enums;
pub(crate) mod lenient;

pub use enums::{ClientMode, Decision, Policy, RuleType, SigningStatus, SyncType};
use lenient::{de, is_default};
use serde::{Deserialize, Serialize};

/// `santa.sync.v1.PreflightRequest`: the host reports itself.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct PreflightRequest {
    /// `serial_number`, JSON `serial_num`.
    #[serde(rename = "serial_num", alias = "serial_number")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub serial_number: String,
    /// `hostname`: the fully qualified host name.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub hostname: String,
    /// `os_version`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub os_version: String,
    /// `os_build`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub os_build: String,
    /// `model_identifier`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub model_identifier: String,
    /// `santa_version`: the agent's version.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub santa_version: String,
    /// `primary_user` (`MachineOwner`).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub primary_user: String,
    /// `primary_user_groups`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub primary_user_groups: Vec<String>,
    /// `push_notification_token`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub push_notification_token: String,
    /// `client_mode`: the mode the host runs in now.
    #[serde(skip_serializing_if = "is_default")]
    pub client_mode: ClientMode,
    /// `request_clean_sync`: the operator asked for a clean sync.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub request_clean_sync: bool,
    /// `binary_rule_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub binary_rule_count: u32,
    /// `certificate_rule_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub certificate_rule_count: u32,
    /// `compiler_rule_count`: ALLOWLIST_COMPILER rules.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub compiler_rule_count: u32,
    /// `transitive_rule_count`: rules written locally for a compiler's output.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub transitive_rule_count: u32,
    /// `teamid_rule_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub teamid_rule_count: u32,
    /// `signingid_rule_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub signingid_rule_count: u32,
    /// `cdhash_rule_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cdhash_rule_count: u32,
    /// `machine_id`: the same as in the URL.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub machine_id: String,
    /// `push_notification_sync`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub push_notification_sync: bool,
    /// `sip_status` (no json_name: `sipStatus`). macOS only.
    #[serde(rename = "sipStatus", alias = "sip_status")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub sip_status: u32,
    /// `rules_hash` (no json_name: `rulesHash`); see [`crate::rules_hash`].
    #[serde(rename = "rulesHash", alias = "rules_hash")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub rules_hash: String,
}

/// `santa.sync.v1.PreflightResponse`: the server's settings for the host. Only the fields santad
/// can apply are declared. None of these has a `json_name` except where noted, so each is read
/// under its lowerCamelCase name or its proto name.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct PreflightResponse {
    /// `client_mode`: the mode to move into at the end of the sync.
    #[serde(rename = "clientMode", alias = "client_mode")]
    #[serde(skip_serializing_if = "is_default")]
    pub client_mode: ClientMode,
    /// `sync_type` (optional).
    #[serde(rename = "syncType", alias = "sync_type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_type: Option<SyncType>,
    /// `batch_size`: events per EventUpload request; 0 means Santa's default (50).
    #[serde(rename = "batchSize", alias = "batch_size")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub batch_size: u32,
    /// `enable_bundles` (optional).
    #[serde(rename = "enableBundles", alias = "enable_bundles")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub enable_bundles: Option<bool>,
    /// `enable_transitive_rules` (optional).
    #[serde(rename = "enableTransitiveRules", alias = "enable_transitive_rules")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub enable_transitive_rules: Option<bool>,
    /// `enable_all_event_upload` (optional).
    #[serde(rename = "enableAllEventUpload", alias = "enable_all_event_upload")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub enable_all_event_upload: Option<bool>,
    /// `disable_unknown_event_upload` (optional).
    #[serde(
        rename = "disableUnknownEventUpload",
        alias = "disable_unknown_event_upload"
    )]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub disable_unknown_event_upload: Option<bool>,
    /// `full_sync_interval_seconds`, JSON `full_sync_interval`.
    #[serde(rename = "full_sync_interval", alias = "full_sync_interval_seconds")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub full_sync_interval_seconds: u32,
    /// `allowed_path_regex` (optional).
    #[serde(rename = "allowedPathRegex", alias = "allowed_path_regex")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub allowed_path_regex: Option<String>,
    /// `blocked_path_regex` (optional).
    #[serde(rename = "blockedPathRegex", alias = "blocked_path_regex")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub blocked_path_regex: Option<String>,
    /// `event_detail_url` (optional).
    #[serde(rename = "eventDetailUrl", alias = "event_detail_url")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub event_detail_url: Option<String>,
    /// `event_detail_text` (optional).
    #[serde(rename = "eventDetailText", alias = "event_detail_text")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub event_detail_text: Option<String>,
    /// Deprecated `enabled_transitive_whitelisting` (field
    /// `deprecated_enabled_transitive_whitelisting`).
    #[serde(
        rename = "enabled_transitive_whitelisting",
        alias = "deprecated_enabled_transitive_whitelisting"
    )]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_enabled_transitive_whitelisting: Option<bool>,
    /// Deprecated `transitive_whitelisting_enabled`.
    #[serde(
        rename = "transitive_whitelisting_enabled",
        alias = "deprecated_transitive_whitelisting_enabled"
    )]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_transitive_whitelisting_enabled: Option<bool>,
    /// Deprecated `bundles_enabled`.
    #[serde(rename = "bundles_enabled", alias = "deprecated_bundles_enabled")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_bundles_enabled: Option<bool>,
    /// Deprecated `whitelist_regex`.
    #[serde(rename = "whitelist_regex", alias = "deprecated_whitelist_regex")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_whitelist_regex: Option<String>,
    /// Deprecated `blacklist_regex`.
    #[serde(rename = "blacklist_regex", alias = "deprecated_blacklist_regex")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_blacklist_regex: Option<String>,
    /// Deprecated `clean_sync`: acts like `sync_type` CLEAN when `sync_type` is absent.
    #[serde(rename = "clean_sync", alias = "deprecated_clean_sync")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub deprecated_clean_sync: Option<bool>,
}

/// `santa.sync.v1.Certificate`: one certificate of a signing chain.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Certificate {
    /// `sha256` of the DER certificate.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub sha256: String,
    /// `cn`: Common Name.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cn: String,
    /// `org`: Organization.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub org: String,
    /// `ou`: Organizational Unit.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub ou: String,
    /// `valid_from`, seconds since the UNIX epoch.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub valid_from: u32,
    /// `valid_until`, seconds since the UNIX epoch.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub valid_until: u32,
}

/// `santa.sync.v1.Entitlement`: one top-level entitlement (both fields have presence).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Entitlement {
    /// `key`.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub key: Option<String>,
    /// `value`, JSON-serialized.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub value: Option<String>,
}

/// `santa.sync.v1.EntitlementInfo` (no json_names: lowerCamelCase).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct EntitlementInfo {
    /// `entitlements_filtered` (optional).
    #[serde(rename = "entitlementsFiltered", alias = "entitlements_filtered")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub entitlements_filtered: Option<bool>,
    /// `entitlements`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub entitlements: Vec<Entitlement>,
}

/// `santa.sync.v1.Event`: one execution (or a bundle binary the server asked for).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Event {
    /// `file_sha256`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_sha256: String,
    /// `file_path`: the directory holding the file (Santa: the path less its last component).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_path: String,
    /// `file_name`: the file's name.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_name: String,
    /// `executing_user`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub executing_user: String,
    /// `execution_time`: seconds since the UNIX epoch, with a fraction.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub execution_time: f64,
    /// `logged_in_users`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub logged_in_users: Vec<String>,
    /// `current_sessions` (`user@console`, `user@ttys000`, `user@IP`).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub current_sessions: Vec<String>,
    /// `decision`.
    #[serde(skip_serializing_if = "is_default")]
    pub decision: Decision,
    /// `file_bundle_id`: CFBundleIdentifier.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_id: String,
    /// `file_bundle_path`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_path: String,
    /// `file_bundle_executable_rel_path`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_executable_rel_path: String,
    /// `file_bundle_name`: CFBundleName.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_name: String,
    /// `file_bundle_version`: CFBundleVersion.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_version: String,
    /// `file_bundle_version_string`: CFBundleShortVersionString.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_version_string: String,
    /// `file_bundle_hash`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_hash: String,
    /// `file_bundle_hash_millis`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_hash_millis: u32,
    /// `file_bundle_binary_count`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_binary_count: u32,
    /// `pid`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub pid: i32,
    /// `ppid`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub ppid: i32,
    /// `parent_name`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub parent_name: String,
    /// `team_id`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub team_id: String,
    /// `signing_id`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub signing_id: String,
    /// `cdhash`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cdhash: String,
    /// `quarantine_data_url` (deprecated in the proto).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub quarantine_data_url: String,
    /// `quarantine_referer_url` (deprecated in the proto).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub quarantine_referer_url: String,
    /// `quarantine_timestamp`, seconds since the UNIX epoch (deprecated in the proto).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub quarantine_timestamp: u32,
    /// `quarantine_agent_bundle_id` (deprecated in the proto).
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub quarantine_agent_bundle_id: String,
    /// `signing_chain`, leaf first.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub signing_chain: Vec<Certificate>,
    /// `entitlement_info` (no json_name: `entitlementInfo`).
    #[serde(rename = "entitlementInfo", alias = "entitlement_info")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "de")]
    pub entitlement_info: Option<EntitlementInfo>,
    /// `cs_flags` (no json_name: `csFlags`).
    #[serde(rename = "csFlags", alias = "cs_flags")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cs_flags: u32,
    /// `signing_status` (no json_name: `signingStatus`).
    #[serde(rename = "signingStatus", alias = "signing_status")]
    #[serde(skip_serializing_if = "is_default")]
    pub signing_status: SigningStatus,
    /// `secure_signing_time` (no json_name: `secureSigningTime`).
    #[serde(rename = "secureSigningTime", alias = "secure_signing_time")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub secure_signing_time: u32,
    /// `signing_time` (no json_name: `signingTime`).
    #[serde(rename = "signingTime", alias = "signing_time")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub signing_time: u32,
    /// `static_rule`: a static rule decided.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub static_rule: bool,
}

/// A nested message read leniently: `null` is the default message.
impl lenient::Lenient for EntitlementInfo {
    fn deserialize_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<EntitlementInfo>::deserialize(d)?.unwrap_or_default())
    }
}

/// `santa.sync.v1.EventUploadRequest`. `audit_events` and `file_access_events` are not written:
/// santad has neither.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct EventUploadRequest {
    /// `events`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub events: Vec<Event>,
    /// `machine_id`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub machine_id: String,
}

/// `santa.sync.v1.EventUploadResponse`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct EventUploadResponse {
    /// `event_upload_bundle_binaries` (no json_name): bundle hashes whose binaries the server
    /// wants as BUNDLE_BINARY events.
    #[serde(
        rename = "eventUploadBundleBinaries",
        alias = "event_upload_bundle_binaries"
    )]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub event_upload_bundle_binaries: Vec<String>,
}

/// `santa.sync.v1.Rule` (no json_names except the deprecated `sha256`).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct Rule {
    /// `identifier`, read as the rule type says.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub identifier: String,
    /// `policy`.
    #[serde(skip_serializing_if = "is_default")]
    pub policy: Policy,
    /// `rule_type`.
    #[serde(rename = "ruleType", alias = "rule_type")]
    #[serde(skip_serializing_if = "is_default")]
    pub rule_type: RuleType,
    /// `custom_msg`: the block message for this rule.
    #[serde(rename = "customMsg", alias = "custom_msg")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub custom_msg: String,
    /// `custom_url`: the block notification's URL for this rule.
    #[serde(rename = "customUrl", alias = "custom_url")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub custom_url: String,
    /// `file_bundle_hash` (deprecated).
    #[serde(rename = "fileBundleHash", alias = "file_bundle_hash")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_hash: String,
    /// `file_bundle_binary_count` (deprecated).
    #[serde(rename = "fileBundleBinaryCount", alias = "file_bundle_binary_count")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub file_bundle_binary_count: u32,
    /// `notification_app_name`.
    #[serde(rename = "notificationAppName", alias = "notification_app_name")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub notification_app_name: String,
    /// `cel_expr`: for CEL rules.
    #[serde(rename = "celExpr", alias = "cel_expr")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cel_expr: String,
    /// `event_detail_button_label`.
    #[serde(rename = "eventDetailButtonLabel", alias = "event_detail_button_label")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub event_detail_button_label: String,
    /// `deprecated_sha256`, JSON `sha256`: the identifier, for servers from before `identifier`.
    #[serde(rename = "sha256", alias = "deprecated_sha256")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub deprecated_sha256: String,
}

/// `santa.sync.v1.RuleDownloadRequest`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct RuleDownloadRequest {
    /// `cursor`: the previous page's cursor; absent on the first request.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cursor: String,
    /// `machine_id`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub machine_id: String,
}

/// `santa.sync.v1.RuleDownloadResponse`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct RuleDownloadResponse {
    /// `rules`: this page.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub rules: Vec<Rule>,
    /// `cursor`: non-empty when more pages follow.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub cursor: String,
}

/// `santa.sync.v1.PostflightRequest`.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct PostflightRequest {
    /// `rules_received`: rules in every RuleDownload page.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub rules_received: u32,
    /// `rules_processed`: rules that were valid and imported.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub rules_processed: u32,
    /// `machine_id`.
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub machine_id: String,
    /// `sync_type` (no json_name: `syncType`): the sync the host just performed.
    #[serde(rename = "syncType", alias = "sync_type")]
    #[serde(skip_serializing_if = "is_default")]
    pub sync_type: SyncType,
    /// `rules_hash` (no json_name: `rulesHash`), after the rules were applied.
    #[serde(rename = "rulesHash", alias = "rules_hash")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
    pub rules_hash: String,
}

/// `santa.sync.v1.PostflightResponse`: empty.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct PostflightResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_request_is_an_empty_object() {
        assert_eq!(
            serde_json::to_string(&PreflightRequest::default()).unwrap(),
            "{}"
        );
        assert_eq!(serde_json::to_string(&Event::default()).unwrap(), "{}");
    }

    #[test]
    fn santas_own_preflight_answers_read() {
        // The shapes of Santa's test fixtures (Source/santasyncservice/testdata): snake_case
        // proto names, nulls, deprecated keys.
        let r: PreflightResponse = serde_json::from_str(
            r#"{"whitelist_regex": null, "client_mode": "LOCKDOWN", "blacklist_regex": null,
                "batch_size": 100}"#,
        )
        .unwrap();
        assert_eq!(r.client_mode, ClientMode::Lockdown);
        assert_eq!(r.batch_size, 100);
        assert_eq!(r.deprecated_whitelist_regex, None);
    }

    #[test]
    fn rules_read_under_either_name() {
        let page: RuleDownloadResponse = serde_json::from_str(
            r#"{"rules":[{"rule_type":"BINARY","policy":"BLOCKLIST","sha256":"ab","custom_msg":""},
                         {"ruleType":4,"policy":1,"identifier":"platform:x","customMsg":"m"}],
                "cursor":"c="}"#,
        )
        .unwrap();
        assert_eq!(page.rules[0].deprecated_sha256, "ab");
        assert_eq!(page.rules[0].rule_type, RuleType::Binary);
        assert_eq!(page.rules[1].rule_type, RuleType::SigningId);
        assert_eq!(page.rules[1].policy, Policy::Allowlist);
        assert_eq!(page.rules[1].custom_msg, "m");
        assert_eq!(page.cursor, "c=");
    }

    #[test]
    fn postflight_response_ignores_whatever_comes() {
        let _: PostflightResponse = serde_json::from_str(r#"{"NoOp":{}}"#).unwrap();
        let _: EventUploadResponse = serde_json::from_str(r#"{"Err":null}"#).unwrap();
    }
}
