//! One request to the server, as Santa's `SNTSyncStage` makes it (`requestWithMessage:`,
//! `dataFromRequest:`, `performRequest:intoMessage:`, `fetchXSRFToken`, `stripXssi:`):
//!
//! - the message as JSON, compressed per [`ContentEncoding`] (an empty body is never compressed),
//!   `Content-Type: application/json`, the extra headers, the XSRF header once a token is held;
//! - up to `tries_max` tries: only HTTP 200 is success; before try n (n ≥ 2) a wait doubling from
//!   `backoff_first`; a 403 fetches an XSRF token (`POST <base>/xsrf/<machine_id>`, the token in
//!   `X-XSRF-TOKEN`, the header to send it in named by `X-XSRF-TOKEN-HEADER` if the server says)
//!   and tries again at once; any other 4xx but 408 and 429 ends the tries; 5xx, other codes and
//!   transport errors are tried again;
//! - the answer read only up to `response_bytes_max` (a larger one is refused, not read), the
//!   XSSI prefix `)]}'\n` or `])}` stripped, then parsed with unknown fields ignored; an empty
//!   body is the default message.
//!
//! Santa fetches an XSRF token only while it holds none, so a stale token is never replaced; here
//! a token is fetched at most once per sync, so a rotated token is picked up by the next 403.
//! Redirects are not followed (Santa: `refusesRedirects`), and no proxy is taken from the
//! environment.

use crate::config::{ContentEncoding, Endpoint, Limits, SyncConfig, TlsFiles, read_tls_file};
use crate::error::{ConfigError, RequestError};
use crate::proto::lenient::shorten;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// Santa's `kDefaultXSRFTokenHeader`: the header that carries the token, both ways.
pub const XSRF_TOKEN_HEADER: &str = "X-XSRF-TOKEN";
/// Santa's `kXSRFTokenHeader`: the server may name another header for the token in this one.
pub const XSRF_HEADER_NAME_HEADER: &str = "X-XSRF-TOKEN-HEADER";

/// Longest XSRF token or header name taken from a server.
const XSRF_BYTES_MAX: usize = 4096;
/// Bytes of an error answer's body kept for the error message.
const ERROR_DETAIL_BYTES_MAX: u64 = 512;

/// The XSRF token and the header it goes in.
#[derive(Clone, Debug)]
struct Xsrf {
    header: ureq::http::HeaderName,
    token: ureq::http::HeaderValue,
}

/// A try that did not produce a 200 with its whole body, and may be tried again.
enum Failure {
    /// Another status, with the start of its body.
    Status(u16, String),
    /// No HTTP answer.
    Transport(String),
}

/// The HTTP side of the client: one connection pool, the XSRF token, the bounds.
#[derive(Debug)]
pub(crate) struct Transport {
    agent: ureq::Agent,
    endpoint: Endpoint,
    encoding: ContentEncoding,
    limits: Limits,
    xsrf: Option<Xsrf>,
    xsrf_fetched_this_sync: bool,
}

impl Transport {
    pub(crate) fn new(config: &SyncConfig) -> Result<Transport, ConfigError> {
        let endpoint = Endpoint::new(config)?;
        let limits = config.limits.clone();
        let agent_config = ureq::Agent::config_builder()
            .tls_config(tls_config(&config.tls)?)
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(config.user_agent.as_str())
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_connect(Some(limits.connect_timeout))
            .timeout_global(Some(limits.request_timeout))
            .build();
        Ok(Transport {
            agent: agent_config.into(),
            endpoint,
            encoding: config.content_encoding,
            limits,
            xsrf: None,
            xsrf_fetched_this_sync: false,
        })
    }

    /// Marks the start of a sync: the XSRF token may be refreshed once in it.
    pub(crate) fn start_sync(&mut self) {
        self.xsrf_fetched_this_sync = false;
    }

    /// Sends `message` to `stage` and reads the answer as `R`.
    pub(crate) fn call<M: Serialize, R: DeserializeOwned + Default>(
        &mut self,
        stage: &str,
        message: &M,
        response_name: &'static str,
    ) -> Result<R, RequestError> {
        let json = serde_json::to_vec(message).map_err(|e| RequestError::Encode(e.to_string()))?;
        let (body, encoding) = compress(json, self.encoding)?;
        let answer = self.post(&self.endpoint.url(stage), &body, encoding)?;
        parse_answer(&answer, response_name)
    }

    /// POSTs `body` with Santa's retry rules; the body of the 200 answer.
    fn post(
        &mut self,
        url: &str,
        body: &[u8],
        encoding: Option<&'static str>,
    ) -> Result<Vec<u8>, RequestError> {
        let mut last = Failure::Transport("no try was made (tries_max is 0)".to_owned());
        // `budget` counts the tries against tries_max; `sent`, the requests made (for errors).
        let (mut budget, mut sent) = (0, 0);
        let mut wait_before_next = true;
        while budget < self.limits.tries_max {
            if budget >= 1 && wait_before_next {
                std::thread::sleep(backoff(self.limits.backoff_first, budget + 1));
            }
            budget += 1;
            sent += 1;
            wait_before_next = true;
            match self.try_once(url, body, encoding)? {
                Ok(answer) => return Ok(answer),
                Err(Failure::Status(403, detail)) => {
                    if !self.fetch_xsrf() {
                        return Err(status_error(403, sent, detail));
                    }
                    // A fresh token: no reason to wait before using it, and the try it made
                    // necessary does not count (a token is fetched at most once per sync, so
                    // this cannot loop). With SyncRequestTries = 1, a 403 still gets its retry.
                    wait_before_next = false;
                    budget -= 1;
                    last = Failure::Status(403, detail);
                }
                Err(Failure::Status(status, detail))
                    if (400..500).contains(&status) && status != 408 && status != 429 =>
                {
                    return Err(status_error(status, sent, detail));
                }
                Err(failure) => last = failure,
            }
        }
        Err(match last {
            Failure::Status(status, detail) => status_error(status, sent, detail),
            Failure::Transport(reason) => RequestError::Transport {
                tries: sent,
                reason,
            },
        })
    }

    fn try_once(
        &self,
        url: &str,
        body: &[u8],
        encoding: Option<&'static str>,
    ) -> Result<Result<Vec<u8>, Failure>, RequestError> {
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(encoding) = encoding {
            request = request.header("Content-Encoding", encoding);
        }
        for (name, value) in &self.endpoint.extra_headers {
            request = request.header(name, value);
        }
        if let Some(xsrf) = &self.xsrf {
            request = request.header(&xsrf.header, &xsrf.token);
        }
        let response = match request.send(body) {
            Ok(response) => response,
            Err(e) => return Ok(Err(Failure::Transport(e.to_string()))),
        };
        let status = response.status().as_u16();
        let limit = self.limits.response_bytes_max;
        if status != 200 {
            // The start of the body only, whatever its size; unreadable is empty.
            let mut detail = Vec::new();
            let _ = response
                .into_body()
                .into_reader()
                .take(ERROR_DETAIL_BYTES_MAX)
                .read_to_end(&mut detail);
            let detail = printable(&String::from_utf8_lossy(&detail));
            return Ok(Err(Failure::Status(status, detail)));
        }
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(RequestError::TooLarge { limit });
        }
        match response
            .into_body()
            .with_config()
            .limit(limit)
            .read_to_vec()
        {
            Ok(answer) => Ok(Ok(answer)),
            Err(ureq::Error::BodyExceedsLimit(_)) => Err(RequestError::TooLarge { limit }),
            // A connection cut or stalled mid-body is a transport failure, tried again (Santa
            // honours the transport error even alongside a 200).
            Err(e) => Ok(Err(Failure::Transport(e.to_string()))),
        }
    }

    /// Asks for an XSRF token, at most once per sync. True if the server gave one.
    fn fetch_xsrf(&mut self) -> bool {
        if self.xsrf_fetched_this_sync {
            return false;
        }
        self.xsrf_fetched_this_sync = true;
        let mut request = self
            .agent
            .post(self.endpoint.url("xsrf"))
            .config()
            .timeout_global(Some(
                self.limits.xsrf_timeout.min(self.limits.request_timeout),
            ))
            .build();
        for (name, value) in &self.endpoint.extra_headers {
            request = request.header(name, value);
        }
        let response = match request.send_empty() {
            Ok(response) if response.status() == 200 => response,
            Ok(response) => {
                log::debug!("XSRF token request: HTTP {}", response.status());
                return false;
            }
            Err(e) => {
                log::debug!("XSRF token request: {e}");
                return false;
            }
        };
        let header_value = |name: &str| {
            response
                .headers()
                .get(name)
                .filter(|v| !v.is_empty() && v.len() <= XSRF_BYTES_MAX)
                .cloned()
        };
        let header = header_value(XSRF_HEADER_NAME_HEADER)
            .and_then(|v| ureq::http::HeaderName::from_bytes(v.as_bytes()).ok())
            .unwrap_or(ureq::http::HeaderName::from_static("x-xsrf-token"));
        // Santa counts a 200 as a fetched token even when the header is missing.
        self.xsrf = header_value(XSRF_TOKEN_HEADER).map(|token| Xsrf { header, token });
        true
    }
}

fn status_error(status: u16, tries: u32, detail: String) -> RequestError {
    RequestError::Status {
        status,
        tries,
        detail,
    }
}

/// The wait before try `attempt` (2, 3, ...): `first`, then doubling; saturating.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(2).min(20);
    first.saturating_mul(1 << doublings)
}

/// Printable characters of a server's text, shortened, for an error message.
fn printable(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    shorten(clean.trim()).to_owned()
}

/// Compresses a request body; the `Content-Encoding` to send with it.
pub(crate) fn compress(
    json: Vec<u8>,
    encoding: ContentEncoding,
) -> Result<(Vec<u8>, Option<&'static str>), RequestError> {
    // Santa's compressors return nil for empty input, and the body then goes as it is.
    if json.is_empty() || encoding == ContentEncoding::None {
        return Ok((json, None));
    }
    let encode_error = |e: std::io::Error| RequestError::Encode(e.to_string());
    let compressed = match encoding {
        ContentEncoding::Deflate => {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&json).map_err(encode_error)?;
            z.finish().map_err(encode_error)?
        }
        ContentEncoding::Gzip => {
            let mut z = GzEncoder::new(Vec::new(), Compression::default());
            z.write_all(&json).map_err(encode_error)?;
            z.finish().map_err(encode_error)?
        }
        ContentEncoding::None => json,
    };
    Ok((compressed, encoding.header_value()))
}

/// Strips Santa's recognized XSSI prefixes: `)]}'` + newline, or `])}`.
pub fn strip_xssi(body: &[u8]) -> &[u8] {
    body.strip_prefix(b")]}'\n")
        .or_else(|| body.strip_prefix(b"])}"))
        .unwrap_or(body)
}

/// Parses an answer: XSSI stripped, unknown fields ignored, empty body = default message.
pub(crate) fn parse_answer<R: DeserializeOwned + Default>(
    body: &[u8],
    message: &'static str,
) -> Result<R, RequestError> {
    if body.is_empty() {
        return Ok(R::default());
    }
    let json = strip_xssi(body);
    let text = std::str::from_utf8(json).map_err(|e| RequestError::Malformed {
        message,
        reason: format!("not UTF-8: {e}"),
    })?;
    // A message is a JSON object (serde would also take a struct from an array).
    if !text.trim_start().starts_with('{') {
        return Err(RequestError::Malformed {
            message,
            reason: format!("not a JSON object: {:?}", shorten(text.trim_start())),
        });
    }
    serde_json::from_str(text).map_err(|e| RequestError::Malformed {
        message,
        reason: shorten(&e.to_string()).to_owned(),
    })
}

/// The rustls settings: the CA bundle's roots or the system's, and the client certificate.
pub(crate) fn tls_config(files: &TlsFiles) -> Result<TlsConfig, ConfigError> {
    let roots = match &files.ca_bundle {
        Some(path) => {
            let pem = read_tls_file("CA bundle", path)?;
            let certs = pem_certificates("CA bundle", path, &pem)?;
            RootCerts::new_with_certs(&certs)
        }
        None => RootCerts::PlatformVerifier,
    };
    let client_cert = match (&files.client_cert, &files.client_key) {
        (None, None) => None,
        (Some(cert_path), Some(key_path)) => {
            let pem = read_tls_file("client certificate", cert_path)?;
            let chain = pem_certificates("client certificate", cert_path, &pem)?;
            let key_pem = read_tls_file("client key", key_path)?;
            let key = pem_private_key(key_path, &key_pem)?;
            Some(ClientCert::new_with_certs(&chain, key))
        }
        _ => return Err(ConfigError::ClientCertPair),
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client_cert)
        .build())
}

fn pem_certificates(
    what: &'static str,
    path: &std::path::Path,
    pem: &[u8],
) -> Result<Vec<Certificate<'static>>, ConfigError> {
    let fail = |reason: String| ConfigError::TlsFile {
        what,
        path: path.to_owned(),
        reason,
    };
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(cert) = item.map_err(|e| fail(e.to_string()))? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

fn pem_private_key(path: &std::path::Path, pem: &[u8]) -> Result<PrivateKey<'static>, ConfigError> {
    let fail = |reason: String| ConfigError::TlsFile {
        what: "client key",
        path: path.to_owned(),
        reason,
    };
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::PrivateKey(key) = item.map_err(|e| fail(e.to_string()))? {
            return Ok(key);
        }
    }
    Err(fail("no PEM private key in it".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_is_zlib_and_gzip_is_gzip() {
        let json = br#"{"machine_id":"m"}"#.to_vec();
        let (z, enc) = compress(json.clone(), ContentEncoding::Deflate).unwrap();
        assert_eq!(enc, Some("deflate"));
        assert_eq!(z[0], 0x78, "a zlib header");
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, json);
        let (g, enc) = compress(json.clone(), ContentEncoding::Gzip).unwrap();
        assert_eq!((enc, &g[..2]), (Some("gzip"), &[0x1f, 0x8b][..]));
        assert_eq!(
            compress(json.clone(), ContentEncoding::None).unwrap(),
            (json, None)
        );
        assert_eq!(
            compress(Vec::new(), ContentEncoding::Deflate).unwrap(),
            (Vec::new(), None)
        );
    }

    #[test]
    fn both_xssi_prefixes_are_stripped() {
        assert_eq!(strip_xssi(b")]}'\n{}"), b"{}");
        assert_eq!(strip_xssi(b"])}{}"), b"{}");
        assert_eq!(strip_xssi(b")]}'{}"), b")]}'{}");
        assert_eq!(strip_xssi(b"{}"), b"{}");
    }

    #[test]
    fn answers_parse_or_say_why_not() {
        let r: crate::proto::PreflightResponse = parse_answer(b"", "PreflightResponse").unwrap();
        assert_eq!(r, Default::default());
        for bad in [
            &b"<html>"[..],
            b"\xff\xfe",
            b"[1,2]",
            b"{\"batch_size\":-4}",
        ] {
            let err = parse_answer::<crate::proto::PreflightResponse>(bad, "PreflightResponse")
                .unwrap_err();
            assert!(matches!(err, RequestError::Malformed { .. }), "{err}");
        }
    }

    #[test]
    fn backoff_doubles_from_the_first_wait() {
        let first = Duration::from_secs(4);
        let waits: Vec<u64> = (2..=5).map(|a| backoff(first, a).as_secs()).collect();
        assert_eq!(waits, [4, 8, 16, 32]);
        assert_eq!(backoff(Duration::MAX, 9), Duration::MAX);
    }
}
