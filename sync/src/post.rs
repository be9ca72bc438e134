//! One JSON POST with the sync client's HTTP stack (ureq, rustls with the system's roots through
//! the platform verifier, no proxy from the environment, no redirects), for santad's `MetricURL`
//! export: what Santa's `SNTMetricHTTPWriter` does, one request per export, only HTTP 200 a
//! success. Every bound is the caller's timeout: connect, send and answer together
//! (`timeout_global`); the answer's body is never read beyond [`ANSWER_BYTES_MAX`], so a hostile
//! server can hold the caller for the timeout at most and make it buffer almost nothing.

use crate::config::TlsFiles;
use crate::error::ConfigError;
use crate::proto::lenient::shorten;
use std::io::Read;
use std::time::Duration;

/// Bytes of an answer read (and, for an error, kept for its message); the rest is not read.
pub const ANSWER_BYTES_MAX: u64 = 512;

/// Why a POST failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The server answered with another status than 200.
    #[error("{url}: HTTP status {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer's body, printable.
        detail: String,
    },
    /// No HTTP answer (connect, TLS, timeout, reset).
    #[error("{url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// A client for one URL.
#[derive(Debug)]
pub struct JsonPoster {
    agent: ureq::Agent,
    url: String,
}

impl JsonPoster {
    /// A client POSTing to `url` (http or https), each request bounded by `timeout`, trusting
    /// `tls`'s roots (the system's by default).
    pub fn new(
        url: &str,
        tls: &TlsFiles,
        timeout: Duration,
        user_agent: &str,
    ) -> Result<JsonPoster, ConfigError> {
        let bad = |reason| ConfigError::Url {
            url: shorten(url).to_owned(),
            reason,
        };
        let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http" | "https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(crate::transport::tls_config(tls)?)
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(user_agent)
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_connect(Some(timeout))
            .timeout_global(Some(timeout))
            .build();
        Ok(JsonPoster {
            agent: config.into(),
            url: url.to_owned(),
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` as `application/json`; `Ok` only for a 200.
    pub fn post(&self, body: &[u8]) -> Result<(), PostError> {
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| PostError::Transport {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let mut start = Vec::new();
        // Bounded by the global timeout; a body that does not come is not waited for longer.
        let _ = response
            .into_body()
            .into_reader()
            .take(ANSWER_BYTES_MAX)
            .read_to_end(&mut start);
        if status == 200 {
            return Ok(());
        }
        let detail: String = String::from_utf8_lossy(&start)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Err(PostError::Status {
            url: self.url.clone(),
            status,
            detail: detail.trim().to_owned(),
        })
    }
}
