//! demo on Linux (see `main.rs`).

use santa_testkit::{PrivateMount, TmpfsOptions};
use santad::control::{self, Reply, Request};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};


fn copy_true(to: &Path, salt: &str) -> Result<(), String> {
    let src = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no `true` binary")?;
    let mut bytes = std::fs::read(src).map_err(|e| e.to_string())?;
    bytes.extend_from_slice(salt.as_bytes());
    std::fs::write(to, bytes).map_err(|e| e.to_string())?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    let hash = santa_signing::hash_path(path, &Default::default()).map_err(|e| e.to_string())?;
    Ok(hash.sha256.to_string())
}

/// The allow rule, straight into the rules database (`make demo`).
fn allow_in_database(db: &Path, sha256: &str) -> Result<(), String> {
    let mut store = santa_rules::RuleStore::open(db).map_err(|e| e.to_string())?;
    let id = santa_rules::RuleIdentifier::parse(santa_rules::RuleType::Binary, sha256)
        .map_err(|e| e.to_string())?;
    store
        .apply(
            &[santa_rules::RuleChange::Upsert(santa_rules::Rule::new(
                id,
                santa_rules::RuleState::Allow,
            ))],
            santa_rules::Cleanup::None,
        )
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `make demo-sync`: the repo's sync test server on loopback, telling this host to run in
/// Lockdown with one Binary allow rule, Moroz-style.
fn sync_server(sha256: &str) -> Result<santa_sync::testserver::TestServer, String> {
    use santa_sync::testserver::{ServerConfig, TestServer};
    let global = format!(
        "client_mode = \"LOCKDOWN\"\nfull_sync_interval = 600\n\n[[rules]]\n\
         rule_type = \"BINARY\"\npolicy = \"ALLOWLIST\"\nidentifier = \"{sha256}\"\n"
    );
    println!("sync server's global.toml:\n{global}");
    let config = ServerConfig::from_global_toml(&global).map_err(|e| e.to_string())?;
    TestServer::start(config).map_err(|e| e.to_string())
}


/// Waits until santad reports `mode` (a sync's mode arrives through a reload).
fn wait_mode(socket: &Path, mode: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Reply::Status(s) = ask_santad(socket, &Request::Status)?
            && s.daemon.mode == mode
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("santad did not move to {mode}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ask_santad(socket: &Path, request: &Request) -> Result<Reply, String> {
    control::ask(socket, request, Duration::from_secs(600))
}

fn run(with_sync: bool) -> Result<(), String> {
    let mount = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 64 << 20,
        exec: true,
    })
    .map_err(|e| e.to_string())?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (allowed, unknown) = (mount.join("allowed-tool"), mount.join("unknown-tool"));
    copy_true(&allowed, "allowed")?;
    copy_true(&unknown, "unknown")?;
    let db = state.path().join("rules.db");
    let socket = state.path().join("santad.sock");
    let (mode, server, sync_keys) = if with_sync {
        let server = sync_server(&sha256_hex(&allowed)?)?;
        let keys = format!(
            "SyncBaseURL = \"{}\"\nMachineID = \"demo-host\"\nEventsDbPath = \"{}\"\n\
             SyncStatePath = \"{}\"\n",
            server.base_url(),
            state.path().join("events.db").display(),
            state.path().join("sync-state.json").display()
        );
        ("MONITOR", Some(server), keys)
    } else {
        allow_in_database(&db, &sha256_hex(&allowed)?)?;
        ("LOCKDOWN", None, String::new())
    };
    let log = state.path().join("santa.log");
    let config = state.path().join("santad.toml");
    std::fs::write(
        &config,
        format!(
            "ClientMode = \"{mode}\"\nWatchPaths = [\"{}\"]\nEventLogType = \"file\"\nEventLogPath = \"{}\"\nRulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\n{sync_keys}",
            mount.path().display(),
            log.display(),
            db.display(),
            socket.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "santad in {mode} (its config file), watching only {}",
        mount.path().display()
    );
    let santad = santa_testkit::start_santad(&config, "demo", "santad running", false)?;
    if server.is_some() {
        wait_mode(&socket, "Lockdown")?;
        println!("santad synced: Lockdown and the allow rule came from the server");
    }
    for (what, path) in [
        ("allowed by a Binary rule", &allowed),
        ("unknown", &unknown),
    ] {
        match Command::new(path).status() {
            Ok(status) => println!("exec {} ({what}): ran, {status}", path.display()),
            Err(e) => println!("exec {} ({what}): refused: {e}", path.display()),
        }
    }
    let start = Instant::now();
    while std::fs::read_to_string(&log)
        .map(|l| l.lines().count())
        .unwrap_or(0)
        < 2
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("\ndecision log ({}):", log.display());
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    if let Some(server) = &server {
        // The spool writes within 250 ms; then `santactl sync` uploads.
        std::thread::sleep(Duration::from_millis(500));
        let request = Request::Sync {
            clean: control::CleanupSpec::None,
        };
        if let Reply::Synced(r) = ask_santad(&socket, &request)? {
            println!("\nsantactl sync: {} event(s) uploaded", r.events_uploaded);
        }
        println!("events the server received:");
        for event in server.events() {
            println!("  {event}");
        }
    }
    drop(santad);
    Ok(())
}

pub(crate) fn main() -> ExitCode {
    match run(std::env::args().any(|a| a == "--sync")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
