//! The client against a real sync server users run: Moroz, built from
//! `../shared/sync-servers/moroz` (its README: Debian's `golang-go`, vendored sources, no
//! network) into this build's target directory, started on loopback with a config folder of its
//! own. A machine that cannot build Moroz fails this test; it does not skip.

mod common;

use common::*;
use santa_sync::SyncKind;
use santa_sync::proto::{ClientMode, Policy, RuleType};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Moroz source tarball: `$MOROZ_SRC`, or `shared/` beside the repository.
fn moroz_source() -> PathBuf {
    if let Some(path) = std::env::var_os("MOROZ_SRC") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/sync-servers/moroz/moroz-src.tar.gz")
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds Moroz once per target directory (later runs reuse the binary) and returns its path.
fn moroz_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_moroz).clone()
}

fn build_moroz() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moroz");
    let binary = root.join("moroz-bin");
    if binary.exists() {
        return binary;
    }
    let source = moroz_source();
    assert!(
        source.exists(),
        "Moroz source not found at {} (set MOROZ_SRC)",
        source.display()
    );
    assert!(
        Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "Go is needed to build Moroz: apt-get install -y golang-go"
    );
    // A private build folder per process, then an atomic rename: parallel test processes may
    // both build, and the last rename wins with an identical binary.
    let work = root.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("a build folder");
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(&source)
            .arg("-C")
            .arg(&work),
        "unpacking Moroz",
    );
    let built = work.join("moroz-bin");
    run(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&built)
            .arg("./cmd/moroz")
            .current_dir(work.join("moroz"))
            .env("GOFLAGS", "-mod=vendor")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOCACHE", root.join("gocache"))
            .env("GOPATH", root.join("gopath")),
        "building Moroz",
    );
    std::fs::rename(&built, &binary).expect("the built Moroz moved into place");
    let _ = std::fs::remove_dir_all(&work);
    binary
}

/// A running Moroz, killed when dropped.
struct Moroz {
    child: Child,
    addr: SocketAddr,
}

impl Moroz {
    fn start(configs: &Path, events: &Path) -> Moroz {
        let binary = moroz_binary();
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let child = Command::new(binary)
            .arg("--use-tls=false")
            .arg(format!("--http-addr={addr}"))
            .arg("--configs")
            .arg(configs)
            .arg("--persist-events=true")
            .arg("--event-dir")
            .arg(events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Moroz");
        let moroz = Moroz { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "Moroz did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        moroz
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1/santa/", self.addr)
    }
}

impl Drop for Moroz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event files Moroz wrote: `<event-dir>/<file_sha256>/<machine_id>/<time>.json`.
fn moroz_events(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for sha in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let machine_dir = sha.path().join(MACHINE);
        for file in std::fs::read_dir(&machine_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(file.path()).expect("Moroz's event file");
            found.push((
                sha.file_name().to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("Moroz's event file is JSON"),
            ));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn moroz_sets_mode_and_rules_and_takes_events() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    let events = dir.path().join("events");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(
        configs.join("global.toml"),
        format!(
            r#"client_mode = "LOCKDOWN"
batch_size = 2
enable_transitive_rules = true
full_sync_interval = 900
blocked_path_regex = "^/tmp/blocked/"

[[rules]]
rule_type = "BINARY"
policy = "BLOCKLIST"
identifier = "{}"
custom_msg = "blocked by the fleet"

[[rules]]
rule_type = "TEAMID"
policy = "ALLOWLIST"
identifier = "EQHXZ8M8AV"

[[rules]]
rule_type = "SIGNINGID"
policy = "ALLOWLIST_COMPILER"
identifier = "platform:com.apple.clang"
"#,
            binary(7)
        ),
    )
    .unwrap();
    let moroz = Moroz::start(&configs, &events);
    let mut host = FakeHost::new().with_events(3);

    let report = sync_with(&config_for(&moroz.base_url()), &mut host, SyncKind::Normal)
        .expect("a sync against Moroz");

    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    let rules: Vec<(RuleType, Policy, String)> = host.applied[0]
        .rules
        .iter()
        .map(|r| (r.rule_type, r.policy, r.identifier.clone()))
        .collect();
    assert_eq!(
        rules,
        [
            (RuleType::Binary, Policy::Blocklist, binary(7)),
            (RuleType::TeamId, Policy::Allowlist, "EQHXZ8M8AV".into()),
            (
                RuleType::SigningId,
                Policy::AllowlistCompiler,
                "platform:com.apple.clang".into()
            ),
        ]
    );
    assert_eq!(host.applied[0].rules[0].custom_msg, "blocked by the fleet");
    assert_eq!(host.applied[0].kind, SyncKind::Normal);
    let settings = &host.settings[0];
    assert_eq!(settings.batch_size, 2);
    assert_eq!(settings.full_sync_interval_secs, Some(900));
    assert_eq!(settings.enable_transitive_rules, Some(true));
    assert_eq!(
        settings.blocked_path_regex.as_deref(),
        Some("^/tmp/blocked/")
    );
    assert!(
        report.postflight_error.is_none(),
        "{:?}",
        report.postflight_error
    );
    assert_eq!((report.events_uploaded, report.event_batches), (3, 2));
    assert!(host.spool.is_empty());

    // Moroz parsed each event under Santa's names: it files them by file_sha256, and its record
    // carries the decision and the other fields it knows.
    let stored = moroz_events(&events);
    assert_eq!(stored.len(), 3, "{stored:?}");
    for (id, (sha, event)) in (1u64..).zip(&stored) {
        assert_eq!(*sha, format!("{id:064x}"));
        assert_eq!(event["file_sha256"], *sha);
        assert_eq!(event["decision"], "BLOCK_UNKNOWN");
        assert_eq!(event["file_name"], format!("tool{id}"));
        assert_eq!(event["file_path"], "/tmp/work");
        assert_eq!(event["executing_user"], "alice");
        assert_eq!(event["pid"], 2222);
        assert_eq!(event["parent_name"], "bash");
    }
}

#[test]
fn moroz_per_machine_config_and_clean_sync() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(configs.join("global.toml"), "client_mode = \"LOCKDOWN\"\n").unwrap();
    std::fs::write(
        configs.join(format!("{MACHINE}.toml")),
        format!(
            "client_mode = \"MONITOR\"\nclean_sync = true\n\n[[rules]]\nrule_type = \"BINARY\"\npolicy = \"REMOVE\"\nidentifier = \"{}\"\n\n[[rules]]\nrule_type = \"CERTIFICATE\"\npolicy = \"BLOCKLIST\"\nidentifier = \"{}\"\n",
            binary(1),
            binary(2)
        ),
    )
    .unwrap();
    let moroz = Moroz::start(&configs, &dir.path().join("events"));
    let mut host = FakeHost::new().with_events(1);
    host.facts.client_mode = ClientMode::Lockdown;

    let report = sync_with(&config_for(&moroz.base_url()), &mut host, SyncKind::Normal)
        .expect("a sync against Moroz");

    assert_eq!(
        host.facts.client_mode,
        ClientMode::Monitor,
        "per-machine file"
    );
    assert_eq!(
        report.settings.sync_kind,
        SyncKind::Clean,
        "Moroz's clean_sync"
    );
    assert_eq!(host.applied[0].kind, SyncKind::Clean);
    assert_eq!(
        host.rule_ids(),
        [binary(2)],
        "REMOVE removed, BLOCKLIST added"
    );
    assert!(report.events_deferred);
    assert_eq!(host.spool.len(), 1, "a clean sync keeps the events");
}
