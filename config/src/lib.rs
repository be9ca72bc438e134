//! santad's configuration: a TOML file with Santa's key names where Santa has the setting
//! (`ClientMode`, `FailClosed`, `AllowedPathRegex`, ...; see Santa's `SNTConfigurator`), plus ours
//! for what only this daemon has (`WatchPaths`, `DeadlineMs`, `MaxHashBytes`, ...).
//!
//! Where it comes from ([`load`]): `santad --config FILE`; else `/etc/santa/santad.toml` when it
//! exists; else the embedded defaults ([`Config::default`]) — Monitor mode, every filesystem
//! watched, log to stdout.
//!
//! How a file becomes a [`Config`] ([`from_toml_str`]):
//! 1. the bytes, at most [`CONFIG_FILE_BYTES_MAX`], are parsed as TOML (a syntax error names the
//!    line and column);
//! 2. serde deserializes the document into the schema in `keys.rs`: structs with
//!    `deny_unknown_fields` and Santa's key names, each key optional, each value of the right
//!    type; `serde_path_to_error` keeps the key path (`WatchPaths[1].Scope`) for the error;
//! 3. `validate.rs` applies every bound (the constants in `bounds.rs`, each with its reason),
//!    compiles the regexes, resolves user and group names, checks keys against each other, and
//!    fills absent keys from [`Config::default`], the one place the defaults are.
//!
//! Every key is checked: an unknown key (with the nearest known one suggested), a wrong type or a
//! value out of its bound is a [`ConfigError`] that names the key and the file; nothing falls
//! back silently.

use std::io;
use std::path::{Path, PathBuf};

mod bounds;
mod error;
mod keys;
mod validate;

pub use bounds::*;
pub use error::ConfigError;

/// Where santad looks for its config when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/santa/santad.toml";

/// Santa's default file log path, used when `EventLogType = "file"` or `"json"` has no path.
pub const SANTA_EVENT_LOG_PATH: &str = "/var/db/santa/santa.log";

/// Santa's client mode: defined once, by the rules crate that applies it.
pub use santa_rules::ClientMode;

/// Which mark covers a watch path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchScope {
    /// The mount the path is on.
    Mount,
    /// The whole filesystem, through every mount.
    Filesystem,
}

/// `Backstop`: whether santad loads its BPF exec backstop (see `src/linux/backstop.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackstopMode {
    /// Load it where the kernel allows; without it, say so and run fanotify-only. Default.
    Auto,
    /// Never load it.
    Off,
    /// Refuse to start without it.
    Required,
}

/// `LockdownScope`: who Lockdown applies to. Everyone else gets Monitor's answers (block rules
/// still block; unknown files run and are logged). A process is in scope when its real user,
/// real group or one of its supplementary groups is listed, or it runs in one of the cgroups (or
/// below one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockdownScope {
    /// `Users`: names or numeric uids.
    pub users: Vec<u32>,
    /// `Groups`: names or numeric gids (the process's real or a supplementary group).
    pub groups: Vec<u32>,
    /// `Cgroups`: cgroup v2 paths, from the hierarchy's root (`/user.slice`).
    pub cgroups: Vec<PathBuf>,
}

/// One `WatchPaths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPath {
    /// Absolute path on the mount or filesystem.
    pub path: PathBuf,
    /// Mark kind.
    pub scope: WatchScope,
}

/// `SyncClientContentEncoding`: how sync request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncEncoding {
    /// zlib with `Content-Encoding: deflate` (Santa's default).
    #[default]
    Deflate,
    /// gzip.
    Gzip,
    /// Uncompressed.
    None,
}

/// `MetricFormat`: the body `MetricURL` receives. Santa also has `monarchjson` and `proto`,
/// which santad refuses (a config error naming the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricFormat {
    /// Santa's `rawjson`: `{"root_labels": {...}, "metrics": {name: {type, description,
    /// fields}}}` (`SNTMetricRawJSONFormat`).
    #[default]
    RawJson,
}

/// The metric exports: Santa's `MetricURL` (a POST of every metric each
/// `MetricExportInterval`) and ours, a Prometheus text file for node_exporter's textfile
/// collector. Neither set, santad exports nothing (santactl metrics still answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSettings {
    /// `MetricURL`: where the metrics are POSTed (http or https, as Santa allows).
    pub url: Option<String>,
    /// `MetricFormat`: required with `MetricURL` (Santa exports nothing without it).
    pub format: Option<MetricFormat>,
    /// `MetricExportInterval`, seconds between exports (Santa's default 30); the text file
    /// is written on the same interval.
    pub export_interval_secs: u64,
    /// `MetricExportTimeout`, seconds one POST may take, connect to answer (Santa's default 30).
    pub export_timeout_secs: u64,
    /// `MetricExtraLabels`: root labels added to (or, with an empty value, removed from) the
    /// `MetricURL` export's `root_labels`, as Santa's `RegisterHostnameAndUsernameLabels` does.
    pub extra_labels: Vec<(String, String)>,
    /// `MetricExportTextfile` (ours): a `*.prom` file santad rewrites atomically each interval,
    /// mode 0644, in a directory only root can write.
    pub textfile: Option<PathBuf>,
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            url: None,
            format: None,
            export_interval_secs: METRIC_EXPORT_INTERVAL_SECS_DEFAULT,
            export_timeout_secs: METRIC_EXPORT_TIMEOUT_SECS_DEFAULT,
            extra_labels: Vec::new(),
            textfile: None,
        }
    }
}

impl MetricSettings {
    /// Whether anything is exported.
    pub fn enabled(&self) -> bool {
        self.url.is_some() || self.textfile.is_some()
    }
}

/// The sync server and the event spool (Santa's sync keys, and ours for the spool's files).
/// With no `SyncBaseURL`, santad never syncs, and spools nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// `SyncBaseURL`: https, or http to loopback only (checked when the client starts).
    pub base_url: Option<String>,
    /// `MachineOwner`: preflight's `primary_user`.
    pub machine_owner: Option<String>,
    /// `FullSyncInterval`, seconds (Santa's default 600, at least 60). A server's
    /// `full_sync_interval` replaces it.
    pub full_sync_interval_secs: u64,
    /// `SyncExtraHeaders`: a table of header names to values, sent with every request.
    pub extra_headers: Vec<(String, String)>,
    /// `SyncClientContentEncoding`: `"deflate"` (default), `"gzip"` or `"none"`.
    pub content_encoding: SyncEncoding,
    /// `ServerAuthRootsFile`: PEM roots trusted for the server instead of the system's.
    pub server_auth_roots_file: Option<PathBuf>,
    /// `ClientAuthCertificateFile`: PEM client certificate chain for mTLS (Santa's is a
    /// PKCS#12 file; here PEM, with the key in `ClientAuthKeyFile`).
    pub client_auth_certificate_file: Option<PathBuf>,
    /// `ClientAuthKeyFile` (ours): the client certificate's PEM private key.
    pub client_auth_key_file: Option<PathBuf>,
    /// `SyncEnableCleanSyncEventUpload`: upload events during a clean sync too. Default false.
    pub enable_clean_sync_event_upload: bool,
    /// `EnableAllEventUpload`: spool and upload every decision, not only blocks and unknowns.
    pub enable_all_event_upload: bool,
    /// `DisableUnknownEventUpload`: do not spool allows of unknown files (Monitor mode).
    pub disable_unknown_event_upload: bool,
    /// `EventsDbPath` (ours): the spool's SQLite file. Default `/var/db/santa/events.db`.
    pub events_db_path: PathBuf,
    /// `EventSpoolMaxEvents` (ours): events kept for upload; beyond it the oldest go first.
    pub event_spool_max_events: u64,
    /// `SyncStatePath` (ours): what the server last set (mode, regexes, ...) and when the last
    /// sync succeeded, kept across restarts. Default `/var/db/santa/sync-state.json`.
    pub sync_state_path: PathBuf,
    /// `SyncRequestTries` (ours): tries per sync request, with Santa's backoff (4, 8, 16, 32 s)
    /// between them. Default 5, Santa's.
    pub request_tries: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            base_url: None,
            machine_owner: None,
            full_sync_interval_secs: FULL_SYNC_INTERVAL_SECS_DEFAULT,
            extra_headers: Vec::new(),
            content_encoding: SyncEncoding::Deflate,
            server_auth_roots_file: None,
            client_auth_certificate_file: None,
            client_auth_key_file: None,
            enable_clean_sync_event_upload: false,
            enable_all_event_upload: false,
            disable_unknown_event_upload: false,
            events_db_path: PathBuf::from("/var/db/santa/events.db"),
            event_spool_max_events: EVENT_SPOOL_MAX_EVENTS_DEFAULT,
            sync_state_path: PathBuf::from("/var/db/santa/sync-state.json"),
            request_tries: SYNC_REQUEST_TRIES_DEFAULT,
        }
    }
}

/// The decision log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Santa's `key=value|…` lines; `timestamp_prefix` adds `[2024-01-01T00:00:00.000Z] I santad: `
    /// (Santa prefixes file logs, not syslog, which stamps lines itself).
    KeyValue {
        /// Whether to prefix the timestamp.
        timestamp_prefix: bool,
    },
    /// One JSON object per line.
    Json,
}

/// Where the decision log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// Standard output (the journal, under systemd).
    Stdout,
    /// A file, reopened on SIGHUP and when rotated away.
    File(PathBuf),
    /// Nowhere (`EventLogType = "null"`).
    Null,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `ClientMode`: `"MONITOR"`/`"LOCKDOWN"` (any case) or Santa's numbers 1/2. Default Monitor.
    pub client_mode: ClientMode,
    /// `FailClosed`: in Lockdown, answer deny (not allow) when the deadline passes. Default false.
    pub fail_closed: bool,
    /// `AllowedPathRegex` (checked to compile).
    pub allowed_path_regex: Option<String>,
    /// `BlockedPathRegex` (checked to compile).
    pub blocked_path_regex: Option<String>,
    /// `EnableBadSignatureProtection`. Default false.
    pub enable_bad_signature_protection: bool,
    /// From `EventLogType`: `"file"` (Santa's default: key=value lines with timestamp),
    /// `"syslog"` (key=value lines without timestamp, on stdout — journald is this platform's
    /// syslog), `"json"` (JSON lines), `"null"` (no log). Santa's protobuf types are refused.
    pub event_log_format: LogFormat,
    /// From `EventLogType` and `EventLogPath` (`"-"` means stdout).
    pub event_log_destination: LogDestination,
    /// `EventDetailURL`: template for the "More info" URL (`"null"` or empty: none).
    pub event_detail_url: Option<String>,
    /// `EventDetailText`: label for the URL (GUI only in Santa; kept for the block message).
    pub event_detail_text: Option<String>,
    /// `UnknownBlockMessage`: replaces the default text for a block in Lockdown with no rule.
    pub unknown_block_message: Option<String>,
    /// `BannedBlockMessage`: replaces the default text for a block by a rule.
    pub banned_block_message: Option<String>,
    /// `EnableSilentMode`: no desktop notice for any block (santad sends `santa-notify` agents
    /// nothing), as Santa's GUI then shows none. Default false.
    pub enable_silent_mode: bool,
    /// `EnableSilentTTYMode`: no block message on the blocked process's terminal. Default false.
    pub enable_silent_tty_mode: bool,
    /// `MachineID`: for `%machine_id%` and the `machineid=` log field.
    pub machine_id: Option<String>,
    /// `EnableMachineIDDecoration`: append `|machineid=…` to every log line. Default false.
    pub enable_machine_id_decoration: bool,
    /// `WatchPaths` (ours): strings (mount marks) or `{ Path = "/", Scope = "filesystem" }`.
    /// Empty (the default): every filesystem that can hold executables, followed as mounts
    /// come and go. Given: those marks only, and the backstop only when `LockdownScope` is set.
    pub watch_paths: Vec<WatchPath>,
    /// `IgnoreMounts` (ours, fapolicyd's `ignore_mounts`): mount points whose filesystems are
    /// not watched (a filesystem mark covers all of a superblock's mounts, so the whole
    /// superblock is left out). Only with every-filesystem coverage.
    pub ignore_mounts: Vec<PathBuf>,
    /// `LockdownScope` (ours): who Lockdown applies to; `None` is everyone.
    pub lockdown_scope: Option<LockdownScope>,
    /// `Backstop` (ours): `"auto"` (default), `"off"`, `"required"`.
    pub backstop: BackstopMode,
    /// `MemfdNoexec` (ours): in Lockdown, set `vm.memfd_noexec = 2` at start (no memfd can be
    /// made executable, system-wide, until reboot). Default false.
    pub memfd_noexec: bool,
    /// `DeadlineMs` (ours).
    pub deadline_ms: u64,
    /// `MaxHashBytes` (ours).
    pub max_hash_bytes: u64,
    /// `WorkerCount` (ours): 0 = one per online core.
    pub worker_count: u64,
    /// `CacheCapacity` (ours).
    pub cache_capacity: u64,
    /// `DenyCacheTtlMs` (ours).
    pub deny_cache_ttl_ms: u64,
    /// `InFlightSlots` (ours).
    pub in_flight_slots: u64,
    /// `QueueDepth` (ours, per core).
    pub queue_depth: u64,
    /// `EventLogRingSize` (ours).
    pub event_log_ring_size: u64,
    /// `RulesDbPath` (ours). Default `/var/db/santa/rules.db` (Santa's location).
    pub rules_db_path: PathBuf,
    /// `ControlSocketPath` (ours). Default `/run/santad/santad.sock`.
    pub control_socket_path: PathBuf,
    /// `LogExecNotifications` (ours): also log execs the kernel cache answered, from the
    /// `FAN_OPEN_EXEC` notification. Default true.
    pub log_exec_notifications: bool,
    /// `PrefetchNewExecutables` (ours, default true): a file with an exec bit closed after a
    /// write on a watched filesystem is decided in the background (hash, identity, rules) so
    /// its first exec finds the decision cached. A compiler's output always is (its transitive
    /// rule is made there).
    pub prefetch_new_executables: bool,
    /// `PrefetchQueueDepth` (ours): written files waiting for that evaluation.
    pub prefetch_queue_depth: u64,
    /// `PrefetchBytesPerSecond` (ours): the byte budget of prefetches other than compilers'
    /// outputs.
    pub prefetch_bytes_per_second: u64,
    /// `PrefetchFileBytesMax` (ours): larger written files are decided at their first exec.
    pub prefetch_file_bytes_max: u64,
    /// `IgnoreOtherEndpointSecurityClients` (macOS): allow at once an exec made by another
    /// Endpoint Security client and leave its other events alone, as Santa does. No effect on
    /// Linux. Default false.
    pub ignore_other_endpoint_security_clients: bool,
    /// `EnableBundles`: hash the bundle of a denied binary inside one (`action=BUNDLE` lines, the
    /// bundle fields of its sync event). Default true: unlike Santa (default false), the hashing
    /// runs on its own thread, off every exec's path; a sync server's `enable_bundles` decides.
    pub enable_bundles: bool,
    /// `EnableTransitiveRules`: compiler rules make transitive rules (Santa's key, default false;
    /// a sync server's `enable_transitive_rules` decides). Off, a compiler rule is a plain allow.
    pub enable_transitive_rules: bool,
    /// `StaticRules`: rules that always apply, consulted before the rules database; no sync or
    /// `santactl rule` can change them. Reloaded with the file on SIGHUP.
    pub static_rules: Vec<santa_rules::Rule>,
    /// The sync server and the event spool.
    pub sync: SyncSettings,
    /// The metric exports.
    pub metrics: MetricSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_mode: ClientMode::Monitor,
            fail_closed: false,
            allowed_path_regex: None,
            blocked_path_regex: None,
            enable_bad_signature_protection: false,
            event_log_format: LogFormat::KeyValue {
                timestamp_prefix: false,
            },
            event_log_destination: LogDestination::Stdout,
            event_detail_url: None,
            event_detail_text: None,
            unknown_block_message: None,
            banned_block_message: None,
            machine_id: None,
            enable_machine_id_decoration: false,
            watch_paths: Vec::new(),
            ignore_mounts: Vec::new(),
            lockdown_scope: None,
            backstop: BackstopMode::Auto,
            memfd_noexec: false,
            enable_silent_mode: false,
            enable_silent_tty_mode: false,
            deadline_ms: DEADLINE_MS_DEFAULT,
            max_hash_bytes: MAX_HASH_BYTES_DEFAULT,
            worker_count: 0,
            cache_capacity: CACHE_CAPACITY_DEFAULT,
            deny_cache_ttl_ms: DENY_CACHE_TTL_MS_DEFAULT,
            in_flight_slots: IN_FLIGHT_SLOTS_DEFAULT,
            queue_depth: QUEUE_DEPTH_DEFAULT,
            event_log_ring_size: EVENT_LOG_RING_DEFAULT,
            rules_db_path: PathBuf::from("/var/db/santa/rules.db"),
            control_socket_path: PathBuf::from("/run/santad/santad.sock"),
            log_exec_notifications: true,
            prefetch_new_executables: true,
            prefetch_queue_depth: PREFETCH_QUEUE_DEPTH_DEFAULT,
            prefetch_bytes_per_second: PREFETCH_BYTES_PER_SECOND_DEFAULT,
            prefetch_file_bytes_max: PREFETCH_FILE_BYTES_MAX_DEFAULT,
            ignore_other_endpoint_security_clients: false,
            enable_bundles: true,
            enable_transitive_rules: false,
            static_rules: Vec::new(),
            sync: SyncSettings::default(),
            metrics: MetricSettings::default(),
        }
    }
}

impl Config {
    /// `WorkerCount`, with 0 resolved to the number of online cores (at least 1).
    pub fn worker_count_resolved(&self) -> usize {
        if self.worker_count > 0 {
            return self.worker_count as usize;
        }
        // SAFETY: sysconf takes an integer name and returns a value or -1.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if n < 1 { 1 } else { n as usize }
    }
}

/// Where the loaded configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The file given with `--config`.
    Cli(PathBuf),
    /// [`DEFAULT_CONFIG_PATH`].
    DefaultFile(PathBuf),
    /// No file: embedded defaults.
    Embedded,
}

/// The control socket a client (santactl, santa-notify) talks to: `socket` if given, else the
/// configuration's `ControlSocketPath` (`config`, or the default file), else the default path
/// (an unreadable configuration is the daemon's problem, not the client's).
pub fn control_socket_path(socket: Option<&Path>, config: Option<&Path>) -> PathBuf {
    if let Some(s) = socket {
        return s.to_path_buf();
    }
    match load(config) {
        Ok((c, _)) => c.control_socket_path,
        Err(_) => Config::default().control_socket_path,
    }
}

/// Loads the configuration: `cli_path` if given (it must exist), else [`DEFAULT_CONFIG_PATH`] if
/// it exists, else the embedded defaults.
pub fn load(cli_path: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
    load_from(cli_path, Path::new(DEFAULT_CONFIG_PATH))
}

/// [`load`] with the default path as a parameter (for tests).
pub fn load_from(
    cli_path: Option<&Path>,
    default_path: &Path,
) -> Result<(Config, ConfigSource), ConfigError> {
    if let Some(path) = cli_path {
        return Ok((from_file(path)?, ConfigSource::Cli(path.to_path_buf())));
    }
    match std::fs::metadata(default_path) {
        Ok(_) => Ok((
            from_file(default_path)?,
            ConfigSource::DefaultFile(default_path.to_path_buf()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok((Config::default(), ConfigSource::Embedded))
        }
        Err(source) => Err(ConfigError::Read {
            path: default_path.to_path_buf(),
            source,
        }),
    }
}

/// Reads and parses one file.
pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(read_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {CONFIG_FILE_BYTES_MAX} bytes"),
        )));
    }
    from_toml_str(&text, path)
}

/// Parses TOML text; `origin` names the file in errors.
pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let document = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_path_buf(),
        message: e.to_string().trim().to_owned(),
    })?;
    let keys: keys::Keys = serde_path_to_error::deserialize(document)
        .map_err(|e| ConfigError::from_keys(origin, e))?;
    validate::validate(keys).map_err(|validate::Invalid { key, message }| ConfigError::Value {
        path: origin.to_path_buf(),
        key,
        message,
    })
}

#[cfg(test)]
mod tests;
