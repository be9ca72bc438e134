//! The exec-storm harness: what a listener costs every exec, measured side by side.
//!
//! `exec-storm [--quick] [--rounds N] [--only CONFIG,...] [--raw FILE.csv] [--flamegraph]` (run
//! by `make perf`, as root; `--raw` also writes every per-exec difference and watched latency;
//! `--help` lists the options).
//!
//! Method (see ../shared/PERF-NOTES.md): binaries live on a private ext2 loop image (the watched
//! mount) and identical copies on a private tmpfs nobody watches (the control). Each workload
//! execs watched and control copies alternately (A B A B …) with posix_spawn + waitpid, and the
//! per-exec overhead is the watched time minus the control time, minus the same difference
//! measured with no listener at all, in the same run. Configurations are interleaved round by
//! round in rotating order, so drift hits them all alike. The listener's CPU per exec comes from
//! its threads' schedstat.
//!
//! The repeated exec runs twice, on two copies of the same bytes: one owned by root, mode 0755
//! (santad places a kernel allow-cache mark after the first exec, so later execs never reach
//! it), and one owned by nobody (65534:65534), mode 0755 (never kernel-cached: every exec is a
//! permission event answered from santad's user-space cache), each beside the minimal responder.
//!
//! Safety: listeners are only ever pointed at the private image (santad and the minimal
//! responder by mount mark, fapolicyd by a filesystem type only that image uses); each is
//! stopped by the pid we started, and both mounts are removed at the end, also on failure.
//!
//! By job: `cli` (the command line), `harness` (the binaries and mounts), `listener` (starting
//! and stopping each configuration; `fapolicyd` for its own), `process` (one exec timed, a
//! listener's CPU and memory), `workloads`, `stats`, `context` (the run's circumstances),
//! `report` (RESULTS.md, `--raw`), `chart`, `flamegraph`; the rounds themselves run here.

#[cfg(target_os = "linux")]
mod chart;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod context;
#[cfg(target_os = "linux")]
mod fapolicyd;
#[cfg(target_os = "linux")]
mod flamegraph;
#[cfg(target_os = "linux")]
mod harness;
#[cfg(target_os = "linux")]
mod listener;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod stats;
#[cfg(target_os = "linux")]
mod workloads;

#[cfg(target_os = "linux")]
use chart::chart;
#[cfg(target_os = "linux")]
use cli::{Args, usage};
#[cfg(target_os = "linux")]
use context::{loadavg, openssl_rate, source_state};
#[cfg(target_os = "linux")]
use flamegraph::flamegraph;
#[cfg(target_os = "linux")]
use harness::{Harness, Pair};
// `Config` and `Listener` also for fapolicyd.rs, which names them `super::`.
#[cfg(target_os = "linux")]
use listener::{Config, Listener};
#[cfg(target_os = "linux")]
use process::{cpu_ns, spawn_wait};
#[cfg(target_os = "linux")]
use report::{RenderInput, render, write_raw};
#[cfg(target_os = "linux")]
use santa_perf::write_result;
#[cfg(target_os = "linux")]
use stats::{Results, trimmed_mean};
#[cfg(target_os = "linux")]
use std::fmt::Write as _;
#[cfg(target_os = "linux")]
use std::time::Instant;
#[cfg(target_os = "linux")]
use workloads::{Run, Workload, alternate, measure_rss, storm};

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Args {
        help,
        quick,
        only,
        flamegraph: profile,
        raw,
        sizes,
    } = Args::parse(&args);
    if help {
        print!("{}", usage());
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("exec-storm: needs root (fanotify permission events, mounts)");
        std::process::exit(2);
    }
    let configs: Vec<Config> = Config::ALL
        .into_iter()
        .filter(|c| {
            *c == Config::None || only.as_ref().is_none_or(|o| o.iter().any(|k| k == c.key()))
        })
        .collect();
    let began = Instant::now();
    let load_start = loadavg();
    let source = source_state();
    eprintln!("exec-storm: preparing binaries…");
    let harness = match Harness::new(&sizes) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("exec-storm: {e}");
            std::process::exit(1);
        }
    };
    if profile {
        match flamegraph(&harness, sizes.storm_execs) {
            Ok(path) => println!("flamegraph: {}", path.display()),
            Err(e) => {
                eprintln!("exec-storm --flamegraph: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let openssl = openssl_rate();
    let mut skipped: Vec<(Config, String)> = Vec::new();
    let mut results: Results = Default::default();
    for round in 0..sizes.rounds {
        for k in 0..configs.len() {
            let config = configs[(k + round) % configs.len()];
            if skipped.iter().any(|(c, _)| *c == config) {
                continue;
            }
            eprintln!("round {}/{}: {}", round + 1, sizes.rounds, config.name());
            let mut listener = match harness.start(config) {
                Ok(l) => l,
                Err(reason) => {
                    eprintln!("  skipped: {reason}");
                    skipped.push((config, reason));
                    continue;
                }
            };
            let index = Config::ALL.iter().position(|c| *c == config).unwrap_or(0);
            let pid = listener.as_ref().map_or(0, Listener::cpu_pid);
            let measure = |workload: Workload,
                           results: &mut Results,
                           f: &dyn Fn() -> Result<Run, String>|
             -> Result<(), String> {
                let cpu0 = if pid > 0 { cpu_ns(pid) } else { 0 };
                let run = f()?;
                let cpu1 = if pid > 0 { cpu_ns(pid) } else { 0 };
                let s = results.entry((index, workload)).or_default();
                s.rounds.push((round, trimmed_mean(&run.values)));
                s.round_cpu
                    .push((cpu1.saturating_sub(cpu0), run.values.len() + run.refused));
                s.execs += run.values.len() + run.refused;
                s.refused += run.refused;
                s.values.extend(run.values);
                s.latencies.extend(run.latencies);
                s.listener_cpu_ns += cpu1.saturating_sub(cpu0);
                Ok(())
            };
            let run_round = |results: &mut Results| -> Result<(), String> {
                // Warm the listener's cache for the repeated binaries, then measure: root-owned
                // and user-owned in alternating order from round to round.
                for _ in 0..10 {
                    let _ = spawn_wait(&harness.repeated.watched);
                    let _ = spawn_wait(&harness.repeated_user.watched);
                }
                let mut repeated = [
                    (Workload::Repeated, &harness.repeated),
                    (Workload::RepeatedUser, &harness.repeated_user),
                ];
                if round % 2 == 1 {
                    repeated.reverse();
                }
                for (workload, pair) in repeated {
                    measure(workload, results, &|| {
                        alternate(&vec![pair; sizes.repeated_pairs])
                    })?;
                }
                measure(Workload::FirstExec1M, results, &|| {
                    alternate(&harness.distinct.iter().collect::<Vec<_>>())
                })?;
                let bigs: Vec<&Pair> = harness.big.iter().take(sizes.big_per_round).collect();
                measure(Workload::FirstExec50M, results, &|| alternate(&bigs))?;
                measure(Workload::Storm, results, &|| {
                    let (lat, refused) = storm(&harness, sizes.storm_execs, round);
                    Ok(Run {
                        values: lat.iter().map(|&v| v as i64).collect(),
                        latencies: lat,
                        refused,
                    })
                })?;
                Ok(())
            };
            if let Err(e) = run_round(&mut results) {
                eprintln!("  failed: {e}");
                skipped.push((config, format!("failed in round {}: {e}", round + 1)));
            }
            if let Some(l) = listener.as_mut() {
                l.stop();
            }
        }
    }
    if let Some(path) = &raw {
        write_raw(path, &results);
    }
    eprintln!("santad RSS with 10,000 cache entries…");
    let rss = measure_rss(&harness, 10_000);
    let load_end = loadavg();
    let mut report = render(&RenderInput {
        load: (&load_start, &load_end),
        source: &source,
        configs: &configs,
        results: &results,
        skipped: &skipped,
        ownership: &harness.ownership,
        openssl,
        sizes: &sizes,
        quick,
    });
    match rss {
        Ok((idle, full, refused)) => {
            let _ = writeln!(
                report,
                "- santad RSS ≤ 16 MiB with 10,000 cache entries: {} ({:.1} MiB; {:.1} MiB idle before; {} of 10,000 execs refused).",
                if full <= 16 * 1024 && refused == 0 {
                    "met"
                } else {
                    "MISSED"
                },
                full as f64 / 1024.0,
                idle as f64 / 1024.0,
                refused
            );
        }
        Err(e) => {
            let _ = writeln!(
                report,
                "- santad RSS with 10,000 cache entries: not measured ({e})."
            );
        }
    }
    let _ = writeln!(
        report,
        "\nexec-storm took {:.1} min (setup, {} rounds, RSS measurement).",
        began.elapsed().as_secs_f64() / 60.0,
        sizes.rounds
    );
    print!("{report}");
    // The sections other benchmarks wrote into RESULTS.md (written-exec, configure-bench) stay.
    let old = std::fs::read_to_string(santa_perf::results_md()).unwrap_or_default();
    match write_result(
        "../RESULTS.md",
        &santa_perf::keep_results_sections(&report, &old),
    ) {
        Ok(p) => eprintln!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write RESULTS.md: {e}"),
    }
    match write_result("exec-overhead.svg", &chart(&configs, &results)) {
        Ok(p) => eprintln!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write the chart: {e}"),
    }
    drop(harness);
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    santa_testkit::linux_only("exec-storm", "fanotify, fapolicyd")
}
