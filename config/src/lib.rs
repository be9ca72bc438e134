//! santad's configuration: a TOML file with Santa's key names where Santa has the setting
//! (`ClientMode`, `FailClosed`, `AllowedPathRegex`, ...; see Santa's `SNTConfigurator`), plus ours
//! for what only this daemon has (`WatchPaths`, `DeadlineMs`, `MaxHashBytes`, ...).
//!
//! Where it comes from ([`load`]): `santad --config FILE`; else `/etc/santa/santad.toml` when it
//! exists; else the embedded defaults — Monitor mode, every filesystem watched, log to stdout.
//!
//! Every key is checked: an unknown key, a wrong type or a value out of its bound is an error that
//! names the key and the file; nothing falls back silently. Every bound is a named constant below
//! with the reason for it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where santad looks for its config when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/santa/santad.toml";

/// A config file larger than this is refused before parsing: a real one is a few hundred bytes,
/// and the limit keeps a wrong path (a log, a binary) from being read whole into memory.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// `DeadlineMs` bounds. Below 10 ms a first exec of any real binary cannot be hashed in time and
/// every first exec would get the default answer; above 60 s a held exec looks like a hung system
/// to its user (Santa itself answers well before the macOS ES deadline of about a minute).
pub const DEADLINE_MS_MIN: u64 = 10;
/// See [`DEADLINE_MS_MIN`].
pub const DEADLINE_MS_MAX: u64 = 60_000;
/// Default deadline: long enough to hash a few hundred MB at the measured ~1.8 GB/s.
pub const DEADLINE_MS_DEFAULT: u64 = 5_000;

/// `MaxHashBytes` bounds. Smaller than 1 MiB would leave ordinary binaries unhashable; above 16 GiB
/// hashing cannot finish inside [`DEADLINE_MS_MAX`] even at SHA-NI speed.
pub const MAX_HASH_BYTES_MIN: u64 = 1 << 20;
/// See [`MAX_HASH_BYTES_MIN`].
pub const MAX_HASH_BYTES_MAX: u64 = 16 << 30;
/// Default: 1 GiB, about 0.6 s at 1.8 GB/s — far inside the default deadline.
pub const MAX_HASH_BYTES_DEFAULT: u64 = 1 << 30;

/// `WorkerCount` upper bound (0 means one per online core): per-core queues are arrays sized at
/// start, and more workers than this is a typo, not a machine.
pub const WORKER_COUNT_MAX: u64 = 1024;

/// `CacheCapacity` bounds (entries). Under 1,024 the cache thrashes on an ordinary desktop's
/// working set; 16 M entries at ~100 bytes each is 1.6 GB, the most a daemon should ever hold.
pub const CACHE_CAPACITY_MIN: u64 = 1_024;
/// See [`CACHE_CAPACITY_MIN`].
pub const CACHE_CAPACITY_MAX: u64 = 16 << 20;
/// Default: 16 Ki entries, ~100 B each when empty (the cache is preallocated) plus ~300 B of
/// verdict per file cached. A host rarely runs more distinct executables; past it, the least
/// recently executed are evicted (and the kernel's own allow cache still answers them). fapolicyd
/// defaults to 8,191 objects.
pub const CACHE_CAPACITY_DEFAULT: u64 = 16 << 10;

/// `DenyCacheTtlMs` upper bound: a deny is cached only briefly so that a new allow rule takes
/// effect without a flush; a minute is the longest a user should wait for that. 0 disables.
pub const DENY_CACHE_TTL_MS_MAX: u64 = 60_000;
/// Default deny lifetime, as in the design (1500 ms).
pub const DENY_CACHE_TTL_MS_DEFAULT: u64 = 1_500;

/// `InFlightSlots` bounds. Each slot holds an open event fd, so the upper bound stays well inside
/// the fd limit santad raises itself to; below 16 a short burst of execs overflows at once.
pub const IN_FLIGHT_SLOTS_MIN: u64 = 16;
/// See [`IN_FLIGHT_SLOTS_MIN`].
pub const IN_FLIGHT_SLOTS_MAX: u64 = 65_536;
/// Default: 4,096 held execs, far above any measured exec storm's concurrency.
pub const IN_FLIGHT_SLOTS_DEFAULT: u64 = 4_096;

/// `QueueDepth` (per core) bounds; it may not exceed `InFlightSlots` either, since every queued
/// item is a slot.
pub const QUEUE_DEPTH_MIN: u64 = 16;
/// See [`QUEUE_DEPTH_MIN`].
pub const QUEUE_DEPTH_MAX: u64 = 65_536;
/// Default per-core queue depth.
pub const QUEUE_DEPTH_DEFAULT: u64 = 1_024;

/// `EventLogRingSize` bounds (records). Each record is a preallocated fixed-size buffer of about
/// 11 KiB (path, arguments, bundle fields: see `eventlog`), so 16,384 records is ~180 MB, the
/// most worth holding for a logger that fell behind; below 64 a single burst drops log lines.
pub const EVENT_LOG_RING_MIN: u64 = 64;
/// See [`EVENT_LOG_RING_MIN`].
pub const EVENT_LOG_RING_MAX: u64 = 16_384;
/// Default ring: 256 records of ~10 KB (~2.6 MB, preallocated). The logger thread drains it as
/// lines come; 256 absorb a 25 ms stall of the logger at 10,000 execs/s. A full ring drops and
/// counts, it never blocks a worker.
pub const EVENT_LOG_RING_DEFAULT: u64 = 256;

/// Longest string value accepted (messages, URLs, regexes): a block message is a paragraph; the
/// limit keeps a stray file from becoming a terminal message.
pub const STRING_BYTES_MAX: usize = 4_096;
/// At most this many `WatchPaths`: each is a kernel mark; a real host has a handful of mounts.
pub const WATCH_PATHS_MAX: usize = 64;
/// Unix socket paths must fit `sockaddr_un.sun_path` (108 bytes with its NUL).
pub const SOCKET_PATH_BYTES_MAX: usize = 107;

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

/// At most this many entries in each `LockdownScope` list (the backstop's maps hold as many).
pub const SCOPE_ENTRIES_MAX: usize = 256;
/// At most this many `LockdownScope.Cgroups` (each is one check per exec in the backstop).
pub const SCOPE_CGROUPS_MAX: usize = 8;

/// One `WatchPaths` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPath {
    /// Absolute path on the mount or filesystem.
    pub path: PathBuf,
    /// Mark kind.
    pub scope: WatchScope,
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
        }
    }
}

/// Santa's default file log path, used when `EventLogType = "file"` or `"json"` has no path.
pub const SANTA_EVENT_LOG_PATH: &str = "/var/db/santa/santa.log";

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

/// A configuration error; its message names the file and the key.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (or is larger than [`CONFIG_FILE_BYTES_MAX`]).
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not valid TOML.
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key santad does not know (a typo would otherwise be ignored silently).
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with its table (e.g. `WatchPaths[1].Paht`).
        key: String,
    },
    /// A key has a value of the wrong type or out of bounds.
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            ConfigError::Syntax { path, message } => {
                write!(f, "{}: invalid TOML: {message}", path.display())
            }
            ConfigError::UnknownKey { path, key } => {
                write!(f, "{}: unknown key `{key}`", path.display())
            }
            ConfigError::Value { path, key, message } => {
                write!(f, "{}: key `{key}`: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
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
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_path_buf(),
        message: e.to_string().trim().to_owned(),
    })?;
    Parser { origin }.parse(&table)
}

struct Parser<'a> {
    origin: &'a Path,
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl Parser<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            path: self.origin.to_path_buf(),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn boolean(&self, key: &str, v: &toml::Value) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| self.err(key, format!("expected a boolean, found {}", type_name(v))))
    }

    fn integer(&self, key: &str, v: &toml::Value, min: u64, max: u64) -> Result<u64, ConfigError> {
        let n = v
            .as_integer()
            .ok_or_else(|| self.err(key, format!("expected an integer, found {}", type_name(v))))?;
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(key, format!("{n} is outside {min}..={max}"))),
        }
    }

    fn string<'v>(&self, key: &str, v: &'v toml::Value) -> Result<&'v str, ConfigError> {
        let s = v
            .as_str()
            .ok_or_else(|| self.err(key, format!("expected a string, found {}", type_name(v))))?;
        if s.len() > STRING_BYTES_MAX {
            return Err(self.err(key, format!("longer than {STRING_BYTES_MAX} bytes")));
        }
        if s.contains('\0') {
            return Err(self.err(key, "contains a NUL character"));
        }
        Ok(s)
    }

    fn optional_text(&self, key: &str, v: &toml::Value) -> Result<Option<String>, ConfigError> {
        let s = self.string(key, v)?;
        Ok(if s.is_empty() {
            None
        } else {
            Some(s.to_owned())
        })
    }

    fn absolute_path(&self, key: &str, v: &toml::Value) -> Result<PathBuf, ConfigError> {
        let s = self.string(key, v)?;
        if !s.starts_with('/') {
            return Err(self.err(key, format!("`{s}` is not an absolute path")));
        }
        Ok(PathBuf::from(s))
    }

    fn regex(&self, key: &str, v: &toml::Value) -> Result<Option<String>, ConfigError> {
        let s = self.string(key, v)?;
        if s.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(s)
            .map_err(|e| self.err(key, format!("invalid regular expression: {e}")))?;
        Ok(Some(s.to_owned()))
    }

    fn client_mode(&self, key: &str, v: &toml::Value) -> Result<ClientMode, ConfigError> {
        match v {
            toml::Value::Integer(1) => Ok(ClientMode::Monitor),
            toml::Value::Integer(2) => Ok(ClientMode::Lockdown),
            toml::Value::Integer(3) => Err(self.err(
                key,
                "3 (Standalone) is not supported by santad; use 1 (Monitor) or 2 (Lockdown)",
            )),
            toml::Value::String(s) if s.eq_ignore_ascii_case("monitor") => Ok(ClientMode::Monitor),
            toml::Value::String(s) if s.eq_ignore_ascii_case("lockdown") => {
                Ok(ClientMode::Lockdown)
            }
            other => Err(self.err(
                key,
                format!(
                    "expected \"MONITOR\", \"LOCKDOWN\", 1 or 2, found {}",
                    shown(other)
                ),
            )),
        }
    }

    fn watch_paths(&self, key: &str, v: &toml::Value) -> Result<Vec<WatchPath>, ConfigError> {
        let items = v
            .as_array()
            .ok_or_else(|| self.err(key, format!("expected an array, found {}", type_name(v))))?;
        if items.is_empty() {
            return Err(self.err(
                key,
                "must name at least one path (santad would watch nothing)",
            ));
        }
        if items.len() > WATCH_PATHS_MAX {
            return Err(self.err(key, format!("more than {WATCH_PATHS_MAX} entries")));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let watch = match item {
                toml::Value::String(_) => WatchPath {
                    path: self.absolute_path(&item_key, item)?,
                    scope: WatchScope::Mount,
                },
                toml::Value::Table(t) => {
                    let mut path = None;
                    let mut scope = WatchScope::Mount;
                    for (k, v) in t {
                        let sub = format!("{item_key}.{k}");
                        match k.as_str() {
                            "Path" => path = Some(self.absolute_path(&sub, v)?),
                            "Scope" => {
                                scope = match self.string(&sub, v)? {
                                    s if s.eq_ignore_ascii_case("mount") => WatchScope::Mount,
                                    s if s.eq_ignore_ascii_case("filesystem") => {
                                        WatchScope::Filesystem
                                    }
                                    s => {
                                        return Err(self.err(
                                            &sub,
                                            format!("expected \"mount\" or \"filesystem\", found \"{s}\""),
                                        ));
                                    }
                                }
                            }
                            _ => {
                                return Err(ConfigError::UnknownKey {
                                    path: self.origin.to_path_buf(),
                                    key: sub,
                                });
                            }
                        }
                    }
                    let path = path.ok_or_else(|| self.err(&item_key, "missing `Path`"))?;
                    WatchPath { path, scope }
                }
                other => {
                    return Err(self.err(
                        &item_key,
                        format!(
                            "expected a path string or a table {{ Path, Scope }}, found {}",
                            type_name(other)
                        ),
                    ));
                }
            };
            out.push(watch);
        }
        Ok(out)
    }

    fn array<'v>(&self, key: &str, v: &'v toml::Value) -> Result<&'v [toml::Value], ConfigError> {
        let items = v
            .as_array()
            .ok_or_else(|| self.err(key, format!("expected an array, found {}", type_name(v))))?;
        if items.len() > SCOPE_ENTRIES_MAX {
            return Err(self.err(key, format!("more than {SCOPE_ENTRIES_MAX} entries")));
        }
        Ok(items)
    }

    fn path_list(&self, key: &str, v: &toml::Value) -> Result<Vec<PathBuf>, ConfigError> {
        self.array(key, v)?
            .iter()
            .enumerate()
            .map(|(i, item)| self.absolute_path(&format!("{key}[{i}]"), item))
            .collect()
    }

    /// Users or groups: numbers, or names looked up now (a name that does not exist is an
    /// error: a scope that silently covers nobody would leave its users in Monitor).
    fn ids(&self, key: &str, v: &toml::Value, group: bool) -> Result<Vec<u32>, ConfigError> {
        let mut out = Vec::new();
        for (i, item) in self.array(key, v)?.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            let id = match item {
                toml::Value::Integer(n) => u32::try_from(*n)
                    .ok()
                    .filter(|&n| n != u32::MAX)
                    .ok_or_else(|| self.err(&item_key, format!("{n} is not a valid id")))?,
                toml::Value::String(_) => {
                    let name = self.string(&item_key, item)?;
                    lookup_id(name, group).ok_or_else(|| {
                        self.err(
                            &item_key,
                            format!(
                                "no {} named \"{name}\"",
                                if group { "group" } else { "user" }
                            ),
                        )
                    })?
                }
                other => {
                    return Err(self.err(
                        &item_key,
                        format!("expected a name or a number, found {}", type_name(other)),
                    ));
                }
            };
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn lockdown_scope(&self, key: &str, v: &toml::Value) -> Result<LockdownScope, ConfigError> {
        let t = v
            .as_table()
            .ok_or_else(|| self.err(key, format!("expected a table, found {}", type_name(v))))?;
        let mut scope = LockdownScope::default();
        for (k, v) in t {
            let sub = format!("{key}.{k}");
            match k.as_str() {
                "Users" => scope.users = self.ids(&sub, v, false)?,
                "Groups" => scope.groups = self.ids(&sub, v, true)?,
                "Cgroups" => {
                    scope.cgroups = self.path_list(&sub, v)?;
                    if scope.cgroups.len() > SCOPE_CGROUPS_MAX {
                        return Err(
                            self.err(&sub, format!("more than {SCOPE_CGROUPS_MAX} cgroups"))
                        );
                    }
                }
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: self.origin.to_path_buf(),
                        key: sub,
                    });
                }
            }
        }
        if scope.users.is_empty() && scope.groups.is_empty() && scope.cgroups.is_empty() {
            return Err(self.err(
                key,
                "names nobody: give Users, Groups or Cgroups (leave LockdownScope out for everyone)",
            ));
        }
        Ok(scope)
    }

    fn parse(&self, table: &toml::Table) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut log_type: Option<String> = None;
        let mut log_path: Option<String> = None;
        for (key, v) in table {
            let k = key.as_str();
            match k {
                "ClientMode" => c.client_mode = self.client_mode(k, v)?,
                "FailClosed" => c.fail_closed = self.boolean(k, v)?,
                "AllowedPathRegex" => c.allowed_path_regex = self.regex(k, v)?,
                "BlockedPathRegex" => c.blocked_path_regex = self.regex(k, v)?,
                "EnableBadSignatureProtection" => {
                    c.enable_bad_signature_protection = self.boolean(k, v)?
                }
                "EventLogType" => log_type = Some(self.string(k, v)?.to_ascii_lowercase()),
                "EventLogPath" => {
                    let s = self.string(k, v)?;
                    if s != "-" && !s.starts_with('/') {
                        return Err(self.err(
                            k,
                            format!("`{s}` is neither an absolute path nor \"-\" (stdout)"),
                        ));
                    }
                    log_path = Some(s.to_owned());
                }
                "EventDetailURL" => {
                    c.event_detail_url = self.optional_text(k, v)?.filter(|s| s != "null");
                }
                "EventDetailText" => c.event_detail_text = self.optional_text(k, v)?,
                "UnknownBlockMessage" => c.unknown_block_message = self.optional_text(k, v)?,
                "BannedBlockMessage" => c.banned_block_message = self.optional_text(k, v)?,
                "MachineID" => c.machine_id = self.optional_text(k, v)?,
                "EnableMachineIDDecoration" => {
                    c.enable_machine_id_decoration = self.boolean(k, v)?
                }
                "WatchPaths" => c.watch_paths = self.watch_paths(k, v)?,
                "IgnoreMounts" => c.ignore_mounts = self.path_list(k, v)?,
                "LockdownScope" => c.lockdown_scope = Some(self.lockdown_scope(k, v)?),
                "Backstop" => {
                    c.backstop = match self.string(k, v)? {
                        s if s.eq_ignore_ascii_case("auto") => BackstopMode::Auto,
                        s if s.eq_ignore_ascii_case("off") => BackstopMode::Off,
                        s if s.eq_ignore_ascii_case("required") => BackstopMode::Required,
                        s => {
                            return Err(self.err(
                                k,
                                format!(
                                    "expected \"auto\", \"off\" or \"required\", found \"{s}\""
                                ),
                            ));
                        }
                    }
                }
                "MemfdNoexec" => c.memfd_noexec = self.boolean(k, v)?,
                "DeadlineMs" => {
                    c.deadline_ms = self.integer(k, v, DEADLINE_MS_MIN, DEADLINE_MS_MAX)?
                }
                "MaxHashBytes" => {
                    c.max_hash_bytes = self.integer(k, v, MAX_HASH_BYTES_MIN, MAX_HASH_BYTES_MAX)?
                }
                "WorkerCount" => c.worker_count = self.integer(k, v, 0, WORKER_COUNT_MAX)?,
                "CacheCapacity" => {
                    c.cache_capacity = self.integer(k, v, CACHE_CAPACITY_MIN, CACHE_CAPACITY_MAX)?
                }
                "DenyCacheTtlMs" => {
                    c.deny_cache_ttl_ms = self.integer(k, v, 0, DENY_CACHE_TTL_MS_MAX)?
                }
                "InFlightSlots" => {
                    c.in_flight_slots =
                        self.integer(k, v, IN_FLIGHT_SLOTS_MIN, IN_FLIGHT_SLOTS_MAX)?
                }
                "QueueDepth" => {
                    c.queue_depth = self.integer(k, v, QUEUE_DEPTH_MIN, QUEUE_DEPTH_MAX)?
                }
                "EventLogRingSize" => {
                    c.event_log_ring_size =
                        self.integer(k, v, EVENT_LOG_RING_MIN, EVENT_LOG_RING_MAX)?
                }
                "RulesDbPath" => c.rules_db_path = self.absolute_path(k, v)?,
                "ControlSocketPath" => {
                    let p = self.absolute_path(k, v)?;
                    if p.as_os_str().len() > SOCKET_PATH_BYTES_MAX {
                        return Err(self.err(
                            k,
                            format!("longer than {SOCKET_PATH_BYTES_MAX} bytes (sun_path)"),
                        ));
                    }
                    c.control_socket_path = p;
                }
                "LogExecNotifications" => c.log_exec_notifications = self.boolean(k, v)?,
                _ => {
                    return Err(ConfigError::UnknownKey {
                        path: self.origin.to_path_buf(),
                        key: key.clone(),
                    });
                }
            }
        }
        if c.queue_depth > c.in_flight_slots {
            return Err(self.err(
                "QueueDepth",
                format!(
                    "{} exceeds InFlightSlots ({}): every queued event holds a slot",
                    c.queue_depth, c.in_flight_slots
                ),
            ));
        }
        let file_destination = |path: &Option<String>| match path.as_deref() {
            Some("-") => LogDestination::Stdout,
            Some(p) => LogDestination::File(PathBuf::from(p)),
            None => LogDestination::File(PathBuf::from(SANTA_EVENT_LOG_PATH)),
        };
        match log_type.as_deref() {
            // No type: the embedded default (syslog-style lines on stdout), unless a path was
            // given, which only makes sense for a file log.
            None if log_path.is_none() => {}
            None | Some("file") => {
                c.event_log_format = LogFormat::KeyValue {
                    timestamp_prefix: true,
                };
                c.event_log_destination = file_destination(&log_path);
            }
            Some("json") => {
                c.event_log_format = LogFormat::Json;
                c.event_log_destination = file_destination(&log_path);
            }
            Some("syslog") => {
                c.event_log_format = LogFormat::KeyValue {
                    timestamp_prefix: false,
                };
                c.event_log_destination = LogDestination::Stdout;
            }
            Some("null") => c.event_log_destination = LogDestination::Null,
            Some(t) if t.starts_with("protobuf") => {
                return Err(self.err(
                    "EventLogType",
                    format!("\"{t}\" is not supported by santad; use file, json, syslog or null"),
                ));
            }
            Some(t) => {
                return Err(self.err(
                    "EventLogType",
                    format!("unknown type \"{t}\"; use file, json, syslog or null"),
                ));
            }
        }
        Ok(c)
    }
}

/// A user's uid or a group's gid by name (getpwnam_r / getgrnam_r).
fn lookup_id(name: &str, group: bool) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    if group {
        // SAFETY: an all-zero `group` is a valid value for getgrnam_r to overwrite.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf`'s length is passed with it.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc == 0 && !result.is_null()).then_some(entry.gr_gid)
    } else {
        // SAFETY: an all-zero `passwd` is a valid value for getpwnam_r to overwrite.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf`'s length is passed with it.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        (rc == 0 && !result.is_null()).then_some(entry.pw_uid)
    }
}

fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Integer(n) => n.to_string(),
        other => type_name(other).to_owned(),
    }
}

#[cfg(test)]
mod tests;
