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
use lenient::{Lenient, de, is_default};
use serde::{Deserialize, Deserializer, Serialize};

/// Declares one message: a struct of public fields in proto order, each read leniently
/// ([`lenient::de`]) and left out when it holds its default ([`lenient::is_default`]: 0, "",
/// false, empty, the zero enum, an unset `optional`), as Santa's printer leaves it out.
///
/// A field is written under its proto name (the Rust name) unless `=> "name"` follows it: the
/// proto's `json_name` where it sets one that differs, or else protobuf's lowerCamelCase of a
/// name with an underscore. Either name is read, as protobuf's parser reads both.
macro_rules! proto_message {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty $(=> $json:literal)?, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "is_default", deserialize_with = "de")]
                $( #[serde(rename(serialize = $json), alias = $json)] )?
                pub $field: $ty,
            )*
        }

        /// As a nested message, `null` is the default message.
        impl Lenient for $name {
            fn deserialize_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Option::<$name>::deserialize(d)?.unwrap_or_default())
            }
        }
    };
}

proto_message! {
    /// `santa.sync.v1.PreflightRequest`: the host reports itself.
    PreflightRequest {
        /// `serial_number`, JSON `serial_num`.
        serial_number: String => "serial_num",
        /// `hostname`: the fully qualified host name.
        hostname: String,
        /// `os_version`.
        os_version: String,
        /// `os_build`.
        os_build: String,
        /// `model_identifier`.
        model_identifier: String,
        /// `santa_version`: the agent's version.
        santa_version: String,
        /// `primary_user` (`MachineOwner`).
        primary_user: String,
        /// `primary_user_groups`.
        primary_user_groups: Vec<String>,
        /// `push_notification_token`.
        push_notification_token: String,
        /// `client_mode`: the mode the host runs in now.
        client_mode: ClientMode,
        /// `request_clean_sync`: the operator asked for a clean sync.
        request_clean_sync: bool,
        /// `binary_rule_count`.
        binary_rule_count: u32,
        /// `certificate_rule_count`.
        certificate_rule_count: u32,
        /// `compiler_rule_count`: ALLOWLIST_COMPILER rules.
        compiler_rule_count: u32,
        /// `transitive_rule_count`: rules written locally for a compiler's output.
        transitive_rule_count: u32,
        /// `teamid_rule_count`.
        teamid_rule_count: u32,
        /// `signingid_rule_count`.
        signingid_rule_count: u32,
        /// `cdhash_rule_count`.
        cdhash_rule_count: u32,
        /// `machine_id`: the same as in the URL.
        machine_id: String,
        /// `push_notification_sync`.
        push_notification_sync: bool,
        /// `sip_status` (no json_name: `sipStatus`). macOS only.
        sip_status: u32 => "sipStatus",
        /// `rules_hash` (no json_name: `rulesHash`); see [`crate::rules_hash`].
        rules_hash: String => "rulesHash",
    }
}

proto_message! {
    /// `santa.sync.v1.PreflightResponse`: the server's settings for the host. Only the fields
    /// santad can apply are declared. None of these has a `json_name` except where noted, so each
    /// is read under its lowerCamelCase name or its proto name.
    PreflightResponse {
        /// `client_mode`: the mode to move into at the end of the sync.
        client_mode: ClientMode => "clientMode",
        /// `sync_type` (optional).
        sync_type: Option<SyncType> => "syncType",
        /// `batch_size`: events per EventUpload request; 0 means Santa's default (50).
        batch_size: u32 => "batchSize",
        /// `enable_bundles` (optional).
        enable_bundles: Option<bool> => "enableBundles",
        /// `enable_transitive_rules` (optional).
        enable_transitive_rules: Option<bool> => "enableTransitiveRules",
        /// `enable_all_event_upload` (optional).
        enable_all_event_upload: Option<bool> => "enableAllEventUpload",
        /// `disable_unknown_event_upload` (optional).
        disable_unknown_event_upload: Option<bool> => "disableUnknownEventUpload",
        /// `full_sync_interval_seconds`, JSON `full_sync_interval`.
        full_sync_interval_seconds: u32 => "full_sync_interval",
        /// `allowed_path_regex` (optional).
        allowed_path_regex: Option<String> => "allowedPathRegex",
        /// `blocked_path_regex` (optional).
        blocked_path_regex: Option<String> => "blockedPathRegex",
        /// `event_detail_url` (optional).
        event_detail_url: Option<String> => "eventDetailUrl",
        /// `event_detail_text` (optional).
        event_detail_text: Option<String> => "eventDetailText",
        /// Deprecated `enabled_transitive_whitelisting` (field
        /// `deprecated_enabled_transitive_whitelisting`).
        deprecated_enabled_transitive_whitelisting: Option<bool>
            => "enabled_transitive_whitelisting",
        /// Deprecated `transitive_whitelisting_enabled`.
        deprecated_transitive_whitelisting_enabled: Option<bool>
            => "transitive_whitelisting_enabled",
        /// Deprecated `bundles_enabled`.
        deprecated_bundles_enabled: Option<bool> => "bundles_enabled",
        /// Deprecated `whitelist_regex`.
        deprecated_whitelist_regex: Option<String> => "whitelist_regex",
        /// Deprecated `blacklist_regex`.
        deprecated_blacklist_regex: Option<String> => "blacklist_regex",
        /// Deprecated `clean_sync`: acts like `sync_type` CLEAN when `sync_type` is absent.
        deprecated_clean_sync: Option<bool> => "clean_sync",
    }
}

proto_message! {
    /// `santa.sync.v1.Certificate`: one certificate of a signing chain.
    Certificate {
        /// `sha256` of the DER certificate.
        sha256: String,
        /// `cn`: Common Name.
        cn: String,
        /// `org`: Organization.
        org: String,
        /// `ou`: Organizational Unit.
        ou: String,
        /// `valid_from`, seconds since the UNIX epoch.
        valid_from: u32,
        /// `valid_until`, seconds since the UNIX epoch.
        valid_until: u32,
    }
}

proto_message! {
    /// `santa.sync.v1.Entitlement`: one top-level entitlement (both fields have presence).
    Entitlement {
        /// `key`.
        key: Option<String>,
        /// `value`, JSON-serialized.
        value: Option<String>,
    }
}

proto_message! {
    /// `santa.sync.v1.EntitlementInfo` (no json_names: lowerCamelCase).
    EntitlementInfo {
        /// `entitlements_filtered` (optional).
        entitlements_filtered: Option<bool> => "entitlementsFiltered",
        /// `entitlements`.
        entitlements: Vec<Entitlement>,
    }
}

proto_message! {
    /// `santa.sync.v1.Event`: one execution (or a bundle binary the server asked for).
    Event {
        /// `file_sha256`.
        file_sha256: String,
        /// `file_path`: the directory holding the file (Santa: the path less its last component).
        file_path: String,
        /// `file_name`: the file's name.
        file_name: String,
        /// `executing_user`.
        executing_user: String,
        /// `execution_time`: seconds since the UNIX epoch, with a fraction.
        execution_time: f64,
        /// `logged_in_users`.
        logged_in_users: Vec<String>,
        /// `current_sessions` (`user@console`, `user@ttys000`, `user@IP`).
        current_sessions: Vec<String>,
        /// `decision`.
        decision: Decision,
        /// `file_bundle_id`: CFBundleIdentifier.
        file_bundle_id: String,
        /// `file_bundle_path`.
        file_bundle_path: String,
        /// `file_bundle_executable_rel_path`.
        file_bundle_executable_rel_path: String,
        /// `file_bundle_name`: CFBundleName.
        file_bundle_name: String,
        /// `file_bundle_version`: CFBundleVersion.
        file_bundle_version: String,
        /// `file_bundle_version_string`: CFBundleShortVersionString.
        file_bundle_version_string: String,
        /// `file_bundle_hash`.
        file_bundle_hash: String,
        /// `file_bundle_hash_millis`.
        file_bundle_hash_millis: u32,
        /// `file_bundle_binary_count`.
        file_bundle_binary_count: u32,
        /// `pid`.
        pid: i32,
        /// `ppid`.
        ppid: i32,
        /// `parent_name`.
        parent_name: String,
        /// `team_id`.
        team_id: String,
        /// `signing_id`.
        signing_id: String,
        /// `cdhash`.
        cdhash: String,
        /// `quarantine_data_url` (deprecated in the proto).
        quarantine_data_url: String,
        /// `quarantine_referer_url` (deprecated in the proto).
        quarantine_referer_url: String,
        /// `quarantine_timestamp`, seconds since the UNIX epoch (deprecated in the proto).
        quarantine_timestamp: u32,
        /// `quarantine_agent_bundle_id` (deprecated in the proto).
        quarantine_agent_bundle_id: String,
        /// `signing_chain`, leaf first.
        signing_chain: Vec<Certificate>,
        /// `entitlement_info` (no json_name: `entitlementInfo`).
        entitlement_info: Option<EntitlementInfo> => "entitlementInfo",
        /// `cs_flags` (no json_name: `csFlags`).
        cs_flags: u32 => "csFlags",
        /// `signing_status` (no json_name: `signingStatus`).
        signing_status: SigningStatus => "signingStatus",
        /// `secure_signing_time` (no json_name: `secureSigningTime`).
        secure_signing_time: u32 => "secureSigningTime",
        /// `signing_time` (no json_name: `signingTime`).
        signing_time: u32 => "signingTime",
        /// `static_rule`: a static rule decided.
        static_rule: bool,
    }
}

proto_message! {
    /// `santa.sync.v1.EventUploadRequest`. `audit_events` and `file_access_events` are not written:
    /// santad has neither.
    EventUploadRequest {
        /// `events`.
        events: Vec<Event>,
        /// `machine_id`.
        machine_id: String,
    }
}

proto_message! {
    /// `santa.sync.v1.EventUploadResponse`.
    EventUploadResponse {
        /// `event_upload_bundle_binaries` (no json_name): bundle hashes whose binaries the server
        /// wants as BUNDLE_BINARY events.
        event_upload_bundle_binaries: Vec<String> => "eventUploadBundleBinaries",
    }
}

proto_message! {
    /// `santa.sync.v1.Rule` (no json_names except the deprecated `sha256`).
    Rule {
        /// `identifier`, read as the rule type says.
        identifier: String,
        /// `policy`.
        policy: Policy,
        /// `rule_type`.
        rule_type: RuleType => "ruleType",
        /// `custom_msg`: the block message for this rule.
        custom_msg: String => "customMsg",
        /// `custom_url`: the block notification's URL for this rule.
        custom_url: String => "customUrl",
        /// `file_bundle_hash` (deprecated).
        file_bundle_hash: String => "fileBundleHash",
        /// `file_bundle_binary_count` (deprecated).
        file_bundle_binary_count: u32 => "fileBundleBinaryCount",
        /// `notification_app_name`.
        notification_app_name: String => "notificationAppName",
        /// `cel_expr`: for CEL rules.
        cel_expr: String => "celExpr",
        /// `event_detail_button_label`.
        event_detail_button_label: String => "eventDetailButtonLabel",
        /// `deprecated_sha256`, JSON `sha256`: the identifier, for servers older than `identifier`.
        deprecated_sha256: String => "sha256",
    }
}

proto_message! {
    /// `santa.sync.v1.RuleDownloadRequest`.
    RuleDownloadRequest {
        /// `cursor`: the previous page's cursor; absent on the first request.
        cursor: String,
        /// `machine_id`.
        machine_id: String,
    }
}

proto_message! {
    /// `santa.sync.v1.RuleDownloadResponse`.
    RuleDownloadResponse {
        /// `rules`: this page.
        rules: Vec<Rule>,
        /// `cursor`: non-empty when more pages follow.
        cursor: String,
    }
}

proto_message! {
    /// `santa.sync.v1.PostflightRequest`.
    PostflightRequest {
        /// `rules_received`: rules in every RuleDownload page.
        rules_received: u32,
        /// `rules_processed`: rules that were valid and imported.
        rules_processed: u32,
        /// `machine_id`.
        machine_id: String,
        /// `sync_type` (no json_name: `syncType`): the sync the host just performed.
        sync_type: SyncType => "syncType",
        /// `rules_hash` (no json_name: `rulesHash`), after the rules were applied.
        rules_hash: String => "rulesHash",
    }
}

proto_message! {
    /// `santa.sync.v1.PostflightResponse`: empty.
    PostflightResponse {}
}

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
    fn every_preflight_setting_is_written_under_its_json_name_and_read_under_both() {
        // (proto name, JSON name), from the proto: its json_name, or else lowerCamelCase.
        let names = [
            ("client_mode", "clientMode"),
            ("sync_type", "syncType"),
            ("batch_size", "batchSize"),
            ("enable_bundles", "enableBundles"),
            ("enable_transitive_rules", "enableTransitiveRules"),
            ("enable_all_event_upload", "enableAllEventUpload"),
            ("disable_unknown_event_upload", "disableUnknownEventUpload"),
            ("full_sync_interval_seconds", "full_sync_interval"),
            ("allowed_path_regex", "allowedPathRegex"),
            ("blocked_path_regex", "blockedPathRegex"),
            ("event_detail_url", "eventDetailUrl"),
            ("event_detail_text", "eventDetailText"),
            (
                "deprecated_enabled_transitive_whitelisting",
                "enabled_transitive_whitelisting",
            ),
            (
                "deprecated_transitive_whitelisting_enabled",
                "transitive_whitelisting_enabled",
            ),
            ("deprecated_bundles_enabled", "bundles_enabled"),
            ("deprecated_whitelist_regex", "whitelist_regex"),
            ("deprecated_blacklist_regex", "blacklist_regex"),
            ("deprecated_clean_sync", "clean_sync"),
        ];
        let every_field_set = PreflightResponse {
            client_mode: ClientMode::Monitor,
            sync_type: Some(SyncType::Clean),
            batch_size: 1,
            enable_bundles: Some(true),
            enable_transitive_rules: Some(false),
            enable_all_event_upload: Some(true),
            disable_unknown_event_upload: Some(false),
            full_sync_interval_seconds: 2,
            allowed_path_regex: Some("a".into()),
            blocked_path_regex: Some(String::new()),
            event_detail_url: Some("b".into()),
            event_detail_text: Some("c".into()),
            deprecated_enabled_transitive_whitelisting: Some(true),
            deprecated_transitive_whitelisting_enabled: Some(false),
            deprecated_bundles_enabled: Some(true),
            deprecated_whitelist_regex: Some("d".into()),
            deprecated_blacklist_regex: Some("e".into()),
            deprecated_clean_sync: Some(true),
        };
        let written = serde_json::to_value(&every_field_set).unwrap();
        let written = written.as_object().unwrap();
        assert_eq!(written.len(), names.len());
        for (proto_name, json_name) in names {
            let value = &written[json_name];
            let one = |name: &str| {
                let read: PreflightResponse =
                    serde_json::from_value(serde_json::json!({ name: value })).unwrap();
                serde_json::to_value(read).unwrap()
            };
            let expected = serde_json::json!({ json_name: value });
            assert_eq!(one(json_name), expected, "{json_name}");
            assert_eq!(one(proto_name), expected, "{proto_name}");
        }
    }

    #[test]
    fn postflight_response_ignores_whatever_comes() {
        let _: PostflightResponse = serde_json::from_str(r#"{"NoOp":{}}"#).unwrap();
        let _: EventUploadResponse = serde_json::from_str(r#"{"Err":null}"#).unwrap();
    }
}
