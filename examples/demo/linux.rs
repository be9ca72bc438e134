//! demo on Linux (see `main.rs`).

use santa_testkit::{PrivateMount, TmpfsOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Kills the santad we started (by its pid) when dropped, before the mount guard unmounts.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn santad_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/demo → target/<profile>/santad
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("santad"));
    match candidate {
        Some(p) if p.exists() => Ok(p),
        _ => Err("santad binary not found next to the example; run `make demo`".into()),
    }
}

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

fn run() -> Result<(), String> {
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
    let mut store = santa_rules::RuleStore::open(&db).map_err(|e| e.to_string())?;
    let id =
        santa_rules::RuleIdentifier::parse(santa_rules::RuleType::Binary, &sha256_hex(&allowed)?)
            .map_err(|e| e.to_string())?;
    store
        .apply(
            &[santa_rules::RuleChange::Upsert(santa_rules::Rule::new(
                id,
                santa_rules::RuleState::Allow,
            ))],
            santa_rules::Cleanup::None,
        )
        .map_err(|e| e.to_string())?;
    drop(store);
    let log = state.path().join("santa.log");
    let config = state.path().join("santad.toml");
    std::fs::write(
        &config,
        format!(
            "ClientMode = \"LOCKDOWN\"\nWatchPaths = [\"{}\"]\nEventLogType = \"file\"\nEventLogPath = \"{}\"\nRulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\n",
            mount.path().display(),
            log.display(),
            db.display(),
            state.path().join("santad.sock").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "santad in Lockdown, watching only {}",
        mount.path().display()
    );
    let mut child = Command::new(santad_binary()?)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let santad = Running(child);
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("santad running") => break,
            Some(Ok(_)) => {}
            _ => return Err("santad did not start (are you root?)".into()),
        }
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
    drop(santad);
    Ok(())
}

pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
