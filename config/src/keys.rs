//! The file's schema: one serde struct per TOML table, with Santa's key names, unknown keys
//! refused (`deny_unknown_fields`). Deserializing checks only what a value *is*: a boolean, an
//! integer, one of a few words, a path string or a table. What it may be (bounds, absolute paths,
//! regexes, names that exist, keys that agree) is [`crate::validate`]'s job, so that every bound
//! is applied in one place. Every key is an `Option` (or an empty list): absent means "the
//! default", and only `Config::default` knows what that is.
//!
//! The value types below exist for their error messages: serde's own say `expected i64` or
//! `expected a sequence` where a config's reader wants `an integer` or `an array`, and an untagged
//! enum says only that nothing matched.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};

use crate::{BackstopMode, ClientMode, MetricFormat, SyncEncoding, WatchScope};

/// The top-level table. Each field is the key of the same name in PascalCase (Santa's
/// spelling where it differs); [`crate::Config`] says what each one means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Keys {
    pub client_mode: Option<Spelled<ClientMode>>,
    pub fail_closed: Option<bool>,
    pub allowed_path_regex: Option<String>,
    pub blocked_path_regex: Option<String>,
    pub enable_bad_signature_protection: Option<bool>,
    pub event_log_type: Option<Spelled<LogType>>,
    pub event_log_path: Option<String>,
    #[serde(rename = "EventDetailURL")]
    pub event_detail_url: Option<String>,
    pub event_detail_text: Option<String>,
    pub unknown_block_message: Option<String>,
    pub banned_block_message: Option<String>,
    pub enable_silent_mode: Option<bool>,
    #[serde(rename = "EnableSilentTTYMode")]
    pub enable_silent_tty_mode: Option<bool>,
    #[serde(rename = "MachineID")]
    pub machine_id: Option<String>,
    #[serde(rename = "EnableMachineIDDecoration")]
    pub enable_machine_id_decoration: Option<bool>,
    pub watch_paths: Option<List<WatchEntry>>,
    pub ignore_mounts: Option<List<String>>,
    pub lockdown_scope: Option<ScopeKeys>,
    pub backstop: Option<Spelled<BackstopMode>>,
    pub memfd_noexec: Option<bool>,
    pub deadline_ms: Option<Integer>,
    pub max_hash_bytes: Option<Integer>,
    pub worker_count: Option<Integer>,
    pub cache_capacity: Option<Integer>,
    pub deny_cache_ttl_ms: Option<Integer>,
    pub in_flight_slots: Option<Integer>,
    pub queue_depth: Option<Integer>,
    pub event_log_ring_size: Option<Integer>,
    pub rules_db_path: Option<String>,
    pub control_socket_path: Option<String>,
    pub log_exec_notifications: Option<bool>,
    pub prefetch_new_executables: Option<bool>,
    pub prefetch_queue_depth: Option<Integer>,
    pub prefetch_bytes_per_second: Option<Integer>,
    pub prefetch_file_bytes_max: Option<Integer>,
    pub ignore_other_endpoint_security_clients: Option<bool>,
    #[serde(rename = "SyncBaseURL")]
    pub sync_base_url: Option<String>,
    pub machine_owner: Option<String>,
    pub full_sync_interval: Option<Integer>,
    pub sync_extra_headers: Option<std::collections::BTreeMap<String, String>>,
    pub sync_client_content_encoding: Option<Spelled<SyncEncoding>>,
    pub server_auth_roots_file: Option<String>,
    pub client_auth_certificate_file: Option<String>,
    pub client_auth_key_file: Option<String>,
    pub sync_enable_clean_sync_event_upload: Option<bool>,
    pub enable_all_event_upload: Option<bool>,
    pub disable_unknown_event_upload: Option<bool>,
    pub events_db_path: Option<String>,
    pub event_spool_max_events: Option<Integer>,
    pub sync_state_path: Option<String>,
    pub sync_request_tries: Option<Integer>,
    pub enable_bundles: Option<bool>,
    pub enable_transitive_rules: Option<bool>,
    /// Santa's rule dictionaries (`identifier`, `policy`, `rule_type`, ...), read by the rules
    /// crate's JSON reader so that both spell rules the same way.
    pub static_rules: Option<List<toml::Value>>,
    #[serde(rename = "MetricURL")]
    pub metric_url: Option<String>,
    pub metric_format: Option<Spelled<MetricFormat>>,
    pub metric_export_interval: Option<Integer>,
    pub metric_export_timeout: Option<Integer>,
    pub metric_extra_labels: Option<std::collections::BTreeMap<String, String>>,
    pub metric_export_textfile: Option<String>,
}

/// `LockdownScope = { Users = [...], Groups = [...], Cgroups = [...] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    rename_all = "PascalCase",
    expecting = "a table { Users, Groups, Cgroups }"
)]
pub(crate) struct ScopeKeys {
    pub users: List<Id>,
    pub groups: List<Id>,
    pub cgroups: List<String>,
}

/// One `WatchPaths` entry as written.
#[derive(Debug)]
pub(crate) enum WatchEntry {
    /// `"/home"`: a mount mark.
    Path(String),
    /// `{ Path = "/", Scope = "filesystem" }`.
    Table(WatchTable),
}

/// The table form of a `WatchPaths` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct WatchTable {
    pub path: String,
    pub scope: Option<Spelled<WatchScope>>,
}

impl<'de> Deserialize<'de> for WatchEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = WatchEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path string or a table { Path, Scope }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WatchEntry, E> {
                Ok(WatchEntry::Path(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WatchEntry, A::Error> {
                // The derived struct reads the table, so its keys are checked (and tracked in
                // the error's key path) like any other table's.
                WatchTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(WatchEntry::Table)
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// A user or group as written: a number, or a name looked up when validated.
#[derive(Debug)]
pub(crate) enum Id {
    /// `1001`.
    Number(i64),
    /// `"alice"`.
    Name(String),
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor {
            expecting: "a name or a number",
            integer: Some(Id::Number),
            string: Some(|s| Id::Name(s.to_owned())),
        })
    }
}

/// A TOML integer, its bounds applied later (they are per key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(ScalarVisitor {
            expecting: "an integer",
            integer: Some(Integer),
            string: None,
        })
    }
}

/// Reads an integer or a string into `T`, whichever it has a constructor for; anything else is
/// refused as not being what `expecting` says.
struct ScalarVisitor<T> {
    expecting: &'static str,
    integer: Option<fn(i64) -> T>,
    string: Option<fn(&str) -> T>,
}

impl<T> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        match self.integer {
            Some(make) => Ok(make(n)),
            None => Err(E::invalid_type(Unexpected::Signed(n), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        match self.string {
            Some(make) => Ok(make(s)),
            None => Err(E::invalid_type(Unexpected::Str(s), &self)),
        }
    }
}

/// A TOML array, its length bounded later (the file's own size, at most
/// [`crate::CONFIG_FILE_BYTES_MAX`], bounds it until then).
#[derive(Debug)]
pub(crate) struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

/// `EventLogType`'s values; [`crate::validate`] turns one (with `EventLogPath`) into a format
/// and a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogType {
    File,
    Json,
    Syslog,
    Null,
}

/// A setting spelled as one of a few words, matched in any case (`"LOCKDOWN"`, `"lockdown"`), or
/// for `ClientMode` also as Santa's number.
pub(crate) trait Words: Copy + 'static {
    /// Each spelling with the value it means, in the order errors list them.
    const WORDS: &'static [(&'static str, Self)];
    /// Santa's numbers for the same values, where the key takes them.
    const NUMBERS: &'static [(i64, Self)] = &[];
    /// Why a word Santa knows is refused by santad (`None`: Santa does not know it either).
    fn refused_word(_word: &str) -> Option<String> {
        None
    }
    /// Why a number Santa knows is refused by santad.
    fn refused_number(_n: i64) -> Option<String> {
        None
    }
}

/// A value of a [`Words`] type, read from its spelling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spelled<T>(pub T);

impl<'de, T: Words> Deserialize<'de> for Spelled<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WordVisitor<T>(PhantomData<T>);
        impl<T: Words> Visitor<'_> for WordVisitor<T> {
            type Value = Spelled<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let words = T::WORDS.iter().map(|(w, _)| format!("\"{w}\""));
                let numbers = T::NUMBERS.iter().map(|(n, _)| n.to_string());
                let all: Vec<String> = words.chain(numbers).collect();
                match all.split_last() {
                    Some((last, [])) => f.write_str(last),
                    Some((last, rest)) => write!(f, "{} or {last}", rest.join(", ")),
                    None => f.write_str("nothing"),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Spelled<T>, E> {
                if let Some((_, value)) = T::WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(s)) {
                    return Ok(Spelled(*value));
                }
                match T::refused_word(&s.to_ascii_lowercase()) {
                    Some(why) => Err(E::custom(why)),
                    None => Err(E::invalid_value(Unexpected::Str(s), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Spelled<T>, E> {
                if let Some((_, value)) = T::NUMBERS.iter().find(|(m, _)| *m == n) {
                    return Ok(Spelled(*value));
                }
                match T::refused_number(n) {
                    Some(why) => Err(E::custom(why)),
                    None if T::NUMBERS.is_empty() => {
                        Err(E::invalid_type(Unexpected::Signed(n), &self))
                    }
                    None => Err(E::invalid_value(Unexpected::Signed(n), &self)),
                }
            }
        }
        deserializer.deserialize_any(WordVisitor(PhantomData))
    }
}

impl Words for ClientMode {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("MONITOR", ClientMode::Monitor),
        ("LOCKDOWN", ClientMode::Lockdown),
    ];
    const NUMBERS: &'static [(i64, Self)] = &[(1, ClientMode::Monitor), (2, ClientMode::Lockdown)];
    fn refused_number(n: i64) -> Option<String> {
        (n == 3).then(|| {
            "3 (Standalone) is not supported by santad; use 1 (Monitor) or 2 (Lockdown)".to_owned()
        })
    }
}

impl Words for LogType {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("file", LogType::File),
        ("json", LogType::Json),
        ("syslog", LogType::Syslog),
        ("null", LogType::Null),
    ];
    fn refused_word(word: &str) -> Option<String> {
        word.starts_with("protobuf").then(|| {
            format!("\"{word}\" is not supported by santad; use file, json, syslog or null")
        })
    }
}

impl Words for BackstopMode {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("auto", BackstopMode::Auto),
        ("off", BackstopMode::Off),
        ("required", BackstopMode::Required),
    ];
}

impl Words for WatchScope {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("mount", WatchScope::Mount),
        ("filesystem", WatchScope::Filesystem),
    ];
}

impl Words for SyncEncoding {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("deflate", SyncEncoding::Deflate),
        ("gzip", SyncEncoding::Gzip),
        ("none", SyncEncoding::None),
    ];
}

impl Words for MetricFormat {
    const WORDS: &'static [(&'static str, Self)] = &[("rawjson", MetricFormat::RawJson)];
    fn refused_word(word: &str) -> Option<String> {
        matches!(word, "monarchjson" | "proto")
            .then(|| format!("\"{word}\" is not supported by santad; use \"rawjson\""))
    }
}
