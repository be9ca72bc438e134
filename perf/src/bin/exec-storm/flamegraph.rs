//! `--flamegraph`: santad's CPU profile under the workloads, rendered with inferno.

use crate::harness::Harness;
use crate::listener::Config;
use crate::workloads::{alternate, storm};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `--flamegraph`: records santad under a storm with `perf record -e cpu-clock` and renders
/// the folded stacks to perf/results/flamegraph.svg with inferno.
pub(crate) fn flamegraph(h: &Harness, storm_execs: usize) -> Result<PathBuf, String> {
    let mut listener = h
        .start(Config::SantadMonitor)?
        .ok_or("santad did not start")?;
    let pid = listener.pid();
    let data = h.state.path().join("perf.data");
    let mut record = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "--call-graph",
            "dwarf,16384",
            "-q",
            "-o",
        ])
        .arg(&data)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("perf record: {e} (install linux-perf)"))?;
    std::thread::sleep(Duration::from_millis(500));
    // First execs (hashing) and a mixed storm (cache hits, notifications, logging).
    alternate(&h.distinct.iter().collect::<Vec<_>>())?;
    let (_, refused) = storm(h, storm_execs, 0);
    // Repeated execs of the user-owned binary: no kernel cache, santad's cache hit every exec.
    alternate(&vec![&h.repeated_user; storm_execs])?;
    // SAFETY: signalling the perf process we started.
    unsafe { libc::kill(record.id() as i32, libc::SIGINT) };
    let _ = record.wait();
    listener.stop();
    if refused > 0 {
        return Err(format!("{refused} execs refused under santad Monitor"));
    }
    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .map_err(|e| format!("perf script: {e}"))?;
    if !script.status.success() {
        return Err(format!(
            "perf script failed: {}",
            String::from_utf8_lossy(&script.stderr)
        ));
    }
    let mut folded = Vec::new();
    let mut folder =
        inferno::collapse::perf::Folder::from(inferno::collapse::perf::Options::default());
    inferno::collapse::Collapse::collapse(&mut folder, &script.stdout[..], &mut folded)
        .map_err(|e| format!("folding: {e}"))?;
    let mut svg = Vec::new();
    let mut options = inferno::flamegraph::Options::default();
    options.title = "santad under exec-storm (perf record -e cpu-clock)".into();
    inferno::flamegraph::from_reader(&mut options, &folded[..], &mut svg)
        .map_err(|e| format!("rendering: {e}"))?;
    let path = santa_perf::results_dir().join("flamegraph.svg");
    std::fs::create_dir_all(santa_perf::results_dir()).map_err(|e| e.to_string())?;
    std::fs::write(&path, svg).map_err(|e| e.to_string())?;
    std::fs::write(santa_perf::results_dir().join("flamegraph.folded"), &folded)
        .map_err(|e| e.to_string())?;
    Ok(path)
}
