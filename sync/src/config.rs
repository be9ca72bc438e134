//! How the client reaches the server: Santa's sync settings (`SyncBaseURL`, `MachineID`,
//! `SyncClientContentEncoding`, `SyncExtraHeaders`, the server's CA bundle, a client certificate
//! for mTLS) and the bounds on everything a server can make the client do.
//!
//! [`Endpoint::new`] checks all of it before the first request, so a bad setting is a
//! [`ConfigError`] at startup rather than a failed sync later.

use crate::error::ConfigError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How request bodies are compressed (Santa's `SyncClientContentEncoding`, read in
/// `SNTConfigurator.mm` `syncClientContentEncoding`).
///
/// Santa's "deflate" is zlib (RFC 1950: `deflateInit2` with a 15-bit window, so a zlib header
/// and Adler-32 trailer), sent with `Content-Encoding: deflate`, which is what HTTP means by
/// deflate. "gzip" is RFC 1952 with `Content-Encoding: gzip`. Servers that predate the header
/// (Moroz) zlib-decompress every body regardless, which is why deflate stays the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContentEncoding {
    /// zlib, `Content-Encoding: deflate` (Santa's default).
    #[default]
    Deflate,
    /// gzip, `Content-Encoding: gzip`.
    Gzip,
    /// Uncompressed, no `Content-Encoding`.
    None,
}

impl ContentEncoding {
    /// Reads a `SyncClientContentEncoding` value as Santa does: lower-cased, `deflate`, `gzip` or
    /// `none`; `None` for anything else (Santa silently falls back to deflate; the caller decides
    /// whether to warn).
    pub fn from_santa_name(name: &str) -> Option<ContentEncoding> {
        match name.to_ascii_lowercase().as_str() {
            "deflate" => Some(ContentEncoding::Deflate),
            "gzip" => Some(ContentEncoding::Gzip),
            "none" => Some(ContentEncoding::None),
            _ => None,
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            ContentEncoding::Deflate => Some("deflate"),
            ContentEncoding::Gzip => Some("gzip"),
            ContentEncoding::None => None,
        }
    }
}

/// TLS files (all PEM). Santa: `ServerAuthRootsFile`, `ClientAuthCertificateFile` (PKCS#12 there;
/// PEM certificate and key here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The only roots trusted for the server, instead of the system's trust store.
    pub ca_bundle: Option<PathBuf>,
    /// The client certificate chain (leaf first) for mTLS.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

/// Bounds on what a server can make the client do. Every one is reached by a misbehaving server
/// only: a well-behaved one stays far inside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest response body read. 64 MiB holds a single page of about 400,000 rules (servers
    /// such as Moroz send every rule in one page); anything larger is refused unread.
    pub response_bytes_max: u64,
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for one request, from connecting to the last byte of the answer (Santa: 30 s per
    /// request, `SNTSyncStage` `performRequest:...timeout:30`).
    pub request_timeout: Duration,
    /// Time for the XSRF token request (Santa: 10 s).
    pub xsrf_timeout: Duration,
    /// Tries per request (Santa: 5).
    pub tries_max: u32,
    /// The wait before the second try; each later try waits twice as long (Santa: 2^attempt s,
    /// so 4, 8, 16, 32 s). Tests set it to a millisecond.
    pub backoff_first: Duration,
    /// Rule pages followed in one sync: a server that always returns a cursor stops here.
    pub rule_pages_max: u32,
    /// Rules held in one sync before they are applied (memory: about 200 bytes each).
    pub rules_max: usize,
    /// Largest event batch, whatever the server's `batch_size` asks (Santa has no cap; this one
    /// keeps one EventUpload request small).
    pub batch_size_max: u32,
    /// Event batches uploaded in one sync; the rest wait for the next sync.
    pub event_batches_max: u32,
    /// Longest a whole sync may run; checked before each request.
    pub sync_time_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            response_bytes_max: 64 << 20,
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            xsrf_timeout: Duration::from_secs(10),
            tries_max: 5,
            backoff_first: Duration::from_secs(4),
            rule_pages_max: 10_000,
            rules_max: 1_000_000,
            batch_size_max: 1_000,
            event_batches_max: 1_000,
            sync_time_max: Duration::from_secs(30 * 60),
        }
    }
}

/// Everything the client needs to talk to one sync server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// `SyncBaseURL`, e.g. `https://sync.example.com/santa/`; a missing trailing `/` is added,
    /// as Santa adds it.
    pub base_url: String,
    /// `MachineID`: the last path component of every request, and `machine_id` in each message.
    pub machine_id: String,
    /// `SyncClientContentEncoding`.
    pub content_encoding: ContentEncoding,
    /// `SyncExtraHeaders`, sent with every request. Santa drops headers it sets itself or that
    /// belong to the transport (`Content-Encoding`, `Content-Length`, `Content-Type`,
    /// `Connection`, `Host`, `Proxy-Authenticate`, `Proxy-Authorization`, `WWW-Authenticate`);
    /// so does this client.
    pub extra_headers: Vec<(String, String)>,
    /// CA bundle and client certificate.
    pub tls: TlsFiles,
    /// `User-Agent` (Santa: `santactl-sync/<version>`).
    pub user_agent: String,
    /// Santa's `SyncEnableCleanSyncEventUpload`: upload events during a clean sync too. Off (Santa's
    /// default), a clean sync leaves the events waiting for the next normal sync. Santa instead
    /// drops them unsent; santad never drops an event a server has not acknowledged.
    pub upload_events_in_clean_sync: bool,
    /// Bounds.
    pub limits: Limits,
}

impl SyncConfig {
    /// A configuration with Santa's defaults for everything but the URL and machine ID.
    pub fn new(base_url: impl Into<String>, machine_id: impl Into<String>) -> SyncConfig {
        SyncConfig {
            base_url: base_url.into(),
            machine_id: machine_id.into(),
            content_encoding: ContentEncoding::default(),
            extra_headers: Vec::new(),
            tls: TlsFiles::default(),
            user_agent: concat!("santad-sync/", env!("CARGO_PKG_VERSION")).to_owned(),
            upload_events_in_clean_sync: false,
            limits: Limits::default(),
        }
    }
}

/// Headers a configuration may not set (Santa's list in `SNTSyncManager.mm`), lower case, and
/// `User-Agent`, which Santa sets after the extra headers, so a configured one never goes out.
const RESTRICTED_HEADERS: [&str; 9] = [
    "user-agent",
    "content-encoding",
    "content-length",
    "content-type",
    "connection",
    "host",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
];

/// Longest machine ID accepted: it goes into every URL (real ones are UUIDs or serials).
const MACHINE_ID_BYTES_MAX: usize = 256;

/// Largest TLS file read (a CA bundle of every public root is about 250 KiB).
const TLS_FILE_BYTES_MAX: u64 = 4 << 20;

/// A checked configuration: the URL prefix of every stage, and the headers.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// The base URL, ending in `/`.
    pub base_url: String,
    /// The machine ID, percent-encoded for a path segment.
    pub machine_path: String,
    /// Extra headers that survived the filter, validated.
    pub extra_headers: Vec<(String, String)>,
}

impl Endpoint {
    pub(crate) fn new(config: &SyncConfig) -> Result<Endpoint, ConfigError> {
        let base_url = check_base_url(&config.base_url)?;
        let machine_path = machine_path(&config.machine_id)?;
        let mut extra_headers = Vec::new();
        for (name, value) in &config.extra_headers {
            let header_error = |reason| ConfigError::Header {
                name: crate::proto::lenient::shorten(name).to_owned(),
                reason,
            };
            if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(header_error("not a valid header name"));
            }
            if ureq::http::HeaderValue::from_str(value).is_err() {
                return Err(header_error(
                    "the value has characters a header cannot carry",
                ));
            }
            if RESTRICTED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                log::warn!("SyncExtraHeaders: {name} is set by the client itself; ignored");
                continue;
            }
            extra_headers.push((name.clone(), value.clone()));
        }
        Ok(Endpoint {
            base_url,
            machine_path,
            extra_headers,
        })
    }

    /// `<base>/<stage>/<machine_id>`.
    pub(crate) fn url(&self, stage: &str) -> String {
        format!("{}{}/{}", self.base_url, stage, self.machine_path)
    }
}

/// Checks `SyncBaseURL` as Santa's `SNTConfigurator` `syncBaseURL` does (http only to
/// `localhost`, `127.0.0.1`, `::1`) and adds the trailing `/`.
fn check_base_url(url: &str) -> Result<String, ConfigError> {
    let bad = |reason| ConfigError::BaseUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| bad("no host"))?
        .to_ascii_lowercase();
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("a base URL cannot carry a query or fragment"));
    }
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => {}
        Some("http") => {
            if !matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1") {
                return Err(ConfigError::Insecure {
                    url: url.to_owned(),
                });
            }
        }
        _ => return Err(bad("the scheme must be https (or http to loopback)")),
    }
    let mut base = url.to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    Ok(base)
}

/// The machine ID as one path segment: RFC 3986 unreserved characters as they are, everything
/// else percent-encoded (a UUID or serial number is unchanged).
fn machine_path(machine_id: &str) -> Result<String, ConfigError> {
    if machine_id.is_empty() {
        return Err(ConfigError::MachineId { reason: "empty" });
    }
    if machine_id.len() > MACHINE_ID_BYTES_MAX {
        return Err(ConfigError::MachineId {
            reason: "longer than 256 bytes",
        });
    }
    if machine_id.chars().any(char::is_control) {
        return Err(ConfigError::MachineId {
            reason: "has control characters",
        });
    }
    let mut path = String::with_capacity(machine_id.len());
    for byte in machine_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(path)
}

/// Reads a TLS file, bounded.
pub(crate) fn read_tls_file(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let fail = |reason: String| ConfigError::TlsFile {
        what,
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(TLS_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > TLS_FILE_BYTES_MAX {
        return Err(fail(format!("larger than {TLS_FILE_BYTES_MAX} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Result<Endpoint, ConfigError> {
        Endpoint::new(&SyncConfig::new(url, "A1B2-C3"))
    }

    #[test]
    fn https_anywhere_http_only_to_loopback() {
        let verdict = |url| match endpoint(url) {
            Ok(_) => "ok",
            Err(ConfigError::Insecure { .. }) => "insecure",
            Err(ConfigError::BaseUrl { .. }) => "not a base URL",
            Err(other) => panic!("{url}: {other}"),
        };
        for (url, expected) in [
            ("https://sync.example.com/santa", "ok"),
            ("http://localhost:8080/", "ok"),
            ("http://127.0.0.1/v1/santa/", "ok"),
            ("http://[::1]:9/", "ok"),
            ("HTTP://LOCALHOST/", "ok"),
            ("http://sync.example.com/", "insecure"),
            ("http://127.0.0.2/", "insecure"),
            ("http://10.0.0.1/", "insecure"),
            ("ftp://x/", "not a base URL"),
            ("sync.example.com", "not a base URL"),
            ("", "not a base URL"),
            ("https://x/?a=b", "not a base URL"),
            ("https:///", "not a base URL"),
        ] {
            assert_eq!(verdict(url), expected, "{url}");
        }
    }

    #[test]
    fn stage_urls_end_in_the_machine_id() {
        let e = endpoint("https://sync.example.com/v1/santa").unwrap();
        assert_eq!(
            e.url("preflight"),
            "https://sync.example.com/v1/santa/preflight/A1B2-C3"
        );
        assert_eq!(machine_path("a b/c").unwrap(), "a%20b%2Fc");
        assert!(machine_path("").is_err());
        assert!(machine_path("a\nb").is_err());
        assert!(machine_path(&"x".repeat(257)).is_err());
    }

    #[test]
    fn restricted_headers_are_dropped_and_bad_ones_refused() {
        let mut config = SyncConfig::new("https://x/", "m");
        config.extra_headers = vec![
            ("Content-Type".into(), "text/plain".into()),
            ("X-Fleet".into(), "blue".into()),
        ];
        let e = Endpoint::new(&config).unwrap();
        assert_eq!(e.extra_headers, vec![("X-Fleet".into(), "blue".into())]);
        config.extra_headers = vec![("X-Bad".into(), "a\r\nb".into())];
        assert!(matches!(
            Endpoint::new(&config),
            Err(ConfigError::Header { .. })
        ));
        config.extra_headers = vec![("Bad Name".into(), "v".into())];
        assert!(Endpoint::new(&config).is_err());
    }

    #[test]
    fn content_encoding_names_are_santas() {
        assert_eq!(
            ContentEncoding::from_santa_name("GZIP"),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(ContentEncoding::from_santa_name("zlib"), None);
        assert_eq!(ContentEncoding::default().header_value(), Some("deflate"));
        assert_eq!(ContentEncoding::None.header_value(), None);
    }
}
