//! From what the file says ([`Keys`]) to a [`Config`] every value of which is inside its bound:
//! an absent key takes [`Config::default`]'s value; every string is bounded and free of NULs;
//! paths are absolute; regexes compile; user and group names exist; lists are capped; keys that
//! depend on each other agree. One pass, keys of a kind together; the first problem found is the
//! error, and it names the key (with its table and index, as the file spells them) and the bound.

use std::path::PathBuf;

use crate::bounds::*;
use crate::keys::{Id, Integer, Keys, List, LogType, ScopeKeys, WatchEntry};
use crate::{
    Config, LockdownScope, LogDestination, LogFormat, SANTA_EVENT_LOG_PATH, WatchPath, WatchScope,
};

/// A value outside its bound: the key, and what is wrong with what was given.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Replaces the default in `slot` with the checked value when the file gives the key.
fn set<R, T>(
    slot: &mut T,
    value: Option<R>,
    check: impl FnOnce(R) -> Result<T, Invalid>,
) -> Result<(), Invalid> {
    if let Some(value) = value {
        *slot = check(value)?;
    }
    Ok(())
}

/// Each integer key with its bound (the constants in `bounds.rs`, where the reasons are).
type Bound = (&'static str, u64, u64);
const DEADLINE_MS: Bound = ("DeadlineMs", DEADLINE_MS_MIN, DEADLINE_MS_MAX);
const MAX_HASH_BYTES: Bound = ("MaxHashBytes", MAX_HASH_BYTES_MIN, MAX_HASH_BYTES_MAX);
const WORKER_COUNT: Bound = ("WorkerCount", 0, WORKER_COUNT_MAX);
const CACHE_CAPACITY: Bound = ("CacheCapacity", CACHE_CAPACITY_MIN, CACHE_CAPACITY_MAX);
const DENY_CACHE_TTL_MS: Bound = ("DenyCacheTtlMs", 0, DENY_CACHE_TTL_MS_MAX);
const IN_FLIGHT_SLOTS: Bound = ("InFlightSlots", IN_FLIGHT_SLOTS_MIN, IN_FLIGHT_SLOTS_MAX);
const QUEUE_DEPTH: Bound = ("QueueDepth", QUEUE_DEPTH_MIN, QUEUE_DEPTH_MAX);
const EVENT_LOG_RING: Bound = ("EventLogRingSize", EVENT_LOG_RING_MIN, EVENT_LOG_RING_MAX);
const FULL_SYNC_INTERVAL: Bound = (
    "FullSyncInterval",
    FULL_SYNC_INTERVAL_SECS_MIN,
    FULL_SYNC_INTERVAL_SECS_MAX,
);
const SYNC_REQUEST_TRIES: Bound = (
    "SyncRequestTries",
    SYNC_REQUEST_TRIES_MIN,
    SYNC_REQUEST_TRIES_MAX,
);
const METRIC_EXPORT_INTERVAL: Bound = (
    "MetricExportInterval",
    METRIC_EXPORT_INTERVAL_SECS_MIN,
    METRIC_EXPORT_INTERVAL_SECS_MAX,
);
const METRIC_EXPORT_TIMEOUT: Bound = (
    "MetricExportTimeout",
    METRIC_EXPORT_TIMEOUT_SECS_MIN,
    METRIC_EXPORT_TIMEOUT_SECS_MAX,
);
const PREFETCH_QUEUE_DEPTH: Bound = (
    "PrefetchQueueDepth",
    PREFETCH_QUEUE_DEPTH_MIN,
    PREFETCH_QUEUE_DEPTH_MAX,
);
const PREFETCH_BYTES_PER_SECOND: Bound =
    ("PrefetchBytesPerSecond", 0, PREFETCH_BYTES_PER_SECOND_MAX);
const PREFETCH_FILE_BYTES_MAX: Bound = ("PrefetchFileBytesMax", 0, PREFETCH_FILE_BYTES_MAX_MAX);
const EVENT_SPOOL_MAX_EVENTS: Bound = (
    "EventSpoolMaxEvents",
    EVENT_SPOOL_MAX_EVENTS_MIN,
    EVENT_SPOOL_MAX_EVENTS_MAX,
);

/// Checks every key and applies the defaults.
pub(crate) fn validate(keys: Keys) -> Result<Config, Invalid> {
    // Destructured whole: a key added to the schema and not checked here does not compile.
    let Keys {
        client_mode,
        fail_closed,
        allowed_path_regex,
        blocked_path_regex,
        enable_bad_signature_protection,
        event_log_type,
        event_log_path,
        event_detail_url,
        event_detail_text,
        unknown_block_message,
        banned_block_message,
        enable_silent_mode,
        enable_silent_tty_mode,
        machine_id,
        enable_machine_id_decoration,
        watch_paths,
        ignore_mounts,
        lockdown_scope,
        backstop,
        memfd_noexec,
        deadline_ms,
        max_hash_bytes,
        worker_count,
        cache_capacity,
        deny_cache_ttl_ms,
        in_flight_slots,
        queue_depth,
        event_log_ring_size,
        rules_db_path,
        control_socket_path,
        log_exec_notifications,
        prefetch_new_executables,
        prefetch_queue_depth,
        prefetch_bytes_per_second,
        prefetch_file_bytes_max,
        ignore_other_endpoint_security_clients,
        sync_base_url,
        machine_owner,
        full_sync_interval,
        sync_extra_headers,
        sync_client_content_encoding,
        server_auth_roots_file,
        client_auth_certificate_file,
        client_auth_key_file,
        sync_enable_clean_sync_event_upload,
        enable_all_event_upload,
        disable_unknown_event_upload,
        events_db_path,
        event_spool_max_events,
        sync_state_path,
        sync_request_tries,
        enable_bundles,
        enable_transitive_rules,
        static_rules,
        metric_url,
        metric_format,
        metric_export_interval,
        metric_export_timeout,
        metric_extra_labels,
        metric_export_textfile,
    } = keys;
    let mut c = Config::default();
    set(&mut c.client_mode, client_mode, |m| Ok(m.0))?;
    set(&mut c.backstop, backstop, |b| Ok(b.0))?;
    for (slot, value) in [
        (&mut c.fail_closed, fail_closed),
        (
            &mut c.enable_bad_signature_protection,
            enable_bad_signature_protection,
        ),
        (
            &mut c.enable_machine_id_decoration,
            enable_machine_id_decoration,
        ),
        (&mut c.memfd_noexec, memfd_noexec),
        (&mut c.enable_silent_mode, enable_silent_mode),
        (&mut c.enable_silent_tty_mode, enable_silent_tty_mode),
        (&mut c.log_exec_notifications, log_exec_notifications),
        (&mut c.prefetch_new_executables, prefetch_new_executables),
        (
            &mut c.ignore_other_endpoint_security_clients,
            ignore_other_endpoint_security_clients,
        ),
        (
            &mut c.sync.enable_clean_sync_event_upload,
            sync_enable_clean_sync_event_upload,
        ),
        (&mut c.sync.enable_all_event_upload, enable_all_event_upload),
        (&mut c.enable_bundles, enable_bundles),
        (&mut c.enable_transitive_rules, enable_transitive_rules),
        (
            &mut c.sync.disable_unknown_event_upload,
            disable_unknown_event_upload,
        ),
    ] {
        set(slot, value, Ok)?;
    }
    for (slot, value, key) in [
        (
            &mut c.allowed_path_regex,
            allowed_path_regex,
            "AllowedPathRegex",
        ),
        (
            &mut c.blocked_path_regex,
            blocked_path_regex,
            "BlockedPathRegex",
        ),
    ] {
        set(slot, value, regex(key))?;
    }
    // Neither key: the embedded default (syslog-style lines on stdout).
    if event_log_type.is_some() || event_log_path.is_some() {
        let log_type = event_log_type.map(|t| t.0);
        (c.event_log_format, c.event_log_destination) =
            log_output(log_type, event_log_path, c.event_log_format)?;
    }
    for (slot, value, key) in [
        (&mut c.event_detail_url, event_detail_url, "EventDetailURL"),
        (
            &mut c.event_detail_text,
            event_detail_text,
            "EventDetailText",
        ),
        (
            &mut c.unknown_block_message,
            unknown_block_message,
            "UnknownBlockMessage",
        ),
        (
            &mut c.banned_block_message,
            banned_block_message,
            "BannedBlockMessage",
        ),
        (&mut c.machine_id, machine_id, "MachineID"),
        (&mut c.sync.base_url, sync_base_url, "SyncBaseURL"),
        (&mut c.sync.machine_owner, machine_owner, "MachineOwner"),
    ] {
        set(slot, value, optional_text(key))?;
    }
    // Santa's configurations spell "no URL" as "null".
    c.event_detail_url = c.event_detail_url.filter(|url| url != "null");
    set(&mut c.watch_paths, watch_paths, watch_list)?;
    set(&mut c.static_rules, static_rules, static_rule_list)?;
    let mounts = |list| path_list("IgnoreMounts", list, SCOPE_ENTRIES_MAX);
    set(&mut c.ignore_mounts, ignore_mounts, mounts)?;
    set(&mut c.lockdown_scope, lockdown_scope, |s| {
        scope(s).map(Some)
    })?;
    for (slot, value, bound) in [
        (&mut c.deadline_ms, deadline_ms, DEADLINE_MS),
        (&mut c.max_hash_bytes, max_hash_bytes, MAX_HASH_BYTES),
        (&mut c.worker_count, worker_count, WORKER_COUNT),
        (&mut c.cache_capacity, cache_capacity, CACHE_CAPACITY),
        (
            &mut c.deny_cache_ttl_ms,
            deny_cache_ttl_ms,
            DENY_CACHE_TTL_MS,
        ),
        (&mut c.in_flight_slots, in_flight_slots, IN_FLIGHT_SLOTS),
        (&mut c.queue_depth, queue_depth, QUEUE_DEPTH),
        (
            &mut c.prefetch_queue_depth,
            prefetch_queue_depth,
            PREFETCH_QUEUE_DEPTH,
        ),
        (
            &mut c.prefetch_bytes_per_second,
            prefetch_bytes_per_second,
            PREFETCH_BYTES_PER_SECOND,
        ),
        (
            &mut c.prefetch_file_bytes_max,
            prefetch_file_bytes_max,
            PREFETCH_FILE_BYTES_MAX,
        ),
        (
            &mut c.event_log_ring_size,
            event_log_ring_size,
            EVENT_LOG_RING,
        ),
        (
            &mut c.sync.full_sync_interval_secs,
            full_sync_interval,
            FULL_SYNC_INTERVAL,
        ),
        (
            &mut c.sync.event_spool_max_events,
            event_spool_max_events,
            EVENT_SPOOL_MAX_EVENTS,
        ),
        (
            &mut c.sync.request_tries,
            sync_request_tries,
            SYNC_REQUEST_TRIES,
        ),
        (
            &mut c.metrics.export_interval_secs,
            metric_export_interval,
            METRIC_EXPORT_INTERVAL,
        ),
        (
            &mut c.metrics.export_timeout_secs,
            metric_export_timeout,
            METRIC_EXPORT_TIMEOUT,
        ),
    ] {
        set(slot, value, bounded(bound))?;
    }
    for (slot, value, key) in [
        (&mut c.rules_db_path, rules_db_path, "RulesDbPath"),
        (&mut c.sync.events_db_path, events_db_path, "EventsDbPath"),
        (
            &mut c.sync.sync_state_path,
            sync_state_path,
            "SyncStatePath",
        ),
    ] {
        set(slot, value, absolute_path(key))?;
    }
    for (slot, value, key) in [
        (
            &mut c.sync.server_auth_roots_file,
            server_auth_roots_file,
            "ServerAuthRootsFile",
        ),
        (
            &mut c.sync.client_auth_certificate_file,
            client_auth_certificate_file,
            "ClientAuthCertificateFile",
        ),
        (
            &mut c.sync.client_auth_key_file,
            client_auth_key_file,
            "ClientAuthKeyFile",
        ),
    ] {
        set(slot, value, |p| absolute_path(key)(p).map(Some))?;
    }
    set(
        &mut c.sync.content_encoding,
        sync_client_content_encoding,
        |e| Ok(e.0),
    )?;
    set(&mut c.sync.extra_headers, sync_extra_headers, headers)?;
    if c.sync.client_auth_certificate_file.is_some() != c.sync.client_auth_key_file.is_some() {
        return Err(invalid(
            "ClientAuthCertificateFile",
            "ClientAuthCertificateFile and ClientAuthKeyFile go together: give both or neither",
        ));
    }
    set(&mut c.metrics.url, metric_url, metric_url_check)?;
    set(&mut c.metrics.format, metric_format, |f| Ok(Some(f.0)))?;
    if c.metrics.url.is_some() && c.metrics.format.is_none() {
        return Err(invalid(
            "MetricFormat",
            "MetricURL is set: give MetricFormat = \"rawjson\" (Santa exports nothing without it)",
        ));
    }
    set(&mut c.metrics.extra_labels, metric_extra_labels, labels)?;
    set(&mut c.metrics.textfile, metric_export_textfile, |p| {
        textfile("MetricExportTextfile")(p).map(Some)
    })?;
    let socket = socket_path("ControlSocketPath");
    set(&mut c.control_socket_path, control_socket_path, socket)?;
    if c.queue_depth > c.in_flight_slots {
        return Err(invalid(
            "QueueDepth",
            format!(
                "{} exceeds InFlightSlots ({}): every queued event holds a slot",
                c.queue_depth, c.in_flight_slots
            ),
        ));
    }
    Ok(c)
}

// The checks below are curried: `absolute_path(key)` is the check of that key's value, so that
// `validate` names each key once, beside the field it sets, and keys of a kind share a table.

fn bounded((key, min, max): Bound) -> impl FnOnce(Integer) -> Result<u64, Invalid> {
    move |Integer(n)| match u64::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(key, format!("{n} is outside {min}..={max}"))),
    }
}

/// Every string value passes here: a bounded length, and no NUL (which would cut a path or a
/// message short where it reaches C).
fn text(key: &str) -> impl FnOnce(String) -> Result<String, Invalid> {
    move |s| {
        if s.len() > STRING_BYTES_MAX {
            return Err(invalid(
                key,
                format!("longer than {STRING_BYTES_MAX} bytes"),
            ));
        }
        if s.contains('\0') {
            return Err(invalid(key, "contains a NUL character"));
        }
        Ok(s)
    }
}

/// A text whose empty value means none.
fn optional_text(key: &str) -> impl FnOnce(String) -> Result<Option<String>, Invalid> {
    move |s| {
        let s = text(key)(s)?;
        Ok((!s.is_empty()).then_some(s))
    }
}

/// `SyncExtraHeaders`: each name and value a bounded text (the sync client checks that they
/// are valid HTTP and drops the headers it sets itself).
fn headers(
    table: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Invalid> {
    if table.len() > SYNC_EXTRA_HEADERS_MAX {
        return Err(invalid(
            "SyncExtraHeaders",
            format!("more than {SYNC_EXTRA_HEADERS_MAX} headers"),
        ));
    }
    table
        .into_iter()
        .map(|(name, value)| {
            let key = format!("SyncExtraHeaders.{name}");
            Ok((text(&key)(name)?, text(&key)(value)?))
        })
        .collect()
}

/// `MetricURL`: http or https (Santa's writers; its `file` scheme is refused: the text file is
/// `MetricExportTextfile`), with a host, no whitespace or control characters. The HTTP client
/// parses it again when the export starts.
fn metric_url_check(s: String) -> Result<Option<String>, Invalid> {
    let key = "MetricURL";
    let Some(url) = optional_text(key)(s)? else {
        return Ok(None);
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(key, "contains whitespace or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://") {
        rest
    } else if lower.starts_with("file:") {
        return Err(invalid(
            key,
            "file URLs are not supported by santad; use MetricExportTextfile for a file",
        ));
    } else {
        return Err(invalid(
            key,
            format!("`{url}`: the scheme must be http or https"),
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid(key, format!("`{url}` has no host")));
    }
    Ok(Some(url))
}

/// `MetricExtraLabels`: each name a non-empty bounded text, each value a bounded text (empty:
/// remove that root label, as in Santa).
fn labels(
    table: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Invalid> {
    if table.len() > METRIC_EXTRA_LABELS_MAX {
        return Err(invalid(
            "MetricExtraLabels",
            format!("more than {METRIC_EXTRA_LABELS_MAX} labels"),
        ));
    }
    table
        .into_iter()
        .map(|(name, value)| {
            let key = format!("MetricExtraLabels.{name}");
            if name.is_empty() {
                return Err(invalid("MetricExtraLabels", "a label with an empty name"));
            }
            Ok((text(&key)(name)?, text(&key)(value)?))
        })
        .collect()
}

/// `MetricExportTextfile`: an absolute path whose file name ends in `.prom` (node_exporter's
/// textfile collector reads only those) and has no `..` or `.` component; whether its directory
/// is safe to write is checked at each write, where it counts.
fn textfile(key: &str) -> impl FnOnce(String) -> Result<PathBuf, Invalid> {
    move |s| {
        let path = absolute_path(key)(s)?;
        if path.components().any(|c| {
            matches!(
                c,
                std::path::Component::ParentDir | std::path::Component::CurDir
            )
        }) || path.as_os_str().as_encoded_bytes().ends_with(b"/")
        {
            return Err(invalid(
                key,
                format!("`{}` must name a file, with no `.` or `..`", path.display()),
            ));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name {
            Some(n) if n.len() > ".prom".len() && n.ends_with(".prom") => Ok(path),
            _ => Err(invalid(
                key,
                format!(
                    "`{}`: the file name must end in .prom (node_exporter reads only *.prom)",
                    path.display()
                ),
            )),
        }
    }
}

fn absolute_path(key: &str) -> impl FnOnce(String) -> Result<PathBuf, Invalid> {
    move |s| {
        let s = text(key)(s)?;
        if !s.starts_with('/') {
            return Err(invalid(key, format!("`{s}` is not an absolute path")));
        }
        Ok(PathBuf::from(s))
    }
}

fn socket_path(key: &str) -> impl FnOnce(String) -> Result<PathBuf, Invalid> {
    move |s| {
        let path = absolute_path(key)(s)?;
        if path.as_os_str().len() > SOCKET_PATH_BYTES_MAX {
            return Err(invalid(
                key,
                format!("longer than {SOCKET_PATH_BYTES_MAX} bytes (sun_path)"),
            ));
        }
        Ok(path)
    }
}

/// A regex is kept as its text (the rules crate compiles it where it applies it); checked here so
/// that a bad one is a config error, not a policy that fails to build at SIGHUP.
fn regex(key: &str) -> impl FnOnce(String) -> Result<Option<String>, Invalid> {
    move |s| {
        let Some(s) = optional_text(key)(s)? else {
            return Ok(None);
        };
        regex::Regex::new(&s)
            .map_err(|e| invalid(key, format!("invalid regular expression: {e}")))?;
        Ok(Some(s))
    }
}

/// A list's items with their keys (`Key[0]`, `Key[1]`, ...), at most `max` of them.
fn items<T>(key: &str, List(items): List<T>, max: usize) -> Result<Vec<(String, T)>, Invalid> {
    if items.len() > max {
        return Err(invalid(key, format!("more than {max} entries")));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| (format!("{key}[{i}]"), item))
        .collect())
}

fn path_list(key: &str, list: List<String>, max: usize) -> Result<Vec<PathBuf>, Invalid> {
    items(key, list, max)?
        .into_iter()
        .map(|(item_key, s)| absolute_path(&item_key)(s))
        .collect()
}

fn watch_list(list: List<WatchEntry>) -> Result<Vec<WatchPath>, Invalid> {
    let key = "WatchPaths";
    if list.0.is_empty() {
        return Err(invalid(
            key,
            "must name at least one path (santad would watch nothing)",
        ));
    }
    items(key, list, WATCH_PATHS_MAX)?
        .into_iter()
        .map(|(item_key, entry)| match entry {
            WatchEntry::Path(s) => Ok(WatchPath {
                path: absolute_path(&item_key)(s)?,
                scope: WatchScope::Mount,
            }),
            WatchEntry::Table(t) => Ok(WatchPath {
                path: absolute_path(&format!("{item_key}.Path"))(t.path)?,
                scope: t.scope.map_or(WatchScope::Mount, |s| s.0),
            }),
        })
        .collect()
}

/// `StaticRules`: each entry a table of Santa's rule keys, checked as `santactl rule --import`
/// checks a rule (policy REMOVE refused: a static list has nothing to remove from).
fn static_rule_list(list: List<toml::Value>) -> Result<Vec<santa_rules::Rule>, Invalid> {
    items("StaticRules", list, STATIC_RULES_MAX)?
        .into_iter()
        .enumerate()
        .map(|(i, (item_key, entry))| {
            if !entry.is_table() {
                return Err(invalid(&item_key, "expected a table of rule keys"));
            }
            let json = serde_json::to_value(&entry)
                .map_err(|e| invalid(&item_key, format!("unreadable rule: {e}")))?;
            santa_rules::parse_rule_object(i, &json).map_err(|e| {
                let message = match e {
                    santa_rules::JsonError::InvalidRule {
                        identifier: Some(id),
                        problem,
                        ..
                    } => format!("{id:?}: {problem}"),
                    santa_rules::JsonError::InvalidRule { problem, .. } => problem,
                    santa_rules::JsonError::BadIdentifier { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                invalid(&item_key, message)
            })
        })
        .collect()
}

fn scope(keys: ScopeKeys) -> Result<LockdownScope, Invalid> {
    let key = "LockdownScope";
    let cgroups_key = "LockdownScope.Cgroups";
    let scope = LockdownScope {
        users: ids("LockdownScope.Users", keys.users, IdKind::User)?,
        groups: ids("LockdownScope.Groups", keys.groups, IdKind::Group)?,
        cgroups: path_list(cgroups_key, keys.cgroups, SCOPE_ENTRIES_MAX)?,
    };
    if scope.cgroups.len() > SCOPE_CGROUPS_MAX {
        return Err(invalid(
            cgroups_key,
            format!("more than {SCOPE_CGROUPS_MAX} cgroups"),
        ));
    }
    if scope.users.is_empty() && scope.groups.is_empty() && scope.cgroups.is_empty() {
        return Err(invalid(
            key,
            "names nobody: give Users, Groups or Cgroups (leave LockdownScope out for everyone)",
        ));
    }
    Ok(scope)
}

/// Which database a name is looked up in.
#[derive(Debug, Clone, Copy)]
enum IdKind {
    User,
    Group,
}

/// Users or groups: numbers, or names looked up now (a name that does not exist is an error: a
/// scope that silently covers nobody would leave its users in Monitor). Duplicates are dropped.
fn ids(key: &str, list: List<Id>, kind: IdKind) -> Result<Vec<u32>, Invalid> {
    let mut out = Vec::new();
    for (item_key, item) in items(key, list, SCOPE_ENTRIES_MAX)? {
        let id = match item {
            // u32::MAX is (uid_t)-1, "no id" to the kernel's set*id calls.
            Id::Number(n) => u32::try_from(n)
                .ok()
                .filter(|&n| n != u32::MAX)
                .ok_or_else(|| invalid(&item_key, format!("{n} is not a valid id")))?,
            Id::Name(name) => {
                let name = text(&item_key)(name)?;
                lookup_id(&name, kind).ok_or_else(|| {
                    let what = match kind {
                        IdKind::User => "user",
                        IdKind::Group => "group",
                    };
                    invalid(&item_key, format!("no {what} named \"{name}\""))
                })?
            }
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// A user's uid or a group's gid by name (getpwnam_r / getgrnam_r).
fn lookup_id(name: &str, kind: IdKind) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    match kind {
        // SAFETY: getpwnam_r has the signature `lookup_entry` requires, for `passwd`.
        IdKind::User => unsafe { lookup_entry(&cname, libc::getpwnam_r, |p| p.pw_uid) },
        // SAFETY: getgrnam_r has the signature `lookup_entry` requires, for `group`.
        IdKind::Group => unsafe { lookup_entry(&cname, libc::getgrnam_r, |g| g.gr_gid) },
    }
}

/// The signature shared by getpwnam_r and getgrnam_r.
type NameLookup<T> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut T,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut T,
) -> libc::c_int;

/// Runs one reentrant name lookup into a local entry and a 16 KiB string buffer.
///
/// # Safety
/// `lookup` must behave as getpwnam_r / getgrnam_r do: on a zero return with a non-null result
/// it has written a whole `T` to its second argument (strings pointing into the buffer); it
/// writes nothing beyond the buffer's given length.
unsafe fn lookup_entry<T>(
    name: &std::ffi::CStr,
    lookup: NameLookup<T>,
    id: impl FnOnce(&T) -> u32,
) -> Option<u32> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut entry = std::mem::MaybeUninit::<T>::uninit();
    let mut result: *mut T = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf`'s length is passed with it.
    let rc = unsafe {
        lookup(
            name.as_ptr(),
            entry.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: a zero return with a non-null result means `entry` was written whole (the
    // function's contract); only its numeric id is read, while `buf` is still alive.
    Some(id(unsafe { entry.assume_init_ref() }))
}

/// `EventLogType` with `EventLogPath`, when at least one is given (`"null"` keeps the default
/// format, which then formats nothing).
fn log_output(
    log_type: Option<LogType>,
    path: Option<String>,
    default_format: LogFormat,
) -> Result<(LogFormat, LogDestination), Invalid> {
    let path = match path {
        Some(s) => {
            let key = "EventLogPath";
            let s = text(key)(s)?;
            if s != "-" && !s.starts_with('/') {
                return Err(invalid(
                    key,
                    format!("`{s}` is neither an absolute path nor \"-\" (stdout)"),
                ));
            }
            Some(s)
        }
        None => None,
    };
    let file_destination = || match path.as_deref() {
        Some("-") => LogDestination::Stdout,
        Some(p) => LogDestination::File(PathBuf::from(p)),
        None => LogDestination::File(PathBuf::from(SANTA_EVENT_LOG_PATH)),
    };
    let key_value = |timestamp_prefix| LogFormat::KeyValue { timestamp_prefix };
    Ok(match log_type {
        // A path with no type only makes sense for a file log.
        None | Some(LogType::File) => (key_value(true), file_destination()),
        Some(LogType::Json) => (LogFormat::Json, file_destination()),
        Some(LogType::Syslog) => (key_value(false), LogDestination::Stdout),
        Some(LogType::Null) => (default_format, LogDestination::Null),
    })
}
