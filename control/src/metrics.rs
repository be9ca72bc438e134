//! What santad's flat metrics (`Reply::Metrics`, `engine.cache_hits = 7`) mean, and their
//! Prometheus text exposition (format 0.0.4), shared by `santactl metrics --format prometheus`
//! and santad's node_exporter text file, so both print the same families.
//!
//! [`TABLE`] names, for every key santad emits, the family it belongs to (name, type, help) and
//! the labels it carries: dimensions that santad encodes in its key names
//! (`engine.flushes.rules`, `decisions.deny.binary`) become labels
//! (`santa_cache_flushes_total{reason="rules"}`). A key may end in `.*`, which matches one last
//! name segment, given as the value of the label written `"*"`. A key the table does not know
//! (a newer santad than this santactl) is still exported, as an `untyped` family named after the
//! key ([`lookup`] gives `None`, [`render_prometheus`] falls back), never dropped.
//!
//! Naming follows Prometheus's conventions: every name starts `santa_`, counters end in
//! `_total`, units are in the name and are base units (`_seconds`, `_bytes`), and a key counted
//! in microseconds is scaled to seconds ([`Scale`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A Prometheus metric type (the ones santad's metrics are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until santad restarts).
    Counter,
    /// A level: goes up and down.
    Gauge,
}

impl Kind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// How a key's integer becomes the family's base unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// As it is.
    One,
    /// Microseconds to seconds.
    Micro,
}

/// One metric family: every sample shares its name, type and help.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The Prometheus name, `santa_...`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

/// One row of [`TABLE`]: a key (or `prefix.*`) and where it goes.
#[derive(Debug)]
pub struct KeySpec {
    /// santad's key, or a prefix ending in `.*` that matches one more segment.
    pub key: &'static str,
    /// The family.
    pub family: &'static Family,
    /// Label names and values; a value `"*"` takes the segment `.*` matched.
    pub labels: &'static [(&'static str, &'static str)],
    /// Unit conversion.
    pub scale: Scale,
}

/// A key resolved against the table: its family and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family's name.
    pub name: String,
    /// Counter, gauge, or `None` for a key the table does not know (`untyped`).
    pub kind: Option<Kind>,
    /// The help text.
    pub help: String,
    /// Label names and values, in the table's order.
    pub labels: Vec<(String, String)>,
    /// The value in the family's unit.
    pub value: f64,
}

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, $help:literal;)+) => {
        $(
            #[allow(missing_docs)]
            pub static $id: Family = Family { name: $name, kind: Kind::$kind, help: $help };
        )+
        /// Every family of [`TABLE`].
        pub static FAMILIES: &[&Family] = &[$(&$id),+];
    };
}

families! {
    PREFETCH = "santa_prefetch_total", Counter,
        "Written executables decided before their first exec (the prefetch lane), by what became of them.";
    COMPILERS = "santa_compiler_events_total", Counter,
        "Compiler processes (transitive rules): registrations at their exec, and closes after writing credited to them or not.";
    TRANSITIVE = "santa_transitive_rule_events_total", Counter,
        "Transitive rules: added, compiler outputs that already had a rule, timestamp updates, expiries, errors.";
    DECISIONS = "santa_decisions_total", Counter,
        "Executions logged, by the decision that reached the kernel and its reason.";
    RULES = "santa_rules", Gauge, "Rules in the snapshot being enforced, by rule type.";
    MODE = "santa_mode", Gauge, "The client mode santad enforces (1 for the mode in force).";
    ENGINE_EVENTS = "santa_engine_events_total", Counter,
        "Events (held executions) taken off a queue by a worker.";
    CACHE_LOOKUPS = "santa_cache_lookups_total", Counter,
        "Decision cache lookups by result: hit, miss (evaluated), wait (parked on another worker's evaluation).";
    EVALUATIONS = "santa_evaluations_total", Counter, "File evaluations started.";
    DEFAULT_ANSWERS = "santa_default_answers_total", Counter,
        "Executions answered with the default decision instead of an evaluated one, by reason.";
    PANICS = "santa_panics_total", Counter,
        "Panics caught (bugs; the thread lived on), by where they happened.";
    STEALS = "santa_worker_steals_total", Counter,
        "Events a worker took from another worker's queue.";
    WAKEUPS = "santa_worker_wakeups_total", Counter, "Times an idle worker was woken for new work.";
    DEFERRED = "santa_evaluations_deferred_total", Counter,
        "Evaluations deferred because the file's owner was at its bound of evaluations or bytes in flight.";
    RESTARTS = "santa_evaluation_restarts_total", Counter,
        "Parked events evaluated again because the file changed while they waited.";
    INVALIDATIONS = "santa_cache_invalidations_total", Counter,
        "Single-file decision cache invalidations (the file was written).";
    FLUSHES = "santa_cache_flushes_total", Counter, "Decision cache flushes, by reason.";
    IN_FLIGHT = "santa_executions_in_flight", Gauge,
        "Executions held right now (in the in-flight table, queued or being decided).";
    DEFERRED_NOW = "santa_evaluations_deferred_now", Gauge,
        "Evaluations waiting behind their owner's bound right now.";
    CACHE_ENTRIES = "santa_cache_entries", Gauge, "Live entries in the decision cache.";
    FAN_PERMISSION_EVENTS = "santa_fanotify_permission_events_total", Counter,
        "fanotify permission events read.";
    FAN_LOADER_LOADS = "santa_fanotify_loader_loads_total", Counter,
        "Loads of a dynamic loader answered as part of their exec.";
    FAN_NOTIFICATIONS = "santa_fanotify_notifications_total", Counter,
        "fanotify exec notifications read.";
    FAN_NOTIFICATIONS_DEDUP = "santa_fanotify_notifications_deduplicated_total", Counter,
        "Exec notifications dropped as duplicates of santad's own allows.";
    FAN_CLOSE_WRITES = "santa_fanotify_close_writes_total", Counter,
        "Close-after-write events (cache invalidations).";
    FAN_QUEUE_OVERFLOWS = "santa_fanotify_queue_overflows_total", Counter,
        "FAN_Q_OVERFLOW: the kernel dropped notifications.";
    FAN_READ_ERRORS = "santa_fanotify_read_errors_total", Counter,
        "fanotify reads or event walks that failed.";
    FAN_RESPOND_ERRORS = "santa_fanotify_respond_errors_total", Counter,
        "Responses the kernel refused.";
    FAN_IGNORE_MARKS = "santa_fanotify_ignore_marks_total", Counter,
        "Kernel allow-cache marks added.";
    FAN_NOTIFICATION_IGNORES = "santa_fanotify_notification_ignores_total", Counter,
        "Notification-only ignore marks on files that always ask santad.";
    FAN_IGNORE_MARK_ERRORS = "santa_fanotify_ignore_mark_errors_total", Counter,
        "Kernel allow-cache marks the kernel refused.";
    FAN_IGNORE_MARKS_UNREACHABLE = "santa_fanotify_ignore_marks_unreachable_total", Counter,
        "Kernel allow-cache marks a flush could not reach again.";
    FAN_IGNORE_MARKS_WITHDRAWN = "santa_fanotify_ignore_marks_withdrawn_total", Counter,
        "Kernel allow-cache marks withdrawn right after placing them (the file or the epoch moved).";
    FAN_KERNEL_CACHE_REFUSALS = "santa_fanotify_kernel_cache_refusals_total", Counter,
        "Allows not given to the kernel cache (someone other than root could modify the file).";
    FAN_KERNEL_CACHED_EXECS = "santa_fanotify_kernel_cached_execs_total", Counter,
        "Executions the kernel allow cache answered, logged with the decision that placed the mark.";
    FAN_KERNEL_CACHE_ALERTS = "santa_fanotify_kernel_cache_alerts_total", Counter,
        "Executions the kernel cache answered for a file changed since its decision (alerts).";
    FAN_KERNEL_CACHE_KILLS = "santa_fanotify_kernel_cache_kills_total", Counter,
        "Processes killed after a kernel cache alert (Lockdown).";
    FAN_ALLOWS_WITHDRAWN = "santa_fanotify_allows_withdrawn_total", Counter,
        "Allows withdrawn at the answer: the file was open for writing or its stamp moved.";
    FAN_LEASES_UNSUPPORTED = "santa_fanotify_leases_unsupported_total", Counter,
        "Allows of files root does not own answered without a read lease.";
    FAN_UNASKED_EXECS = "santa_fanotify_unasked_execs_total", Counter,
        "Executions the kernel ran without asking santad (decided after the fact).";
    FAN_UNASKED_KILLS = "santa_fanotify_unasked_kills_total", Counter,
        "Processes killed after an unasked execution was denied.";
    FAN_MALFORMED_RECORDS = "santa_fanotify_malformed_records_total", Counter,
        "Malformed records in an fanotify read buffer.";
    BUNDLE_DROPS = "santa_bundle_drops_total", Counter,
        "Denied paths not handed to the bundle task because its queue was full.";
    FAN_LEASES_LINGERING = "santa_fanotify_leases_lingering", Gauge,
        "Read leases kept after an answer until the exec is past the kernel's write lock.";
    FAN_LEASE_LINGER_OVERFLOWS = "santa_fanotify_lease_linger_overflows_total", Counter,
        "Allows withdrawn because the lingering-lease table was full.";
    FAN_LEASE_LINGER_KILLS = "santa_fanotify_lease_linger_kills_total", Counter,
        "Processes killed because their file changed while its lease lingered.";
    ES_AUTH_EXECS = "santa_es_auth_execs_total", Counter, "Endpoint Security AUTH_EXEC messages taken.";
    ES_NOTIFY_EXECS = "santa_es_notify_execs_total", Counter,
        "Endpoint Security NOTIFY_EXEC messages taken.";
    ES_NOTIFY_DEDUP = "santa_es_notify_execs_deduplicated_total", Counter,
        "NOTIFY_EXEC messages dropped as following santad's own allow.";
    ES_INVALIDATIONS = "santa_es_invalidations_total", Counter,
        "Cached decisions invalidated by close-modified, unlink and rename.";
    ES_UNKNOWN_AUTHS = "santa_es_unknown_auths_total", Counter,
        "AUTH messages of a type santad does not decide, allowed at once.";
    ES_EARLY_AUTHS = "santa_es_early_auths_total", Counter,
        "AUTH messages that arrived before the engine was running.";
    ES_RESPOND_ERRORS = "santa_es_respond_errors_total", Counter, "Answers Endpoint Security refused.";
    ES_CLEAR_CACHE_ERRORS = "santa_es_clear_cache_errors_total", Counter, "es_clear_cache failures.";
    ES_OTHER_CLIENT_AUTHS = "santa_es_other_client_auths_total", Counter,
        "AUTH messages from another Endpoint Security client, allowed at once.";
    LOG_WRITTEN = "santa_log_lines_written_total", Counter, "Decision log lines written.";
    LOG_DROPPED = "santa_log_records_dropped_total", Counter,
        "Decision log records dropped because the log ring was full.";
    LOG_WRITE_ERRORS = "santa_log_write_errors_total", Counter,
        "Decision log lines whose write failed.";
    CONTROL_CONNECTIONS = "santa_control_connections_total", Counter,
        "Control socket connections accepted.";
    CONTROL_REPLIES = "santa_control_replies_total", Counter,
        "Control requests answered with a reply.";
    CONTROL_REJECTED = "santa_control_requests_rejected_total", Counter,
        "Control requests or connections turned away, by reason.";
    CONTROL_WAITING = "santa_control_connections_waiting", Gauge,
        "Control connections waiting for a handler, by peer.";
    CONTROL_SERVING = "santa_control_connections_serving", Gauge,
        "Control connections being served, by peer.";
    UPTIME = "santa_uptime_seconds", Gauge, "Seconds since santad started.";
    START_TIME = "santa_start_time_seconds", Gauge, "When santad started, in seconds since the Unix epoch.";
    CPU = "santa_cpu_seconds_total", Counter, "CPU time santad consumed, by mode.";
    RESIDENT = "santa_resident_memory_bytes", Gauge, "santad's resident set size.";
    VIRTUAL = "santa_virtual_memory_bytes", Gauge, "santad's virtual memory size.";
    SYNCS = "santa_syncs_total", Counter, "Syncs with the sync server, by result.";
    SYNC_PENDING = "santa_sync_events_pending", Gauge, "Events waiting in the spool for upload.";
    SYNC_DROPPED = "santa_sync_events_dropped_total", Counter,
        "Spooled events dropped because the spool was full (oldest first).";
    SYNC_UPLOADED = "santa_sync_events_uploaded_total", Counter,
        "Events the sync server acknowledged.";
    SYNC_COALESCED = "santa_sync_events_coalesced_total", Counter,
        "Repeated executions spooled once (within a minute).";
    SYNC_QUEUE_OVERFLOWS = "santa_sync_event_queue_overflows_total", Counter,
        "Events not spooled because the spool writer's queue was full.";
    SYNC_LAST_SUCCESS = "santa_sync_last_success_timestamp_seconds", Gauge,
        "When the last full sync succeeded, in seconds since the Unix epoch (0: never).";
    EXPORTS = "santa_metric_exports_total", Counter,
        "Metric exports (the node_exporter text file, MetricURL), by target and result.";
    NOTIFY_WATCHERS = "santa_notify_watchers", Gauge,
        "Block watchers (santa-notify agents) connected now.";
    NOTIFY_WATCHES = "santa_notify_watches_total", Counter,
        "Block watch requests, by result: accepted, refused (over a bound).";
    NOTIFY_NOTICES = "santa_notify_notices_total", Counter,
        "Block notices, by result: sent, dropped (a watcher's queue was full), silenced (silent rule or mode).";
    NOTIFY_CLOSED = "santa_notify_watchers_closed_total", Counter,
        "Block watchers closed, by why: closed (hung up or misbehaved), stalled (took nothing for 30 s).";
}

macro_rules! spec {
    ($key:literal, $family:ident) => {
        spec!($key, $family, [])
    };
    ($key:literal, $family:ident, [$(($l:literal, $v:literal)),*]) => {
        KeySpec { key: $key, family: &$family, labels: &[$(($l, $v)),*], scale: Scale::One }
    };
    ($key:literal, $family:ident, [$(($l:literal, $v:literal)),*], $scale:ident) => {
        KeySpec { key: $key, family: &$family, labels: &[$(($l, $v)),*], scale: Scale::$scale }
    };
}

/// Every key santad emits (on Linux and on macOS), and where it goes. A test in santad checks
/// that each key a running santad sends is here.
pub static TABLE: &[KeySpec] = &[
    spec!(
        "decisions.allow.*",
        DECISIONS,
        [("decision", "allow"), ("reason", "*")]
    ),
    spec!(
        "decisions.deny.*",
        DECISIONS,
        [("decision", "deny"), ("reason", "*")]
    ),
    spec!("rules.*", RULES, [("type", "*")]),
    spec!("mode.*", MODE, [("mode", "*")]),
    spec!("engine.events", ENGINE_EVENTS),
    spec!("engine.cache_hits", CACHE_LOOKUPS, [("result", "hit")]),
    spec!("engine.cache_misses", CACHE_LOOKUPS, [("result", "miss")]),
    spec!("engine.cache_waits", CACHE_LOOKUPS, [("result", "wait")]),
    spec!("engine.evaluations", EVALUATIONS),
    spec!("engine.evaluator_panics", PANICS, [("where", "evaluator")]),
    spec!("engine.responder_panics", PANICS, [("where", "responder")]),
    spec!("engine.worker_panics", PANICS, [("where", "worker")]),
    spec!(
        "control.handler_panics",
        PANICS,
        [("where", "control_handler")]
    ),
    spec!(
        "engine.deadline_defaults",
        DEFAULT_ANSWERS,
        [("reason", "deadline")]
    ),
    spec!(
        "engine.queue_full_defaults",
        DEFAULT_ANSWERS,
        [("reason", "queue_full")]
    ),
    spec!(
        "engine.slots_full_defaults",
        DEFAULT_ANSWERS,
        [("reason", "slots_full")]
    ),
    spec!(
        "engine.shutdown_defaults",
        DEFAULT_ANSWERS,
        [("reason", "shutting_down")]
    ),
    spec!(
        "fanotify.stat_failures",
        DEFAULT_ANSWERS,
        [("reason", "stat_failed")]
    ),
    spec!("engine.steals", STEALS),
    spec!("engine.wakeups", WAKEUPS),
    spec!("engine.deferred", DEFERRED),
    spec!("engine.restarts", RESTARTS),
    spec!("engine.invalidations", INVALIDATIONS),
    spec!("engine.flushes.*", FLUSHES, [("reason", "*")]),
    spec!("engine.in_flight", IN_FLIGHT),
    spec!("engine.deferred_now", DEFERRED_NOW),
    spec!("engine.cache_entries", CACHE_ENTRIES),
    spec!("fanotify.permission_events", FAN_PERMISSION_EVENTS),
    spec!("fanotify.loader_loads", FAN_LOADER_LOADS),
    spec!("fanotify.notifications", FAN_NOTIFICATIONS),
    spec!(
        "fanotify.notifications_deduplicated",
        FAN_NOTIFICATIONS_DEDUP
    ),
    spec!("fanotify.close_writes", FAN_CLOSE_WRITES),
    spec!("fanotify.queue_overflows", FAN_QUEUE_OVERFLOWS),
    spec!("fanotify.read_errors", FAN_READ_ERRORS),
    spec!("fanotify.respond_errors", FAN_RESPOND_ERRORS),
    spec!("fanotify.ignore_marks", FAN_IGNORE_MARKS),
    spec!("fanotify.notification_ignores", FAN_NOTIFICATION_IGNORES),
    spec!("fanotify.ignore_mark_errors", FAN_IGNORE_MARK_ERRORS),
    spec!(
        "fanotify.ignore_marks_unreachable",
        FAN_IGNORE_MARKS_UNREACHABLE
    ),
    spec!(
        "fanotify.ignore_marks_withdrawn",
        FAN_IGNORE_MARKS_WITHDRAWN
    ),
    spec!("fanotify.kernel_cache_refusals", FAN_KERNEL_CACHE_REFUSALS),
    spec!("fanotify.kernel_cached_execs", FAN_KERNEL_CACHED_EXECS),
    spec!("fanotify.kernel_cache_alerts", FAN_KERNEL_CACHE_ALERTS),
    spec!("fanotify.kernel_cache_kills", FAN_KERNEL_CACHE_KILLS),
    spec!("fanotify.allows_withdrawn", FAN_ALLOWS_WITHDRAWN),
    spec!("fanotify.leases_unsupported", FAN_LEASES_UNSUPPORTED),
    spec!("fanotify.unasked_execs", FAN_UNASKED_EXECS),
    spec!("fanotify.unasked_kills", FAN_UNASKED_KILLS),
    spec!("fanotify.malformed_records", FAN_MALFORMED_RECORDS),
    spec!("fanotify.bundle_drops", BUNDLE_DROPS),
    spec!("engine.prefetch_queued", PREFETCH, [("result", "queued")]),
    spec!(
        "engine.prefetch_cached",
        PREFETCH,
        [("result", "already_cached")]
    ),
    spec!(
        "engine.prefetch_coalesced",
        PREFETCH,
        [("result", "exec_evaluating")]
    ),
    spec!("engine.prefetch_full", PREFETCH, [("result", "lane_full")]),
    spec!("engine.prefetch_changed", PREFETCH, [("result", "changed")]),
    spec!(
        "engine.prefetch_evaluations",
        PREFETCH,
        [("result", "evaluated")]
    ),
    spec!(
        "fanotify.prefetch_offered",
        PREFETCH,
        [("result", "offered")]
    ),
    spec!(
        "fanotify.prefetch_skipped_large",
        PREFETCH,
        [("result", "skipped_large")]
    ),
    spec!(
        "fanotify.prefetch_skipped_budget",
        PREFETCH,
        [("result", "skipped_budget")]
    ),
    spec!(
        "fanotify.compiler_outputs_dropped",
        PREFETCH,
        [("result", "compiler_output_dropped")]
    ),
    spec!("compilers.registered", COMPILERS, [("event", "registered")]),
    spec!(
        "compilers.refused",
        COMPILERS,
        [("event", "registration_refused")]
    ),
    spec!(
        "compilers.closes_credited",
        COMPILERS,
        [("event", "close_credited")]
    ),
    spec!(
        "compilers.closes_refused",
        COMPILERS,
        [("event", "close_refused")]
    ),
    spec!("transitive.rules_added", TRANSITIVE, [("event", "added")]),
    spec!(
        "transitive.outputs_with_rules",
        TRANSITIVE,
        [("event", "output_had_rule")]
    ),
    spec!(
        "transitive.outputs_known",
        TRANSITIVE,
        [("event", "output_known")]
    ),
    spec!(
        "transitive.outputs_while_off",
        TRANSITIVE,
        [("event", "output_while_off")]
    ),
    spec!(
        "transitive.store_errors",
        TRANSITIVE,
        [("event", "store_error")]
    ),
    spec!("transitive.touches", TRANSITIVE, [("event", "touched")]),
    spec!("transitive.expired", TRANSITIVE, [("event", "expired")]),
    spec!("fanotify.leases_lingering", FAN_LEASES_LINGERING),
    spec!(
        "fanotify.lease_linger_overflows",
        FAN_LEASE_LINGER_OVERFLOWS
    ),
    spec!("fanotify.lease_linger_kills", FAN_LEASE_LINGER_KILLS),
    spec!("es.auth_execs", ES_AUTH_EXECS),
    spec!("es.notify_execs", ES_NOTIFY_EXECS),
    spec!("es.notify_execs_deduplicated", ES_NOTIFY_DEDUP),
    spec!("es.invalidations", ES_INVALIDATIONS),
    spec!("es.unknown_auths", ES_UNKNOWN_AUTHS),
    spec!("es.early_auths", ES_EARLY_AUTHS),
    spec!("es.respond_errors", ES_RESPOND_ERRORS),
    spec!("es.clear_cache_errors", ES_CLEAR_CACHE_ERRORS),
    spec!("es.bundle_drops", BUNDLE_DROPS),
    spec!("es.other_es_client_auths", ES_OTHER_CLIENT_AUTHS),
    spec!("log.written", LOG_WRITTEN),
    spec!("log.dropped", LOG_DROPPED),
    spec!("log.write_errors", LOG_WRITE_ERRORS),
    spec!("control.connections", CONTROL_CONNECTIONS),
    spec!("control.replies", CONTROL_REPLIES),
    spec!(
        "control.refused",
        CONTROL_REJECTED,
        [("reason", "permission_denied")]
    ),
    spec!(
        "control.malformed",
        CONTROL_REJECTED,
        [("reason", "malformed")]
    ),
    spec!(
        "control.too_large",
        CONTROL_REJECTED,
        [("reason", "too_large")]
    ),
    spec!(
        "control.dropped",
        CONTROL_REJECTED,
        [("reason", "peer_dropped")]
    ),
    spec!("control.busy", CONTROL_REJECTED, [("reason", "busy")]),
    spec!(
        "control.uid_limited",
        CONTROL_REJECTED,
        [("reason", "uid_limited")]
    ),
    spec!("control.root_waiting", CONTROL_WAITING, [("peer", "root")]),
    spec!(
        "control.unprivileged_waiting",
        CONTROL_WAITING,
        [("peer", "unprivileged")]
    ),
    spec!(
        "control.unprivileged_serving",
        CONTROL_SERVING,
        [("peer", "unprivileged")]
    ),
    spec!("daemon.uptime_secs", UPTIME),
    spec!("daemon.started_unix", START_TIME),
    spec!("daemon.cpu_user_us", CPU, [("mode", "user")], Micro),
    spec!("daemon.cpu_system_us", CPU, [("mode", "system")], Micro),
    spec!("daemon.resident_bytes", RESIDENT),
    spec!("daemon.virtual_bytes", VIRTUAL),
    spec!("sync.syncs_ok", SYNCS, [("result", "ok")]),
    spec!("sync.syncs_failed", SYNCS, [("result", "failed")]),
    spec!("sync.events_pending", SYNC_PENDING),
    spec!("sync.events_dropped", SYNC_DROPPED),
    spec!("sync.events_uploaded", SYNC_UPLOADED),
    spec!("sync.events_coalesced", SYNC_COALESCED),
    spec!("sync.events_queue_overflows", SYNC_QUEUE_OVERFLOWS),
    spec!("sync.last_successful_sync_unix", SYNC_LAST_SUCCESS),
    spec!(
        "export.textfile_ok",
        EXPORTS,
        [("target", "textfile"), ("result", "ok")]
    ),
    spec!(
        "export.textfile_failed",
        EXPORTS,
        [("target", "textfile"), ("result", "failed")]
    ),
    spec!(
        "export.url_ok",
        EXPORTS,
        [("target", "url"), ("result", "ok")]
    ),
    spec!(
        "export.url_failed",
        EXPORTS,
        [("target", "url"), ("result", "failed")]
    ),
    spec!("notify.watchers", NOTIFY_WATCHERS),
    spec!("notify.accepted", NOTIFY_WATCHES, [("result", "accepted")]),
    spec!("notify.refused", NOTIFY_WATCHES, [("result", "refused")]),
    spec!("notify.sent", NOTIFY_NOTICES, [("result", "sent")]),
    spec!("notify.dropped", NOTIFY_NOTICES, [("result", "dropped")]),
    spec!("notify.silenced", NOTIFY_NOTICES, [("result", "silenced")]),
    spec!("notify.closed", NOTIFY_CLOSED, [("why", "closed")]),
    spec!("notify.closed_stalled", NOTIFY_CLOSED, [("why", "stalled")]),
];

/// The table's row for `key`: an exact key first, else a `prefix.*` whose prefix is all of
/// `key` but one last segment. With the segment `.*` matched (empty for an exact key).
pub fn lookup(key: &str) -> Option<(&'static KeySpec, &str)> {
    if let Some(spec) = TABLE.iter().find(|s| s.key == key) {
        return Some((spec, ""));
    }
    let (prefix, last) = key.rsplit_once('.')?;
    if last.is_empty() {
        return None;
    }
    TABLE
        .iter()
        .find(|s| s.key.strip_suffix(".*") == Some(prefix))
        .map(|s| (s, last))
}

/// `key = value` resolved against the table; a key it does not know becomes an `untyped`
/// family named after it (`santa_` and the key with every character outside `[a-zA-Z0-9_]` as
/// `_`), with a help text that says so.
pub fn sample(key: &str, value: u64) -> Sample {
    match lookup(key) {
        Some((spec, segment)) => Sample {
            name: spec.family.name.to_owned(),
            kind: Some(spec.family.kind),
            help: spec.family.help.to_owned(),
            labels: spec
                .labels
                .iter()
                .map(|(l, v)| {
                    let v = if *v == "*" { segment } else { v };
                    ((*l).to_owned(), v.to_owned())
                })
                .collect(),
            value: match spec.scale {
                Scale::One => value as f64,
                Scale::Micro => value as f64 / 1e6,
            },
        },
        None => {
            let mut name = String::from("santa_");
            name.extend(key.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            }));
            // Never the name of a known family (its TYPE and HELP would then disagree).
            if FAMILIES.iter().any(|f| f.name == name) {
                name.push_str("_unmapped");
            }
            Sample {
                name,
                kind: None,
                help: format!("santad metric {key} (not in this santactl's metric table)"),
                labels: Vec::new(),
                value: value as f64,
            }
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text as the text format wants it: `\` and newline escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers as integers, the rest in Rust's shortest round-trip form.
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Every metric in the Prometheus text exposition format 0.0.4: families sorted by name, each
/// with its `# HELP` and `# TYPE` once, then its samples sorted by labels.
pub fn render_prometheus(metrics: &BTreeMap<String, u64>) -> String {
    let mut families: BTreeMap<String, (Option<Kind>, String, Vec<Sample>)> = BTreeMap::new();
    for (key, value) in metrics {
        let s = sample(key, *value);
        families
            .entry(s.name.clone())
            .or_insert_with(|| (s.kind, s.help.clone(), Vec::new()))
            .2
            .push(s);
    }
    let mut out = String::new();
    for (name, (kind, help, mut samples)) in families {
        samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&help));
        let _ = writeln!(
            out,
            "# TYPE {name} {}",
            kind.map_or("untyped", Kind::as_str)
        );
        for s in samples {
            out.push_str(&name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (l, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{l}=\"{}\"", escape_label_value(v));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(s.value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn every_family_follows_prometheus_naming() {
        for f in FAMILIES {
            assert!(f.name.starts_with("santa_"), "{}", f.name);
            assert!(valid_name(f.name), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "counters and only counters end in _total: {}",
                f.name
            );
            assert!(!f.help.is_empty() && !f.help.contains('\n'), "{}", f.name);
            for unit in ["_ms", "_us", "_msec", "_secs", "_millis"] {
                assert!(!f.name.contains(unit), "base units only: {}", f.name);
            }
        }
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a family declared twice");
    }

    #[test]
    fn every_row_is_unique_and_its_family_is_declared_and_its_labels_agree() {
        let mut labels_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (i, spec) in TABLE.iter().enumerate() {
            assert!(
                TABLE[..i].iter().all(|s| s.key != spec.key),
                "{} twice",
                spec.key
            );
            assert!(
                FAMILIES.iter().any(|f| std::ptr::eq(*f, spec.family)),
                "{}: family not in FAMILIES",
                spec.key
            );
            let wild = spec.key.ends_with(".*");
            assert_eq!(
                wild,
                spec.labels.iter().any(|(_, v)| *v == "*"),
                "{}: a .* key gives its segment to a label, and only such a key",
                spec.key
            );
            let names: Vec<&str> = spec.labels.iter().map(|(l, _)| *l).collect();
            for l in &names {
                assert!(valid_name(l) && !l.starts_with("__"), "{}: {l}", spec.key);
            }
            let known = labels_of.entry(spec.family.name).or_insert(names.clone());
            assert_eq!(
                *known, names,
                "{}: every sample of a family has the same label names",
                spec.key
            );
        }
    }

    #[test]
    fn keys_become_families_with_labels_and_base_units() {
        let s = sample("engine.flushes.operator", 3);
        assert_eq!(s.name, "santa_cache_flushes_total");
        assert_eq!(s.labels, vec![("reason".to_owned(), "operator".to_owned())]);
        assert_eq!(s.value, 3.0);
        let s = sample("decisions.deny.binary", 2);
        assert_eq!(s.name, "santa_decisions_total");
        assert_eq!(
            s.labels,
            vec![
                ("decision".to_owned(), "deny".to_owned()),
                ("reason".to_owned(), "binary".to_owned())
            ]
        );
        let s = sample("daemon.cpu_user_us", 1_500_000);
        assert_eq!((s.name.as_str(), s.value), ("santa_cpu_seconds_total", 1.5));
        assert_eq!(sample("mode.lockdown", 1).labels[0].1, "lockdown");
        // One segment only: a deeper key is not the wildcard's.
        assert!(lookup("engine.flushes.a.b").is_none());
        assert!(lookup("engine.flushes.").is_none());
    }

    #[test]
    fn an_unknown_key_is_exported_untyped_not_dropped() {
        let mut m = BTreeMap::new();
        m.insert("newer.thing-9".to_owned(), 42);
        m.insert("uptime_seconds".to_owned(), 1); // santa_uptime_seconds is a known family
        let text = render_prometheus(&m);
        assert!(
            text.contains("# TYPE santa_newer_thing_9 untyped\n"),
            "{text}"
        );
        assert!(text.contains("\nsanta_newer_thing_9 42\n"), "{text}");
        assert!(text.contains("# HELP santa_newer_thing_9 santad metric newer.thing-9"));
        assert!(text.contains("santa_uptime_seconds_unmapped 1\n"), "{text}");
    }

    #[test]
    fn the_exposition_has_help_and_type_once_per_family_then_sorted_samples() {
        let mut m = BTreeMap::new();
        m.insert("engine.cache_misses".to_owned(), 5);
        m.insert("engine.cache_hits".to_owned(), 7);
        m.insert("engine.cache_entries".to_owned(), 2);
        m.insert("daemon.cpu_system_us".to_owned(), 250);
        let text = render_prometheus(&m);
        let expected = "\
# HELP santa_cache_entries Live entries in the decision cache.
# TYPE santa_cache_entries gauge
santa_cache_entries 2
# HELP santa_cache_lookups_total Decision cache lookups by result: hit, miss (evaluated), wait (parked on another worker's evaluation).
# TYPE santa_cache_lookups_total counter
santa_cache_lookups_total{result=\"hit\"} 7
santa_cache_lookups_total{result=\"miss\"} 5
# HELP santa_cpu_seconds_total CPU time santad consumed, by mode.
# TYPE santa_cpu_seconds_total counter
santa_cpu_seconds_total{mode=\"system\"} 0.00025
";
        assert_eq!(text, expected);
        assert_eq!(render_prometheus(&BTreeMap::new()), "");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("two\nlines"), "two\\nlines");
        let mut m = BTreeMap::new();
        m.insert("rules.we\"ird\\type".to_owned(), 1);
        let text = render_prometheus(&m);
        assert!(
            text.contains("santa_rules{type=\"we\\\"ird\\\\type\"} 1\n"),
            "{text}"
        );
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    /// Every row of the table, a wildcard row with two segments, rendered and checked by
    /// Prometheus's own linter.
    #[test]
    fn promtool_accepts_every_family_of_the_table() {
        let mut m = BTreeMap::new();
        for (i, spec) in TABLE.iter().enumerate() {
            match spec.key.strip_suffix(".*") {
                Some(prefix) => {
                    m.insert(format!("{prefix}.first"), i as u64);
                    m.insert(format!("{prefix}.second"), 0);
                }
                None => {
                    m.insert(spec.key.to_owned(), i as u64 * 1_000_001);
                }
            }
        }
        m.insert("some.key_santactl.does_not-know".to_owned(), 1);
        let text = render_prometheus(&m);
        if let Err(e) = santa_testkit::promtool_check_metrics(&text) {
            panic!("promtool check metrics: {e}\n{text}");
        }
        for f in FAMILIES {
            assert!(text.contains(&format!("# TYPE {} ", f.name)), "{}", f.name);
        }
    }
}
