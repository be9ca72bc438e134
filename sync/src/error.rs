//! What can go wrong: a bad configuration (found before any request), a failed request, a failed
//! sync. Every server answer is untrusted, so each way it can be wrong has a variant here rather
//! than a panic; each error names the stage it happened in.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A sync configuration that cannot be used. Found by [`crate::SyncClient::new`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `SyncBaseURL` is not an absolute http(s) URL.
    #[error("SyncBaseURL {url:?}: {reason}")]
    BaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `SyncBaseURL` is plain http to a host that is not loopback (Santa allows http only to
    /// `localhost`, `127.0.0.1` and `::1`).
    #[error(
        "SyncBaseURL {url:?} is plain http to a host that is not localhost, 127.0.0.1 or ::1: use https"
    )]
    Insecure {
        /// The URL as configured.
        url: String,
    },
    /// A URL other than `SyncBaseURL` (santad's `MetricURL`) is not an absolute http(s) URL.
    #[error("URL {url:?}: {reason}")]
    Url {
        /// The URL as configured (shortened).
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `MachineID` is empty, too long or has control characters.
    #[error("MachineID: {reason}")]
    MachineId {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `SyncExtraHeaders` entry is not a valid HTTP header.
    #[error("SyncExtraHeaders: header {name:?}: {reason}")]
    Header {
        /// The header name as configured (shortened).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A CA bundle, client certificate or key file cannot be read or holds nothing usable.
    #[error("{what} {}: {reason}", path.display())]
    TlsFile {
        /// Which file: "CA bundle", "client certificate" or "client key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error("a client certificate needs its private key, and a key its certificate")]
    ClientCertPair,
}

/// A stage of the sync: the last path component before the machine ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// `preflight`.
    Preflight,
    /// `eventupload`.
    EventUpload,
    /// `ruledownload`.
    RuleDownload,
    /// `postflight`.
    Postflight,
}

impl Stage {
    /// The stage's path component (`preflight`, `eventupload`, `ruledownload`, `postflight`).
    pub fn path(self) -> &'static str {
        match self {
            Stage::Preflight => "preflight",
            Stage::EventUpload => "eventupload",
            Stage::RuleDownload => "ruledownload",
            Stage::Postflight => "postflight",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// One request (with its retries) that did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No HTTP answer: connection refused, DNS, TLS, timeout, a connection cut mid-body.
    #[error("no answer from the server after {tries} tries: {reason}")]
    Transport {
        /// Tries made.
        tries: u32,
        /// The last failure.
        reason: String,
    },
    /// The server answered with a status other than 200.
    #[error("HTTP {status} after {tries} tries{}", detail_suffix(detail))]
    Status {
        /// The last status.
        status: u16,
        /// Tries made.
        tries: u32,
        /// The start of the answer's body, printable characters only.
        detail: String,
    },
    /// The answer's body is larger than the configured bound; it was not read past the bound.
    #[error("the answer is larger than {limit} bytes; refused")]
    TooLarge {
        /// The bound (`Limits::response_bytes_max`).
        limit: u64,
    },
    /// The answer is not a JSON message of the expected kind.
    #[error("the answer is not a valid {message}: {reason}")]
    Malformed {
        /// The proto message expected.
        message: &'static str,
        /// What the parser said (shortened).
        reason: String,
    },
    /// The request could not be encoded or compressed (a bug or out of memory).
    #[error("the request could not be encoded: {0}")]
    Encode(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// What the host side (the daemon, through [`crate::SyncHost`]) reports as failed.
#[derive(Debug)]
pub struct HostError(Box<dyn std::error::Error + Send + Sync>);

impl HostError {
    /// Wraps any error.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HostError {
        HostError(err.into())
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A sync that stopped. Whatever it had not applied yet stays unapplied: rules are handed to the
/// host only once every page has arrived, so a failed sync never applies part of a rule set.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A request failed.
    #[error("{stage}: {source}")]
    Request {
        /// The stage.
        stage: Stage,
        /// What happened.
        #[source]
        source: RequestError,
    },
    /// The host could not give or take what the stage needed.
    #[error("{stage}: the host failed: {source}")]
    Host {
        /// The stage.
        stage: Stage,
        /// What the host reported.
        #[source]
        source: HostError,
    },
    /// The server sent more rules than `Limits::rules_max`; none were applied.
    #[error("ruledownload: the server sent more than {max} rules; none applied")]
    TooManyRules {
        /// The bound.
        max: usize,
    },
    /// The server kept sending cursors past `Limits::rule_pages_max`; no rule was applied.
    #[error("ruledownload: more than {max} pages; none applied")]
    TooManyPages {
        /// The bound.
        max: u32,
    },
    /// The sync ran past `Limits::sync_time_max`.
    #[error("{stage}: the sync ran longer than {max:?}")]
    TooLong {
        /// The stage it was in.
        stage: Stage,
        /// The bound.
        max: Duration,
    },
}

impl SyncError {
    /// The stage the sync stopped in.
    pub fn stage(&self) -> Stage {
        match self {
            SyncError::Request { stage, .. }
            | SyncError::Host { stage, .. }
            | SyncError::TooLong { stage, .. } => *stage,
            SyncError::TooManyRules { .. } | SyncError::TooManyPages { .. } => Stage::RuleDownload,
        }
    }
}
