//! The metric exports, on their own thread at nice 10 (never on an exec's path): every
//! `MetricExportInterval` seconds the metrics `santactl metrics` shows ([`ControlContext::metrics`])
//! are written as Prometheus text to `MetricExportTextfile` (node_exporter's textfile collector;
//! `textfile.rs`) and POSTed to `MetricURL` in Santa's `rawjson` format (`rawjson.rs`).
//!
//! Bounds: one POST at a time, bounded by `MetricExportTimeout` from connect to answer, the
//! answer read up to 512 bytes; a failed export waits for the next interval (never a retry in a
//! loop). Failures are counted (`export.*`) and logged at most once per [`FAILURE_LOG_GAP`] per
//! target, with how many failed since, and the first success after them is logged.
//!
//! The settings are read from the control context's config at each export, so a SIGHUP's new
//! `Metric*` keys apply from the next one (an interval change at once).

pub mod rawjson;
pub mod textfile;

use crate::config::{Config, LogDestination, LogFormat};
use crate::control::server::ControlContext;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Longest between two log lines about one target's failures.
pub const FAILURE_LOG_GAP: Duration = Duration::from_secs(600);
/// How often the idle thread looks at the stop flag and the config.
const CONFIG_CHECK: Duration = Duration::from_secs(1);

/// santad's own CPU time and memory, as metric keys: `daemon.cpu_user_us`,
/// `daemon.cpu_system_us` (getrusage) and, on Linux, `daemon.resident_bytes` and
/// `daemon.virtual_bytes` (`/proc/self/statm`).
pub fn process_usage() -> Vec<(&'static str, u64)> {
    let mut out = Vec::new();
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
        let us = |t: libc::timeval| {
            u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
        };
        out.push(("daemon.cpu_user_us", us(ru.ru_utime)));
        out.push(("daemon.cpu_system_us", us(ru.ru_stime)));
    }
    #[cfg(target_os = "linux")]
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        // SAFETY: sysconf takes an integer name and returns a value or -1.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let mut pages = statm.split_whitespace().map(|n| n.parse::<u64>().ok());
        if let (Some(Some(size)), Some(Some(resident))) = (pages.next(), pages.next()) {
            out.push(("daemon.virtual_bytes", size * page));
            out.push(("daemon.resident_bytes", resident * page));
        }
    }
    out
}

/// Santa's `/santa/log_type` word for the config's event log.
fn log_type(config: &Config) -> &'static str {
    match (&config.event_log_destination, config.event_log_format) {
        (LogDestination::Null, _) => "null",
        (_, LogFormat::Json) => "json",
        (LogDestination::Stdout, LogFormat::KeyValue { .. }) => "syslog",
        (LogDestination::File(_), LogFormat::KeyValue { .. }) => "file",
    }
}

/// The host name (`gethostname`), best effort.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length minus the NUL kept at its end.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The name of the user santad runs as (Santa's `NSUserName()`), or its uid.
fn user_name() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value of this plain C struct.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is passed with it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pw.pw_name.is_null() {
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
        return unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned();
    }
    uid.to_string()
}

/// One target's failures since it last succeeded, for rate-limited logging.
#[derive(Debug, Default)]
struct Failures {
    since_ok: u64,
    last_logged: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        self.since_ok += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= FAILURE_LOG_GAP)
        {
            log::error!(
                "metrics: {what}: {error} ({} failure(s) since the last success; next report in {} s at most)",
                self.since_ok,
                FAILURE_LOG_GAP.as_secs()
            );
            self.last_logged = Some(Instant::now());
        }
    }

    fn succeeded(&mut self, what: &str) {
        if self.since_ok > 0 {
            log::info!(
                "metrics: {what} works again after {} failure(s)",
                self.since_ok
            );
        }
        *self = Failures::default();
    }
}

/// The `MetricURL` client, rebuilt when its URL or timeout changes.
struct Poster {
    url: String,
    timeout_secs: u64,
    client: Result<santa_sync::JsonPoster, String>,
}

struct Exporter {
    control: Arc<ControlContext>,
    poster: Option<Poster>,
    textfile_failures: Failures,
    url_failures: Failures,
    host_name: String,
    user_name: String,
}

impl Exporter {
    /// One export of everything configured.
    fn export(&mut self, config: &Config) {
        let settings = &config.metrics;
        let flat = self.control.metrics();
        let exports = &self.control.exports;
        let bump = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &settings.textfile {
            let text = santa_control::metrics::render_prometheus(&flat);
            match textfile::write_atomically(path, text.as_bytes()) {
                Ok(()) => {
                    bump(&exports.textfile_ok);
                    self.textfile_failures.succeeded("MetricExportTextfile");
                }
                Err(e) => {
                    bump(&exports.textfile_failed);
                    self.textfile_failures.failed("MetricExportTextfile", &e);
                }
            }
        }
        let Some(url) = &settings.url else {
            self.poster = None;
            return;
        };
        let stale = self
            .poster
            .as_ref()
            .is_none_or(|p| p.url != *url || p.timeout_secs != settings.export_timeout_secs);
        if stale {
            self.poster = Some(Poster {
                url: url.clone(),
                timeout_secs: settings.export_timeout_secs,
                client: santa_sync::JsonPoster::new(
                    url,
                    &santa_sync::TlsFiles::default(),
                    Duration::from_secs(settings.export_timeout_secs),
                    concat!("santad/", env!("CARGO_PKG_VERSION")),
                )
                .map_err(|e| format!("MetricURL: {e}")),
            });
        }
        let Some(poster) = &self.poster else { return };
        let labels = rawjson::root_labels(&self.host_name, &self.user_name, &settings.extra_labels);
        let body = rawjson::render(
            &flat,
            &rawjson::Context {
                root_labels: &labels,
                started: self.control.started_at(),
                now: SystemTime::now(),
                log_type: log_type(config),
                version: env!("CARGO_PKG_VERSION"),
            },
        );
        let result = match &poster.client {
            Ok(client) => serde_json::to_vec_pretty(&body)
                .map_err(|e| e.to_string())
                .and_then(|bytes| client.post(&bytes).map_err(|e| e.to_string())),
            Err(e) => Err(e.clone()),
        };
        match result {
            Ok(()) => {
                bump(&exports.url_ok);
                self.url_failures.succeeded("MetricURL");
            }
            Err(e) => {
                bump(&exports.url_failed);
                self.url_failures.failed("MetricURL", &e);
            }
        }
    }
}

/// The running export thread.
#[derive(Debug)]
pub struct MetricExport {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl MetricExport {
    /// Starts the thread. It exports whenever the config in force (`control.config()`, replaced
    /// on SIGHUP) has a `MetricURL` or `MetricExportTextfile`, first at once, then every
    /// `MetricExportInterval`; otherwise it idles.
    pub fn start(control: Arc<ControlContext>) -> std::io::Result<MetricExport> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("santad-metrics".into())
            .spawn(move || {
                crate::sync::run_in_background();
                let mut exporter = Exporter {
                    control,
                    poster: None,
                    textfile_failures: Failures::default(),
                    url_failures: Failures::default(),
                    host_name: host_name(),
                    user_name: user_name(),
                };
                export_loop(&mut exporter, &thread_stop);
            })?;
        Ok(MetricExport { stop, thread })
    }

    /// Stops the thread (an export in progress finishes first, bounded by its timeout).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn export_loop(exporter: &mut Exporter, stop: &AtomicBool) {
    let mut last: Option<Instant> = None;
    let mut exported_with: Option<crate::config::MetricSettings> = None;
    while !stop.load(Ordering::Acquire) {
        let config = exporter.control.config();
        let interval = Duration::from_secs(config.metrics.export_interval_secs);
        if config.metrics.enabled() {
            // New settings (a SIGHUP) export at once, then on their interval.
            let changed = exported_with.as_ref() != Some(&config.metrics);
            if changed || last.is_none_or(|t| t.elapsed() >= interval) {
                last = Some(Instant::now());
                exported_with = Some(config.metrics.clone());
                exporter.export(&config);
                continue;
            }
        } else {
            exported_with = None;
            last = None;
            exporter.poster = None;
        }
        let wait = last.map_or(CONFIG_CHECK, |t| {
            interval.saturating_sub(t.elapsed()).min(CONFIG_CHECK)
        });
        std::thread::park_timeout(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_usage_reports_cpu_and_on_linux_memory() {
        let u = process_usage();
        let get = |k: &str| u.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert!(get("daemon.cpu_user_us").is_some());
        assert!(get("daemon.cpu_system_us").is_some());
        #[cfg(target_os = "linux")]
        {
            let rss = get("daemon.resident_bytes").expect("rss");
            let vsz = get("daemon.virtual_bytes").expect("vsz");
            assert!(rss > 0 && vsz >= rss, "{rss} {vsz}");
        }
        for (k, _) in &u {
            assert!(
                santa_control::metrics::lookup(k).is_some(),
                "{k} not in the table"
            );
        }
    }

    #[test]
    fn log_types_are_santas_words() {
        let mut c = Config::default();
        assert_eq!(log_type(&c), "syslog");
        c.event_log_destination = LogDestination::File("/x".into());
        assert_eq!(log_type(&c), "file");
        c.event_log_format = LogFormat::Json;
        assert_eq!(log_type(&c), "json");
        c.event_log_destination = LogDestination::Null;
        assert_eq!(log_type(&c), "null");
    }
}
