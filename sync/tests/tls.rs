//! https: the server's certificate checked against the configured CA bundle (not the system's
//! roots), and a client certificate presented for mTLS. The certificates are made here (rcgen);
//! the server is a minimal rustls HTTPS responder on loopback that can require a client
//! certificate and records whether one came.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa};
use rcgen::{Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use santa_sync::proto::ClientMode;
use santa_sync::{SyncConfig, SyncError, SyncKind};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
struct Pki {
    ca: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    client_cert: CertificateDer<'static>,
    files: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "santa-sync test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            (cert, key)
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into()],
            "sync server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            Vec::new(),
            "santad host",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let files = tempfile::tempdir().expect("a folder");
        let write = |name: &str, text: String| {
            std::fs::write(files.path().join(name), text).expect("write PEM");
        };
        write("ca.pem", ca_cert.pem());
        write("client.pem", client_cert.pem());
        write("client.key", client_key.serialize_pem());
        Pki {
            ca: ca_cert.der().clone(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
            client_cert: client_cert.der().clone(),
            files,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }
}

/// What the HTTPS server saw of each connection that completed a request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    client_cert: Option<Vec<u8>>,
}

/// Starts an HTTPS responder on 127.0.0.1; its thread lives until the test process ends.
fn https_server(pki: &Pki, require_client_cert: bool) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).expect("CA root");
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
    let config = Arc::new(
        builder
            .with_single_cert(vec![pki.server_cert.clone()], key)
            .expect("server certificate"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("https://{}/", listener.local_addr().expect("address"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let conn = rustls::ServerConnection::new(config.clone()).expect("TLS session");
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            if let Some(seen) = answer_one(&mut tls) {
                log.lock().expect("log").push(seen);
            }
        }
    });
    (url, seen)
}

/// Reads one HTTP request and answers it; `None` if the handshake or the read failed.
fn answer_one(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
) -> Option<Seen> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let body = if path.contains("/preflight/") {
        r#"{"client_mode":"LOCKDOWN"}"#
    } else if path.contains("/ruledownload/") {
        r#"{"rules":[{"identifier":"EQHXZ8M8AV","policy":"ALLOWLIST","rule_type":"TEAMID"}]}"#
    } else {
        "{}"
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes()).ok()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(Seen {
        path,
        client_cert: tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec()),
    })
}

fn config(url: &str, ca: Option<&Path>) -> SyncConfig {
    let mut config = config_for(url);
    config.limits.tries_max = 1;
    config.tls.ca_bundle = ca.map(Path::to_owned);
    config
}

fn assert_tls_failure(result: Result<santa_sync::SyncReport, SyncError>) {
    assert_no_answer(&result.expect_err("the sync should fail"));
}

#[test]
fn https_with_the_ca_bundle_syncs() {
    let pki = Pki::new();
    let (url, seen) = https_server(&pki, false);
    let mut host = FakeHost::new();
    sync_with(
        &config(&url, Some(&pki.file("ca.pem"))),
        &mut host,
        SyncKind::Normal,
    )
    .expect("a sync over https");
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    assert_eq!(host.rule_ids(), ["EQHXZ8M8AV"]);
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
}

#[test]
fn a_server_the_ca_bundle_did_not_sign_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let (url, seen) = https_server(&pki, false);
    let mut host = FakeHost::new();
    // The system's roots do not know the test CA, and another CA's bundle does not either.
    assert_tls_failure(sync_with(&config(&url, None), &mut host, SyncKind::Normal));
    assert_tls_failure(sync_with(
        &config(&url, Some(&other.file("ca.pem"))),
        &mut host,
        SyncKind::Normal,
    ));
    assert!(seen.lock().unwrap().is_empty());
    assert!(host.settings.is_empty());
}

#[test]
fn mtls_presents_the_client_certificate() {
    let pki = Pki::new();
    let (url, seen) = https_server(&pki, true);
    let mut host = FakeHost::new();
    let mut without = config(&url, Some(&pki.file("ca.pem")));
    assert_tls_failure(sync_with(&without, &mut host, SyncKind::Normal));

    without.tls.client_cert = Some(pki.file("client.pem"));
    without.tls.client_key = Some(pki.file("client.key"));
    sync_with(&without, &mut host, SyncKind::Normal).expect("a sync with a client certificate");
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|s| s.client_cert.as_deref() == Some(pki.client_cert.as_ref())),
        "every request came with the client certificate"
    );
}
