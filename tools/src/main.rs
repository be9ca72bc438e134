//! `santactl`: the operator's CLI for santad, with Santa's commands, flags, field names and
//! `--json` output.
//!
//! Everything about a file (hashes, signing facts, bundles) is computed here with the signing
//! crate; santad is asked only what it alone knows (its rules, caches, counters, settings)
//! over its control socket (`santa-control`). Changing anything needs root: santad checks the
//! caller's uid on the socket, not santactl.

mod fileinfo;
mod out;

use clap::{ArgAction, Args, Parser, Subcommand};
use santa_control::{
    self as control, CheckTarget, CleanupSpec, ClientError, Reply, Request, RuleSpec,
};
use santa_rules as rules;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CODES: &str = "\
EXIT CODES:
  0  success (also when the reader of the output went away, e.g. `| head`)
  1  the command failed: santad refused it (only root may change rules or flush caches), a
     file could not be read, or there was nothing to export
  2  usage error: bad flags or arguments, an invalid identifier
  3  santad could not be reached (not running, wrong --socket, no answer in time)";

/// Default control socket when neither `--socket` nor a readable config names one.

#[derive(Parser, Debug)]
#[command(name = "santactl", version, about = "Control and inspect santad.", after_help = EXIT_CODES)]
struct Cli {
    /// santad's control socket [default: ControlSocketPath from the config, else /run/santad/santad.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// santad's config file, read for ControlSocketPath [default: /etc/santa/santad.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show santad's mode, rule counts, cache, events, settings and uptime.
    Status {
        /// Output in JSON format.
        #[arg(long)]
        json: bool,
    },
    /// Manually add, remove or check rules; import or export them.
    Rule(RuleArgs),
    /// Print information about files (computed here; Rule and Expected Decision asked of santad).
    #[command(visible_alias = "fi")]
    Fileinfo(fileinfo::FileInfoArgs),
    /// Drop every cached decision (santad's cache and the kernel's). Root only.
    Flushcache,
    /// Print what santad's decision cache holds for a file.
    Checkcache {
        /// The file.
        path: PathBuf,
    },
    /// Show component versions.
    Version {
        /// Output in JSON format.
        #[arg(long)]
        json: bool,
    },
    /// Show every counter santad keeps.
    Metrics {
        /// Output in JSON format (the same as `--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format: text (one counter a line), json (the counters by name), or
        /// prometheus (the text exposition format 0.0.4, as santad's MetricExportTextfile).
        #[arg(long, value_enum)]
        format: Option<MetricsFormat>,
    },
    /// Say whether this host is protected, and why not: coverage and backstop, mode and
    /// FailClosed, recent default answers, the rules and spool databases, the log, sync and the
    /// clock. Exit status 0 when no check failed (warnings allowed), 1 when one did.
    Doctor {
        /// Output in JSON format.
        #[arg(long)]
        json: bool,
    },
    /// Sync with the sync server now (SyncBaseURL) and wait for the outcome. Root only.
    Sync {
        /// Ask the server for a clean sync: every rule but transitive ones is replaced.
        #[arg(long, conflicts_with = "clean_all")]
        clean: bool,
        /// Ask the server for a clean sync that replaces every rule, transitive ones too.
        #[arg(long)]
        clean_all: bool,
        /// Output in JSON format.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[command(after_help = "\
Notes:
  The format of the identifier for a Signing ID rule is `TeamID:SigningID`, or
  `platform:SigningID` for platform binaries without a Team ID.

  --import / --export use Santa's JSON: {\"rules\": [{\"identifier\": …, \"policy\": \"BLOCKLIST\",
  \"rule_type\": \"BINARY\", \"custom_msg\": …}]}. Rules are not cleared on import unless
  --clean (every rule but transitive ones) or --clean-all is given.")]
#[command(group(clap::ArgGroup::new("state").args(["allow", "block", "silent_block", "silent_block_gui", "silent_block_tty", "compiler", "cel", "remove", "check", "import", "export"])))]
#[command(group(clap::ArgGroup::new("kind").args(["sha256", "certificate", "teamid", "signingid", "cdhash"])))]
struct RuleArgs {
    /// Add an allow rule.
    #[arg(long, visible_alias = "whitelist")]
    allow: bool,
    /// Add a block rule.
    #[arg(long, visible_alias = "blacklist")]
    block: bool,
    /// Add a silent block rule (no GUI or terminal notification).
    #[arg(long)]
    silent_block: bool,
    /// Add a silent block rule (no GUI notification).
    #[arg(long)]
    silent_block_gui: bool,
    /// Add a silent block rule (no terminal notification).
    #[arg(long)]
    silent_block_tty: bool,
    /// Allow, and mark as a compiler.
    #[arg(long)]
    compiler: bool,
    /// Add a CEL rule: the expression decides, over Santa's v1 context (`target.signing_id`,
    /// `target.team_id`, `target.signing_time`, `target.is_platform_binary`, `args`, `envs`,
    /// `euid`, `cwd`, `path`), returning ALLOWLIST, BLOCKLIST, ... or a bool.
    #[arg(long, value_name = "EXPR")]
    cel: Option<String>,
    /// Remove an existing rule.
    #[arg(long)]
    remove: bool,
    /// Check which rule applies (with --path: also what santad would decide).
    #[arg(long)]
    check: bool,
    /// Import rules from a JSON file. Root only.
    #[arg(long, value_name = "FILE")]
    import: Option<PathBuf>,
    /// Export rules to a JSON file. Root only.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Clear every non-transitive rule (with --import: before importing).
    #[arg(long, conflicts_with = "clean_all")]
    clean: bool,
    /// Clear every rule (with --import: before importing).
    #[arg(long)]
    clean_all: bool,
    /// A Binary (SHA-256) rule: the default. Given a value, that value is the identifier
    /// (Santa's deprecated `--sha256 HASH`).
    #[arg(long, num_args = 0..=1, value_name = "SHA256")]
    sha256: Option<Option<String>>,
    /// A Certificate (leaf certificate SHA-256) rule.
    #[arg(long)]
    certificate: bool,
    /// A Team ID rule.
    #[arg(long)]
    teamid: bool,
    /// A Signing ID rule.
    #[arg(long)]
    signingid: bool,
    /// A CDHash rule.
    #[arg(long)]
    cdhash: bool,
    /// The identifier (SHA-256, Team ID, Signing ID, CDHash).
    #[arg(long, conflicts_with = "path")]
    identifier: Option<String>,
    /// A file whose identity (of the chosen type) is the identifier.
    #[arg(long)]
    path: Option<PathBuf>,
    /// Custom message shown when the rule blocks.
    #[arg(long)]
    message: Option<String>,
    /// Comment stored with the rule.
    #[arg(long)]
    comment: Option<String>,
    /// With --check: output in JSON format.
    #[arg(long, action = ArgAction::SetTrue)]
    json: bool,
}

/// Why santactl stops with a non-zero status.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the command failed.
    Failed(String),
    /// Exit 2: usage error.
    Usage(String),
    /// Exit 3: santad could not be reached.
    Unreachable(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Failed(m) | Failure::Usage(m) | Failure::Unreachable(m) => m,
        }
    }
}

/// Where santad listens.
#[derive(Debug, Clone)]
pub struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    /// Sends `request`; santad's refusal is a [`Failure::Failed`], no answer a
    /// [`Failure::Unreachable`].
    pub fn ask(&self, request: &Request) -> Result<Reply, Failure> {
        self.ask_within(request, control::CLIENT_REPLY_TIMEOUT)
    }

    /// [`Daemon::ask`] for a request that takes longer than most (a sync).
    pub fn ask_within(&self, request: &Request, timeout: Duration) -> Result<Reply, Failure> {
        match control::call(&self.socket, request, timeout) {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failure::Failed(e.message)),
            Err(e @ (ClientError::Connect { .. } | ClientError::Receive(_))) => {
                Err(Failure::Unreachable(e.to_string()))
            }
            Err(e) => Err(Failure::Failed(e.to_string())),
        }
    }
}

fn unexpected(reply: &Reply) -> Failure {
    Failure::Failed(format!("unexpected answer from santad: {reply:?}"))
}

/// Asks santad and takes the one reply variant that answers the request; any other reply
/// returns the failure from the calling function.
macro_rules! ask {
    ($daemon:expr, $request:expr => $variant:path) => {
        match $daemon.ask(&$request)? {
            $variant(value) => value,
            other => return Err(unexpected(&other)),
        }
    };
}

fn socket_path(cli: &Cli) -> PathBuf {
    santa_config::control_socket_path(cli.socket.as_deref(), cli.config.as_deref())
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn row(key: &str, value: impl std::fmt::Display) {
    outln!("  {key:<40} | {value}");
}

fn yes_no(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn status(d: &Daemon, json: bool) -> Result<(), Failure> {
    let s = ask!(d, Request::Status => Reply::Status);
    if json {
        outln!("{}", json_text(&s));
        return Ok(());
    }
    let up = s.daemon.uptime_secs;
    outln!(">>> Daemon Info");
    row("Mode", &s.daemon.mode);
    row("Version", &s.daemon.version);
    row("Log Type", &s.daemon.log_type);
    row("File Logging", yes_no(s.daemon.file_logging));
    if let Some(p) = &s.daemon.log_path {
        row("Log Path", p);
    }
    row("Log Format", &s.daemon.log_format);
    row("Watch Paths", s.daemon.watch_paths.join(", "));
    row("Workers", s.daemon.workers);
    row("Rules Database", &s.daemon.rules_db);
    row("Static Rules", s.daemon.static_rules);
    row(
        "Uptime",
        format!("{}h {:02}m {:02}s", up / 3600, (up / 60) % 60, up % 60),
    );
    outln!(">>> Cache Info");
    row("Cache Entries", s.cache.entries);
    row("Cache Capacity", s.cache.capacity);
    row("Cache Hits", s.cache.hits);
    row("Cache Misses", s.cache.misses);
    row("Deny Cache TTL (ms)", s.cache.deny_ttl_ms);
    row("Kernel Allow Marks", s.cache.kernel_allow_marks);
    outln!(">>> Event Info");
    row("Events Handled", s.events.events_handled);
    row("In Flight", s.events.in_flight);
    row("Deadline (ms)", s.events.deadline_ms);
    row("Default Decision", &s.events.default_decision);
    row("Deadline Defaults", s.events.deadline_defaults);
    row("Queue-full Defaults", s.events.queue_full_defaults);
    row("Queue Depth", s.events.queue_depth);
    outln!(">>> Default Answers");
    row("Defaults Answered", s.events.defaults_answered);
    for (reason, count) in defaults_in_order(&s.events.defaults_by_reason) {
        let why = control::default_reason_text(reason).unwrap_or("reported by santad");
        row(&reason_label(reason), format!("{count} ({why})"));
    }
    outln!(">>> Transitive Allowlisting");
    row("Enabled", yes_no(s.transitive_allowlisting.enabled));
    row("Compiler Rules", s.transitive_allowlisting.compiler_rules);
    row(
        "Transitive Rules",
        s.transitive_allowlisting.transitive_rules,
    );
    if let Some(c) = &s.coverage {
        outln!(">>> Coverage");
        row("Watching", &c.mode);
        for f in &c.watched {
            row(
                "Watched",
                format!("{} ({}, {})", f.mount_point, f.fs_type, f.dev),
            );
        }
        for f in &c.skipped {
            row(
                "Skipped",
                format!(
                    "{} ({}, {}): {}",
                    f.mount_point,
                    f.fs_type,
                    f.dev,
                    f.reason.as_deref().unwrap_or("")
                ),
            );
        }
        row("Mount Changes Followed", c.mount_changes_followed);
        row("Loaders", c.loaders.join(", "));
        row("Loader Loads", c.loader_loads);
        row(
            "Lockdown Scope",
            c.lockdown_scope.as_deref().unwrap_or("everyone"),
        );
        row("Unprivileged User NS", &c.unprivileged_userns);
        row(
            "vm.memfd_noexec",
            c.memfd_noexec
                .map_or("unknown".to_owned(), |v| v.to_string()),
        );
        outln!(">>> Exec Backstop");
        row("State", &c.backstop.state);
        row("Detail", &c.backstop.detail);
        row("Execs Checked", c.backstop.counters.checked);
        row("Execs Denied", c.backstop.counters.denied);
        row("Execs Reported", c.backstop.counters.reported);
        row("Reports Dropped", c.backstop.counters.dropped);
        row(
            "Entry Points Unchecked",
            c.backstop.counters.entry_unchecked,
        );
    }
    if let Some(sync) = &s.sync {
        sync_status(sync);
    }
    outln!(">>> Rule Types");
    row("Binary Rules", s.rule_types.binary_rules);
    row("Certificate Rules", s.rule_types.certificate_rules);
    row("TeamID Rules", s.rule_types.teamid_rules);
    row("SigningID Rules", s.rule_types.signingid_rules);
    row("CDHash Rules", s.rule_types.cdhash_rules);
    row("Total Rules", s.rule_types.total_rules);
    Ok(())
}

/// Santa's "Sync" section, with the spool.
fn sync_status(s: &control::SyncStatus) {
    let when = |t: Option<u64>| {
        t.map_or_else(
            || "Never".to_owned(),
            |t| fileinfo::iso8601(t as i64, false),
        )
    };
    outln!(">>> Sync");
    row("Sync Server", &s.server);
    row("Machine ID", &s.machine_id);
    if let Some(why) = &s.disabled {
        row("Disabled", why);
    }
    row("Clean Sync Required", yes_no(s.clean_sync_requested));
    row("Last Successful Full Sync", when(s.last_successful_sync));
    row("Last Successful Rule Sync", when(s.last_rule_sync));
    row("Last Attempt", when(s.last_attempt));
    row("Last Error", s.last_error.as_deref().unwrap_or("None"));
    row("Sync In Progress", yes_no(s.in_progress));
    if let Some(next) = s.next_sync_secs {
        row("Next Sync In (s)", next);
    }
    row("Full Sync Interval (s)", s.full_sync_interval_secs);
    row("Events Pending Upload", s.events_pending);
    row("Events Dropped (spool full)", s.events_dropped);
    row("Events Uploaded", s.events_uploaded);
    if let Some(e) = &s.spool_error {
        row("Event Spool Error", e);
    }
}

/// `santactl sync [--clean | --clean-all]`: asks santad to sync now and prints what it did.
fn sync(d: &Daemon, clean: bool, clean_all: bool, json: bool) -> Result<(), Failure> {
    let clean = match (clean, clean_all) {
        (_, true) => control::CleanupSpec::All,
        (true, false) => control::CleanupSpec::NonTransitive,
        (false, false) => control::CleanupSpec::None,
    };
    // santad waits up to ten minutes for the sync; a little longer here.
    let wait = Duration::from_secs(630);
    let r = match d.ask_within(&Request::Sync { clean }, wait)? {
        Reply::Synced(r) => r,
        other => return Err(unexpected(&other)),
    };
    if json {
        outln!("{}", json_text(&r));
        return Ok(());
    }
    outln!("Syncing with {} ({} sync)", r.server, r.sync_type);
    outln!("Events uploaded: {}", r.events_uploaded);
    outln!(
        "Rules received: {}, processed: {}",
        r.rules_received,
        r.rules_processed
    );
    if let Some(mode) = &r.mode {
        outln!("Client mode from the server: {mode}");
    }
    if let Some(e) = &r.postflight_error {
        outln!("Postflight failed (the sync still counts): {e}");
    }
    outln!("Sync completed successfully in {} ms", r.elapsed_ms);
    Ok(())
}

/// The reasons in santad's order (engine, then platform), then any this build does not know.
fn defaults_in_order(by_reason: &std::collections::BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let known = control::ENGINE_DEFAULT_REASONS
        .iter()
        .chain(control::PLATFORM_DEFAULT_REASONS.iter())
        .map(|(name, _)| *name);
    let mut out: Vec<(&str, u64)> = known
        .filter_map(|name| by_reason.get_key_value(name))
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    for (k, v) in by_reason {
        if control::default_reason_text(k).is_none() {
            out.push((k.as_str(), *v));
        }
    }
    out
}

/// `queue_full` → `Queue Full`, as santactl's other row names.
fn reason_label(reason: &str) -> String {
    reason
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn version(d: &Daemon, json: bool) -> Result<(), Failure> {
    let santad = match d.ask(&Request::Version) {
        Ok(Reply::Version(v)) => v.santad,
        Ok(other) => return Err(unexpected(&other)),
        // Santa prints an empty version for a component it cannot reach.
        Err(Failure::Unreachable(_)) => String::new(),
        Err(e) => return Err(e),
    };
    let santactl = env!("CARGO_PKG_VERSION");
    if json {
        let v = serde_json::json!({ "santad": santad, "santactl": santactl });
        outln!("{}", json_text(&v));
    } else {
        outln!("{:<20} | {santad}", "santad");
        outln!("{:<20} | {santactl}", "santactl");
    }
    Ok(())
}

/// `santactl metrics --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MetricsFormat {
    /// One counter a line.
    Text,
    /// The counters by name, as JSON.
    Json,
    /// Prometheus's text exposition format 0.0.4.
    Prometheus,
}

fn metrics(d: &Daemon, format: MetricsFormat) -> Result<(), Failure> {
    let m = ask!(d, Request::Metrics => Reply::Metrics);
    match format {
        MetricsFormat::Json => outln!("{}", json_text(&m)),
        MetricsFormat::Prometheus => out!("{}", control::metrics::render_prometheus(&m)),
        MetricsFormat::Text => {
            outln!(">>> Metrics");
            for (k, v) in &m {
                row(k, v);
            }
        }
    }
    Ok(())
}

fn flushcache(d: &Daemon) -> Result<(), Failure> {
    match d.ask(&Request::FlushCache) {
        Ok(Reply::Flushed) => {
            outln!("Cache flush requested");
            Ok(())
        }
        Ok(other) => Err(unexpected(&other)),
        Err(Failure::Failed(m)) => Err(Failure::Failed(format!("Cache flush failed: {m}"))),
        Err(e) => Err(e),
    }
}

/// The cache key of `path` as santad computes it for an exec (`fstat`: dev, ino, ctime, size).
fn cache_key(path: &Path) -> Result<control::CacheKey, Failure> {
    let m =
        std::fs::metadata(path).map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))?;
    Ok(control::CacheKey {
        dev: m.dev(),
        ino: m.ino(),
        ctime_ns: m
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.ctime_nsec()),
        size: m.size(),
    })
}

fn doctor(d: &Daemon, json: bool) -> Result<(), Failure> {
    let r = ask!(d, Request::Doctor => Reply::Doctor);
    if json {
        outln!("{}", json_text(&r));
    } else {
        outln!(">>> Doctor");
        for c in &r.checks {
            let state = match c.state {
                control::CheckState::Ok => "ok",
                control::CheckState::Warn => "WARN",
                control::CheckState::Fail => "FAIL",
            };
            outln!("  {state:<5} {:<15} {}", c.name, c.detail);
        }
    }
    let failed = r
        .checks
        .iter()
        .filter(|c| c.state == control::CheckState::Fail)
        .count();
    if failed > 0 {
        return Err(Failure::Failed(format!(
            "This host is not protected as configured: {failed} check(s) failed."
        )));
    }
    if !json {
        outln!("This host is protected as configured.");
    }
    Ok(())
}

fn checkcache(d: &Daemon, path: &Path) -> Result<(), Failure> {
    let reply = d.ask(&Request::CheckCache {
        file: cache_key(path)?,
    })?;
    match reply {
        Reply::CacheState(None) => outln!("File does not exist in cache"),
        Reply::CacheState(Some(c)) if c.action == "allow" => {
            outln!("File exists in [allowlist] cache")
        }
        Reply::CacheState(Some(_)) => outln!("File exists in [blocklist] cache"),
        other => return Err(unexpected(&other)),
    }
    Ok(())
}

fn rule_type(args: &RuleArgs) -> rules::RuleType {
    if args.certificate {
        rules::RuleType::Certificate
    } else if args.teamid {
        rules::RuleType::TeamId
    } else if args.signingid {
        rules::RuleType::SigningId
    } else if args.cdhash {
        rules::RuleType::CdHash
    } else {
        rules::RuleType::Binary
    }
}

fn type_label(t: rules::RuleType) -> &'static str {
    match t {
        rules::RuleType::Certificate => "Certificate SHA-256",
        rules::RuleType::Binary => "SHA-256",
        rules::RuleType::TeamId => "Team ID",
        rules::RuleType::SigningId => "Signing ID",
        rules::RuleType::CdHash => "CDHash",
    }
}

/// The identifier of type `t` of the file at `path`, as Santa's `rule --path` takes it.
fn identifier_of(path: &Path, t: rules::RuleType) -> Result<String, Failure> {
    let info = fileinfo::load(path).map_err(Failure::Usage)?;
    let id = match t {
        rules::RuleType::Binary => Some(info.sha256.to_string()),
        rules::RuleType::Certificate => info.signing_chain().first().map(|c| c.sha256.to_string()),
        rules::RuleType::CdHash => info.cdhash().map(|c| c.to_string()),
        rules::RuleType::TeamId => info.team_id().map(ToString::to_string),
        rules::RuleType::SigningId => info.signing_id().map(ToString::to_string),
    };
    id.ok_or_else(|| {
        Failure::Usage(format!(
            "{} has no {} to make a rule from",
            path.display(),
            type_label(t)
        ))
    })
}

fn apply(d: &Daemon, rules: Vec<RuleSpec>, cleanup: CleanupSpec) -> Result<(), Failure> {
    match d.ask(&Request::ApplyRules { rules, cleanup })? {
        Reply::Applied(_) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn rule(d: &Daemon, args: &RuleArgs) -> Result<(), Failure> {
    let cleanup = if args.clean_all {
        CleanupSpec::All
    } else if args.clean {
        CleanupSpec::NonTransitive
    } else {
        CleanupSpec::None
    };
    let identifier_given =
        args.identifier.is_some() || args.path.is_some() || matches!(args.sha256, Some(Some(_)));
    if let Some(file) = &args.export {
        if identifier_given || cleanup != CleanupSpec::None {
            return Err(Failure::Usage("--export can only be used by itself".into()));
        }
        return export(d, file);
    }
    if let Some(file) = &args.import {
        if identifier_given {
            return Err(Failure::Usage("--import can only be used by itself".into()));
        }
        let changes = rules::read_rules_file(file).map_err(|e| {
            Failure::Failed(format!(
                "Failed to import rules from {}: {e}",
                file.display()
            ))
        })?;
        let specs = changes.iter().map(RuleSpec::from_change).collect();
        return match apply(d, specs, cleanup) {
            Ok(()) => {
                outln!("Imported rules from {}.", file.display());
                Ok(())
            }
            Err(Failure::Failed(m)) => Err(Failure::Failed(format!(
                "Failed to import rules from {}: {m}",
                file.display()
            ))),
            Err(e) => Err(e),
        };
    }
    if cleanup != CleanupSpec::None {
        if args.check {
            return Err(Failure::Usage(
                "--check and --clean/--clean-all are mutually exclusive".into(),
            ));
        }
        if identifier_given {
            return Err(Failure::Usage(
                "--clean/--clean-all go alone or with --import".into(),
            ));
        }
        return match apply(d, Vec::new(), cleanup) {
            Ok(()) => {
                outln!("Rules were successfully deleted.");
                Ok(())
            }
            Err(Failure::Failed(m)) => Err(Failure::Failed(format!("Failed to delete rules: {m}"))),
            Err(e) => Err(e),
        };
    }
    let t = rule_type(args);
    if args.check {
        return check(d, args, t);
    }
    let state = if args.allow {
        rules::RuleState::Allow.db_value()
    } else if args.block {
        rules::RuleState::Block.db_value()
    } else if args.silent_block {
        rules::RuleState::SilentBlock.db_value()
    } else if args.silent_block_gui {
        rules::RuleState::SilentBlockGui.db_value()
    } else if args.silent_block_tty {
        rules::RuleState::SilentBlockTty.db_value()
    } else if args.compiler {
        rules::RuleState::AllowCompiler.db_value()
    } else if let Some(expr) = &args.cel {
        rules::cel::check(expr).map_err(|e| Failure::Usage(e.to_string()))?;
        rules::RuleState::Cel.db_value()
    } else if args.remove {
        rules::RuleState::REMOVE_DB_VALUE
    } else {
        return Err(Failure::Usage("No state specified".into()));
    };
    let (identifier, comment) = match (&args.identifier, &args.sha256, &args.path) {
        (Some(id), _, _) | (None, Some(Some(id)), _) => (id.clone(), args.comment.clone()),
        (None, _, Some(path)) => (
            identifier_of(path, t)?,
            args.comment
                .clone()
                .or_else(|| Some(format!("Rule created from {}", path.display()))),
        ),
        _ => {
            return Err(Failure::Usage(
                "A valid SHA-256, CDHash, Signing ID, team ID, or path to file must be specified"
                    .into(),
            ));
        }
    };
    let id =
        rules::RuleIdentifier::parse(t, &identifier).map_err(|e| Failure::Usage(e.to_string()))?;
    let spec = RuleSpec {
        custom_msg: args.message.clone(),
        cel_expr: args.cel.clone(),
        comment,
        ..RuleSpec::new(id.to_string(), t.santa_name().to_owned(), state)
    };
    match apply(d, vec![spec], CleanupSpec::None) {
        Ok(()) => {
            let action = if state == rules::RuleState::REMOVE_DB_VALUE {
                "Removed"
            } else {
                "Added"
            };
            outln!("{action} rule for {}: {id}.", type_label(t));
            Ok(())
        }
        Err(Failure::Failed(m)) => Err(Failure::Failed(format!("Failed to modify rules: {m}"))),
        Err(e) => Err(e),
    }
}

fn check(d: &Daemon, args: &RuleArgs, t: rules::RuleType) -> Result<(), Failure> {
    let target = match (&args.identifier, &args.sha256, &args.path) {
        (Some(id), _, _) | (None, Some(Some(id)), _) => {
            let id =
                rules::RuleIdentifier::parse(t, id).map_err(|e| Failure::Usage(e.to_string()))?;
            CheckTarget::Identifier {
                rule_type: t.santa_name().to_owned(),
                identifier: id.to_string(),
            }
        }
        (None, _, Some(path)) => {
            let info = fileinfo::load(path).map_err(Failure::Usage)?;
            CheckTarget::File {
                facts: fileinfo::facts(&info),
            }
        }
        _ => {
            return Err(Failure::Usage(
                "--check requires --identifier or --path".into(),
            ));
        }
    };
    let is_file = matches!(target, CheckTarget::File { .. });
    let r = ask!(d, Request::RuleCheck { target } => Reply::RuleCheck);
    if args.json {
        outln!("{}", json_text(&r));
        return Ok(());
    }
    match &r.rule {
        Some(rule) => outln!("{}", rule.santa_text()),
        None => outln!("No matching rule exists"),
    }
    if is_file && let Some(decision) = &r.decision {
        outln!("Expected Decision: {decision}");
    }
    Ok(())
}

fn export(d: &Daemon, file: &Path) -> Result<(), Failure> {
    let specs = ask!(d, Request::ExportRules => Reply::Rules);
    let mut list = Vec::with_capacity(specs.len());
    for s in &specs {
        match s.to_change() {
            Ok(rules::RuleChange::Upsert(r)) => list.push(r),
            Ok(rules::RuleChange::Remove(_)) => {}
            Err(e) => return Err(Failure::Failed(format!("santad sent an invalid rule: {e}"))),
        }
    }
    let exportable = list
        .iter()
        .filter(|r| r.state != rules::RuleState::AllowTransitive && r.state.policy_name().is_some())
        .count();
    if exportable == 0 {
        return Err(Failure::Failed("No rules to export.".into()));
    }
    let summary = rules::write_rules_file(file, &list)
        .map_err(|e| Failure::Failed(format!("Failed to export rules: {e}")))?;
    outln!("Exported {} rules to {}.", summary.exported, file.display());
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let daemon = Daemon {
        socket: socket_path(cli),
    };
    match &cli.command {
        Command::Status { json } => status(&daemon, *json),
        Command::Rule(args) => rule(&daemon, args),
        Command::Fileinfo(args) => fileinfo::run(&daemon, args),
        Command::Flushcache => flushcache(&daemon),
        Command::Checkcache { path } => checkcache(&daemon, path),
        Command::Version { json } => version(&daemon, *json),
        Command::Doctor { json } => doctor(&daemon, *json),
        Command::Metrics { json, format } => metrics(
            &daemon,
            match (json, format) {
                (true, _) => MetricsFormat::Json,
                (false, f) => f.unwrap_or(MetricsFormat::Text),
            },
        ),
        Command::Sync {
            clean,
            clean_all,
            json,
        } => sync(&daemon, *clean, *clean_all, *json),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", f.message());
            ExitCode::from(f.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn default_reasons_print_in_santads_order_then_unknown_ones() {
        let by_reason: BTreeMap<String, u64> = [
            ("stat_failed", 6),
            ("slots_full", 3),
            ("deadline", 1),
            ("zz_new", 9),
            ("evaluation_failed", 5),
            ("queue_full", 2),
            ("shutting_down", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let order: Vec<(&str, u64)> = defaults_in_order(&by_reason);
        assert_eq!(
            order,
            [
                ("deadline", 1),
                ("queue_full", 2),
                ("slots_full", 3),
                ("shutting_down", 4),
                ("evaluation_failed", 5),
                ("stat_failed", 6),
                ("zz_new", 9),
            ]
        );
        assert_eq!(reason_label("queue_full"), "Queue Full");
        assert_eq!(reason_label("deadline"), "Deadline");
        assert_eq!(reason_label("stat_failed"), "Stat Failed");
    }
}
