//! sync-bench on Linux (see `main.rs`).

use santa_perf::stats::percentile;
use santa_perf::{machine_summary, spawn_wait, write_result};
use santa_sync::testserver::{ServerConfig, TestServer};
use santa_testkit::{PrivateMount, Rng, TmpfsOptions};
use santad::control::{self, CleanupSpec, Reply, Request};
use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const RULES: usize = 100_000;
const BASELINE: Duration = Duration::from_secs(3);



fn rules_toml(n: usize) -> String {
    let mut rng = Rng::new(0x5eed_5a7a);
    let mut text = String::with_capacity(n * 120);
    text.push_str("client_mode = \"MONITOR\"\n");
    for _ in 0..n {
        let _ = write!(
            text,
            "[[rules]]\nrule_type = \"BINARY\"\npolicy = \"BLOCKLIST\"\nidentifier = \""
        );
        for _ in 0..4 {
            let _ = write!(text, "{:016x}", rng.next_u64());
        }
        text.push_str("\"\n");
    }
    text
}

/// Execs `tool` until `done` says stop; the latencies in ns and the refusals.
fn exec_loop(tool: &CString, done: impl Fn() -> bool) -> (Vec<i64>, usize) {
    let mut lat = Vec::new();
    let mut refused = 0;
    while !done() {
        match spawn_wait(tool) {
            Ok(ns) => lat.push(ns as i64),
            Err(_) => refused += 1,
        }
    }
    lat.sort_unstable();
    (lat, refused)
}

fn row(name: &str, lat: &[i64]) -> String {
    let us = |q: f64| percentile(lat, q) as f64 / 1000.0;
    format!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        lat.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    )
}

fn ask_santad(socket: &Path, request: &Request) -> Result<Reply, String> {
    control::ask(socket, request, Duration::from_secs(600))
}

fn run() -> Result<(), String> {
    let mount = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 64 << 20,
        exec: true,
    })
    .map_err(|e| e.to_string())?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    let tool = mount.join("tool");
    std::fs::copy("/usr/bin/true", &tool).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let server = TestServer::start(ServerConfig::default()).map_err(|e| e.to_string())?;
    let socket = state.path().join("santad.sock");
    let config = state.path().join("santad.toml");
    let s = state.path();
    std::fs::write(
        &config,
        format!(
            "ClientMode = \"MONITOR\"\nWatchPaths = [\"{}\"]\nEventLogType = \"null\"\n\
             RulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\nSyncBaseURL = \"{}\"\n\
             MachineID = \"bench\"\nEventsDbPath = \"{}\"\nSyncStatePath = \"{}\"\n",
            mount.path().display(),
            s.join("rules.db").display(),
            socket.display(),
            server.base_url(),
            s.join("events.db").display(),
            s.join("sync-state.json").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let _santad = santa_testkit::start_santad(&config, "perf-sync", "sync: normal sync", false)?;
    let text = rules_toml(RULES);
    server.set_config(ServerConfig::from_global_toml(&text).map_err(|e| e.to_string())?);
    let tool_c = CString::new(tool.to_str().ok_or("path")?).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (baseline, _) = exec_loop(&tool_c, || started.elapsed() > BASELINE);

    let socket2 = socket.clone();
    let syncing = std::thread::spawn(move || {
        let t = Instant::now();
        let reply = ask_santad(
            &socket2,
            &Request::Sync {
                clean: CleanupSpec::None,
            },
        );
        (t.elapsed(), reply)
    });
    let (during, refused) = exec_loop(&tool_c, || syncing.is_finished());
    let (wall, reply) = syncing.join().map_err(|_| "the sync thread panicked")?;
    let reply = match reply? {
        Reply::Synced(r) => r,
        other => return Err(format!("unexpected reply {other:?}")),
    };
    if reply.rules_processed as usize != RULES {
        return Err(format!("{} rules stored, not {RULES}", reply.rules_processed));
    }
    let p999 = percentile(&baseline, 0.999);
    let slow = during.iter().filter(|&&ns| ns > p999).count();
    let mut md = String::new();
    let _ = writeln!(md, "# A sync of {RULES} rules applied while execs run\n");
    let _ = writeln!(md, "{}\n", machine_summary());
    let _ = writeln!(
        md,
        "Command: `make perf-sync` (perf/src/bin/sync-bench). One ruledownload page of {RULES} \
         Binary block rules from the repo's sync test server on loopback; santad in Monitor on a \
         private tmpfs; a cached tool exec'd in a loop, alone for {} s, then during the sync.\n",
        BASELINE.as_secs()
    );
    let _ = writeln!(md, "| | ms |\n|---|---|");
    let _ = writeln!(md, "| `santactl sync`, wall (preflight to postflight) | {} |", wall.as_millis());
    let _ = writeln!(md, "| sync as santad timed it | {} |", reply.elapsed_ms);
    let _ = writeln!(
        md,
        "| rules applied (one transaction, snapshot swap, cache flush) | {} |\n",
        reply.rules_apply_ms
    );
    let _ = writeln!(md, "Exec latency (µs):\n");
    let _ = writeln!(md, "| phase | execs | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|");
    md.push_str(&row("baseline (no sync)", &baseline));
    md.push_str(&row("during the sync", &during));
    let ratio = percentile(&during, 0.99) as f64 / percentile(&baseline, 0.99).max(1) as f64;
    let _ = writeln!(
        md,
        "\np99 during / baseline: {ratio:.2}×. Execs during the sync slower than the baseline's \
         p99.9: {slow} of {} (the first exec after the cache flush re-evaluates the tool). \
         Execs refused: {refused}.",
        during.len()
    );
    let target = if reply.rules_apply_ms < 2000 { "met" } else { "MISSED" };
    let _ = writeln!(md, "\nTarget (apply 100k rules under 2 s): {target}.");
    print!("{md}");
    let path = write_result("sync.md", &md).map_err(|e| e.to_string())?;
    println!("\nwritten to {}", path.display());
    if target == "MISSED" {
        return Err("the apply target was missed".into());
    }
    Ok(())
}

pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sync-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
