//! written-exec on Linux (see `main.rs`).

// The run's circumstances (commit, load), shared with exec-storm; not every helper is used here.
#[allow(dead_code)]
#[path = "../exec-storm/context.rs"]
mod context;

use santa_perf::fapolicyd;
use santa_perf::image::{ImageFs, LoopImage};
use santa_perf::listen::{
    Listener, SantadSetup, cpu_ns, santad_counters, santad_log_key, start_min_responder,
};
use santa_perf::stats::{TRIM, median, percentile, trimmed_mean, trimmed_se};
use santa_perf::{machine_summary, spawn_wait, write_result, write_results_section};
use santa_testkit::{PrivateMount, TmpfsOptions};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The pause between the write and the exec: what a build spends between its link step and the
/// run of what it linked, and the time santad has to evaluate the file on its close-after-write.
const PAUSE: Duration = Duration::from_millis(2);
/// Bytes appended to every copy: the salt that makes its content distinct, padded to a fixed
/// length so that every copy has the same size.
const SALT_BYTES: usize = 96;
/// A quiet machine, waited for before each configuration's round: at most this many runnable
/// tasks (this program and a kernel thread or two)…
const QUIET_RUNNING_MAX: u32 = 3;
/// …for at most this long (other builds share these cores, in bursts).
const QUIET_WAIT_MAX: Duration = Duration::from_secs(30);
/// The target: santad's overhead on this workload at most this multiple of the minimal
/// responder's (it evaluates the file in the background on its close-after-write, before the
/// first exec).
const TARGET_RATIO: f64 = 3.0;

/// A configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    None,
    MinResponder,
    SantadMonitor,
    SantadLockdown,
    FapolicydSha256,
}

impl Config {
    const ALL: [Config; 5] = [
        Config::None,
        Config::MinResponder,
        Config::SantadMonitor,
        Config::SantadLockdown,
        Config::FapolicydSha256,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::None => "no listener",
            Config::MinResponder => "minimal responder",
            Config::SantadMonitor => "santad Monitor",
            Config::SantadLockdown => {
                "santad Lockdown, EnableTransitiveRules, the writer (cp copy) a compiler"
            }
            Config::FapolicydSha256 => {
                "fapolicyd enforcing, integrity sha256, cp copy trusted, `dir=` rule for the outputs"
            }
        }
    }

    fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::MinResponder => "min",
            Config::SantadMonitor => "santad-monitor",
            Config::SantadLockdown => "santad-lockdown",
            Config::FapolicydSha256 => "fapolicyd-sha256",
        }
    }

    fn is_santad(self) -> bool {
        matches!(self, Config::SantadMonitor | Config::SantadLockdown)
    }
}

/// What the command line asked for.
struct Args {
    help: bool,
    quick: bool,
    rounds: usize,
    execs: usize,
    only: Option<Vec<String>>,
    /// `--fs xfs|ext2`: the watched image's filesystem.
    fs: ImageFs,
    /// `--raw FILE.csv`: every exec pair (configuration, round, iteration, watched ns, control ns).
    raw: Option<String>,
}

impl Args {
    fn parse(args: &[String]) -> Args {
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
        };
        let quick = args.iter().any(|a| a == "--quick");
        Args {
            help: args.iter().skip(1).any(|a| a == "--help" || a == "-h"),
            quick,
            rounds: value("--rounds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 2 } else { 3 }),
            execs: value("--execs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { 100 } else { 400 }),
            only: value("--only").map(|v| v.split(',').map(str::to_string).collect()),
            raw: value("--raw").cloned(),
            fs: value("--fs")
                .and_then(|v| ImageFs::parse(v))
                .unwrap_or(ImageFs::Xfs),
        }
    }
}

fn usage() -> String {
    let keys: Vec<&str> = Config::ALL.iter().map(|c| c.key()).collect();
    format!(
        "written-exec: the first exec of a binary written while the listener runs (needs root:\n\
         it mounts a private XFS (or ext2) image and a tmpfs and starts fanotify listeners on the\n\
         image).\n\
         \n\
         usage: written-exec [--quick] [--rounds N] [--execs N] [--only CONFIG,...] [--fs xfs|ext2] [--raw FILE.csv]\n\
         \n\
         \x20 --quick           2 rounds of 100 execs (default: 3 rounds of 400)\n\
         \x20 --rounds N        rounds, configurations interleaved in rotating order\n\
         \x20 --execs N         written binaries per configuration and round\n\
         \x20 --only CONFIG,... only these configurations, beside `none` and `min`: {}\n\
         \x20 --fs xfs|ext2     the watched image's filesystem (default xfs: multigrain ctimes)\n\
         \x20 --raw FILE.csv    also write every exec pair (watched and control ns)\n\
         \x20 --help            this text\n\
         \n\
         Writes perf/results/written-exec.md and its section of perf/RESULTS.md.\n",
        keys.join(", ")
    )
}

/// The mounts, the writer and the binary every copy is made from.
struct Bench {
    watched: LoopImage,
    /// Held for its guard: the control copies and the stage live there until the bench drops.
    #[allow(dead_code)]
    control: PrivateMount,
    state: tempfile::TempDir,
    /// The static `exit 0` every copy is made from.
    base: Vec<u8>,
    /// The writer: a copy of /bin/cp on the watched image.
    cp: PathBuf,
    cp_sha256: String,
    /// Where the written binaries go, on the watched image.
    out_dir: PathBuf,
    /// Their control twins, on the tmpfs.
    control_dir: PathBuf,
    /// The source of each copy (on the tmpfs, unwatched).
    stage_dir: PathBuf,
    /// Distinguishes this run's salts from any earlier run's.
    run_id: String,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths here have no NUL")
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    santa_signing::hash_path(path, &Default::default())
        .map(|h| h.sha256.to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Bench {
    fn new(execs: usize, fs: ImageFs) -> Result<Bench, String> {
        // Room for one round's written binaries of one configuration (deleted after each).
        let image_bytes = ((execs as u64 + 64) << 20)
            .clamp(512 << 20, santa_perf::image::IMAGE_BYTES_MAX);
        let watched = LoopImage::new(fs, image_bytes)
            .map_err(|e| format!("watched {} image: {e}", fs.name()))?;
        let control = PrivateMount::tmpfs(TmpfsOptions {
            size_bytes: 256 << 20,
            exec: true,
        })
        .map_err(|e| format!("control tmpfs: {e}"))?;
        let state = tempfile::tempdir().map_err(|e| e.to_string())?;
        let base_path = santa_perf::build_static_binary(state.path())?;
        let base = std::fs::read(&base_path).map_err(|e| e.to_string())?;
        let tools = watched.join("tools");
        std::fs::create_dir_all(&tools).map_err(|e| e.to_string())?;
        let cp = tools.join("cp");
        std::fs::copy("/bin/cp", &cp).map_err(|e| format!("copying /bin/cp: {e}"))?;
        std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let cp_sha256 = sha256_hex(&cp)?;
        let out_dir = watched.join("fresh");
        let control_dir = control.join("fresh");
        let stage_dir = control.join("stage");
        for d in [&out_dir, &control_dir, &stage_dir] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let run_id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        Ok(Bench {
            watched,
            control,
            state,
            base,
            cp,
            cp_sha256,
            out_dir,
            control_dir,
            stage_dir,
            run_id,
        })
    }

    /// Writes the source of one copy: the base binary with `salt`, mode 0755 (which cp keeps).
    fn stage(&self, salt: &str) -> Result<PathBuf, String> {
        let mut bytes = self.base.clone();
        let mut tail = salt.as_bytes().to_vec();
        tail.resize(SALT_BYTES, 0);
        bytes.extend_from_slice(&tail);
        let path = self.stage_dir.join("next");
        std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// `cp FROM TO` with the cp copy on the watched image.
    fn copy(&self, from: &Path, to: &Path) -> Result<(), String> {
        let status = Command::new(&self.cp)
            .arg(from)
            .arg(to)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", self.cp.display()))?;
        if !status.success() {
            return Err(format!(
                "{} {} {}: {status}",
                self.cp.display(),
                from.display(),
                to.display()
            ));
        }
        Ok(())
    }

    fn santad_setup(&self, config: Config, round: usize) -> SantadSetup {
        SantadSetup {
            mode: if config == Config::SantadLockdown {
                "LOCKDOWN"
            } else {
                "MONITOR"
            },
            watch: self.watched.path().to_path_buf(),
            // A fresh state (log, rules database) for every start.
            dir: self
                .state
                .path()
                .join(format!("{}-round{round}", config.key())),
            transitive: config == Config::SantadLockdown,
            log_exec_notifications: true,
            rules_db: None,
        }
    }

    fn start(&self, config: Config, round: usize) -> Result<Option<Listener>, String> {
        match config {
            Config::None => Ok(None),
            Config::MinResponder => start_min_responder(self.watched.path()).map(Some),
            Config::SantadMonitor | Config::SantadLockdown => {
                let setup = self.santad_setup(config, round);
                let listener = setup.start()?;
                if config == Config::SantadLockdown {
                    setup.santactl(&["rule", "--compiler", "--sha256", &self.cp_sha256])?;
                }
                Ok(Some(listener))
            }
            Config::FapolicydSha256 => {
                let setup = fapolicyd::Setup {
                    permissive: false,
                    integrity: "sha256",
                    rules: fapolicyd_rules(&self.out_dir),
                    trust: vec![self.cp.clone()],
                    watch_fs: self.watched.fs().name(),
                };
                fapolicyd::start(&setup, self.watched.path(), self.state.path()).map(Some)
            }
        }
    }
}

/// fapolicyd's rules here: trusted files (the cp copy) execute, and so does whatever is under
/// the output directory (no transitive trust in fapolicyd: a `dir=` rule is how a build's
/// outputs get to run); anything else executed is denied; plain opens are allowed.
fn fapolicyd_rules(out_dir: &Path) -> String {
    format!(
        "allow perm=execute all : trust=1\nallow perm=execute all : dir={}/\n\
         deny_audit perm=execute all : all\nallow perm=open all : all\n",
        out_dir.display()
    )
}

/// One configuration's samples, pooled over the rounds.
#[derive(Default)]
struct Sample {
    /// Per-exec (watched − control), ns.
    diffs: Vec<i64>,
    /// The watched execs' latencies, ns.
    latencies: Vec<i64>,
    /// (round, trimmed mean of that round's differences).
    rounds: Vec<(usize, f64)>,
    /// The listener's CPU over the iterations (writes, pauses and execs), ns.
    cpu_ns: u64,
    iterations: usize,
    refused: usize,
    /// Every pair as (round, iteration, watched ns or -errno, control ns), for `--raw`.
    raw: Vec<(usize, usize, i64, i64)>,
    /// santad's log lines for the written binaries, by `decision=…|reason=…` (`action=…` for
    /// lines other than execs).
    decisions: BTreeMap<String, usize>,
    /// santad's counters of [`COUNTERS`], summed over the rounds (non-zero ones reported).
    counters: BTreeMap<String, u64>,
}

/// The santad counters that say how the written binaries were decided.
const COUNTERS: &[&str] = &[
    "engine.prefetch",
    "fanotify.prefetch",
    "fanotify.compiler",
    "compilers.",
    "transitive.",
    "decisions.",
];

/// One round of `config`: `execs` binaries written, paused on, executed beside their twins.
fn run_round(
    b: &Bench,
    config: Config,
    round: usize,
    execs: usize,
    sample: &mut Sample,
) -> Result<(), String> {
    let mut listener = b.start(config, round)?;
    let pid = listener.as_ref().map_or(0, Listener::cpu_pid);
    // The writer's own first exec, outside the measurement.
    let warm = b.stage(&format!("warm {} {round} {}", b.run_id, config.key()))?;
    b.copy(&warm, &b.out_dir.join("warm"))?;
    let cpu0 = if pid > 0 { cpu_ns(pid) } else { 0 };
    let mut diffs = Vec::with_capacity(execs);
    let mut outcome = Ok(());
    for i in 0..execs {
        let salt = format!("written-exec {} {round} {} {i}", b.run_id, config.key());
        let step = (|| -> Result<(), String> {
            let stage = b.stage(&salt)?;
            let watched = b.out_dir.join(format!("w{i:05}"));
            let control = b.control_dir.join(format!("c{i:05}"));
            b.copy(&stage, &watched)?;
            b.copy(&stage, &control)?;
            std::thread::sleep(PAUSE);
            let (w, c) = (cstr(&watched), cstr(&control));
            // Rotate which goes first, so "second in a pair" never favours one side.
            let (w, c) = if i % 2 == 0 {
                let w = spawn_wait(&w);
                (w, spawn_wait(&c))
            } else {
                let c = spawn_wait(&c);
                (spawn_wait(&w), c)
            };
            let c = c.map_err(|e| format!("control exec refused: errno {e}"))?;
            sample
                .raw
                .push((round, i, w.map_or_else(|e| -i64::from(e), |w| w as i64), c as i64));
            match w {
                Ok(w) => {
                    diffs.push(w as i64 - c as i64);
                    sample.latencies.push(w as i64);
                }
                Err(_) => sample.refused += 1,
            }
            // The control copy goes at once; the watched ones stay until the listener has
            // stopped, so no inode number comes back within a round.
            let _ = std::fs::remove_file(&control);
            Ok(())
        })();
        if let Err(e) = step {
            outcome = Err(e);
            break;
        }
    }
    let cpu1 = if pid > 0 { cpu_ns(pid) } else { 0 };
    sample.cpu_ns += cpu1.saturating_sub(cpu0);
    sample.iterations += execs;
    if !diffs.is_empty() {
        sample.rounds.push((round, trimmed_mean(&diffs)));
    }
    sample.diffs.extend(diffs);
    if config.is_santad() && outcome.is_ok() {
        for (k, v) in santad_counters(&b.santad_setup(config, round), COUNTERS) {
            *sample.counters.entry(k).or_default() += v;
        }
    }
    if let Some(l) = listener.as_mut() {
        l.stop();
    }
    if config.is_santad() {
        let log = std::fs::read_to_string(b.santad_setup(config, round).log_path())
            .unwrap_or_default();
        let needle = format!("path={}/w", b.out_dir.display());
        for line in log.lines().filter(|l| l.contains(&needle)) {
            *sample.decisions.entry(santad_log_key(line)).or_default() += 1;
        }
    }
    clear_dir(&b.out_dir);
    outcome
}

fn clear_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

/// The overhead of `s` against `base` (trimmed means of per-exec differences), ns, and half its
/// 95 % confidence interval.
fn overhead(s: &Sample, base: &Sample) -> Option<(f64, f64)> {
    if s.diffs.is_empty() || base.diffs.is_empty() {
        return None;
    }
    let v = trimmed_mean(&s.diffs) - trimmed_mean(&base.diffs);
    let ci = 1.96 * (trimmed_se(&s.diffs).powi(2) + trimmed_se(&base.diffs).powi(2)).sqrt();
    Some((v, ci))
}

fn render(
    args: &Args,
    configs: &[Config],
    samples: &BTreeMap<Config, Sample>,
    skipped: &[(Config, String)],
    source: &str,
    load: (&str, &str),
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## First exec of a binary written while the listener runs\n"
    );
    let _ = writeln!(out, "{}\n", machine_summary());
    let _ = writeln!(
        out,
        "{source} Load average (1/5/15 min) at the start: {}; at the end: {}.\n",
        load.0, load.1
    );
    let flags = format!(
        "{}{}",
        if args.quick { " --quick" } else { "" },
        if args.fs == ImageFs::Xfs {
            String::new()
        } else {
            format!(" --fs {}", args.fs.name())
        }
    );
    let _ = writeln!(
        out,
        "Rewritten by `make perf-written-exec` (`written-exec{}`, as root; part of `make perf`). While \
         each listener runs, every iteration writes a fresh executable with distinct content (the \
         static ~760 KB `exit 0`, a salt unique to the run, round and iteration appended, all copies \
         the same size), mode 0755, into a private {} loop image (watched) and an identical copy \
         onto a private tmpfs (control, unwatched); the writer is a copy of `/bin/cp` on the watched \
         image (a plain open, write, close; the same writer in every configuration). Then a {} ms \
         pause, as a build has between its link and the run, then one exec of each (posix_spawn + \
         waitpid), alternately. Overhead per exec: the {:.0} % trimmed mean of the per-exec (watched \
         − control) differences minus the same with no listener, {} rounds × {} binaries, \
         configurations interleaved round by round in rotating order, each listener started fresh \
         for its round (so every binary is a first exec for it); ± is a 95 % confidence interval from \
         the standard error. \"× minimal responder\" divides by the minimal responder's overhead in \
         the same run. Listener CPU per iteration covers its whole work for the binary, the write \
         included. Default scheduling.\n",
        flags,
        args.fs.name(),
        PAUSE.as_millis(),
        TRIM * 100.0,
        args.rounds,
        args.execs,
    );
    let _ = writeln!(
        out,
        "Why {}: fapolicyd can only be confined by filesystem type, so the watched image must be of \
         a type no mount of this host has (the root is ext4, the tmpfs mounts are the host's); and \
         santad keeps a decision about a file changed moments ago only where the kernel gives \
         multigrain ctimes (6.13+: ext4, XFS, Btrfs, tmpfs; not ext2), which is what lets a binary \
         written 2 ms before its first exec be decided before it. XFS stands for the filesystems \
         builds run on; `--fs ext2` shows the other case.\n",
        args.fs.name()
    );
    let _ = writeln!(
        out,
        "santad Lockdown cannot hold an allow rule for content nobody has seen: it runs with \
         `EnableTransitiveRules = true` and the cp copy has a compiler rule (`santactl rule \
         --compiler --sha256 <its SHA-256>`), so a file it writes and closes should get a \
         transitive allow. santad Monitor runs with its defaults. fapolicyd (1.1.7, enforcing, \
         `integrity = sha256`) trusts the cp copy (trust file: path, size, SHA-256) and has no \
         transitive trust, so its rules allow execution under the output directory:\n"
    );
    let _ = writeln!(out, "```\n{}```\n", fapolicyd_rules(Path::new("<image>/fresh")));
    let _ = writeln!(
        out,
        "| configuration | overhead µs (trimmed mean ± 95 % CI) | overhead µs (median) | per-round overheads µs | × minimal responder | watched exec p50 µs | p99 µs | p99.9 µs | max µs | listener CPU µs/iteration | execs | refused |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let base = samples.get(&Config::None);
    let min = samples
        .get(&Config::MinResponder)
        .zip(base)
        .and_then(|(m, b)| overhead(m, b));
    for c in configs {
        let Some(s) = samples.get(c) else { continue };
        let oh = base.and_then(|b| overhead(s, b));
        let med = base
            .filter(|b| !b.diffs.is_empty() && !s.diffs.is_empty())
            .map(|b| (median(&s.diffs) - median(&b.diffs)) as f64);
        let per_round: Vec<f64> = base.map_or(Vec::new(), |b| {
            s.rounds
                .iter()
                .filter_map(|(r, m)| b.rounds.iter().find(|(br, _)| br == r).map(|(_, bm)| m - bm))
                .collect()
        });
        let range = if per_round.is_empty() {
            "—".to_string()
        } else {
            let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{}…{}", us(lo), us(hi))
        };
        let ratio = match (c, oh, min) {
            (Config::None, _, _) => "—".to_string(),
            (_, Some((v, _)), Some((m, _))) if m > 0.0 => format!("{:.2}", v / m),
            _ => "—".to_string(),
        };
        let mut sorted = s.latencies.clone();
        sorted.sort_unstable();
        let q = |p: f64| {
            if sorted.is_empty() {
                "—".to_string()
            } else {
                us(percentile(&sorted, p) as f64)
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name(),
            oh.map_or("—".into(), |(v, ci)| format!("{} ± {}", us(v), us(ci))),
            med.map_or("—".into(), us),
            range,
            ratio,
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0),
            if s.iterations > 0 {
                us(s.cpu_ns as f64 / s.iterations as f64)
            } else {
                "—".into()
            },
            s.iterations,
            s.refused,
        );
    }
    let _ = writeln!(out);
    for c in configs.iter().filter(|c| c.is_santad()) {
        let Some(s) = samples.get(c) else { continue };
        let parts: Vec<String> = s
            .decisions
            .iter()
            .map(|(k, n)| format!("`{k}` × {n}"))
            .collect();
        let counters: Vec<String> = s
            .counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "- {}: santad's log lines for the written binaries: {}; its counters (summed over the \
             rounds, non-zero): {}.",
            c.name(),
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            },
            if counters.is_empty() {
                "none".to_string()
            } else {
                counters.join(", ")
            }
        );
    }
    for (c, why) in skipped {
        let _ = writeln!(out, "- {}: not measured: {why}", c.name());
    }
    let _ = writeln!(out, "\nTargets:\n");
    for c in [Config::SantadMonitor, Config::SantadLockdown] {
        if !configs.contains(&c) {
            continue;
        }
        let s = samples.get(&c);
        let oh = s.zip(base).and_then(|(s, b)| overhead(s, b));
        let verdict = match (s, oh, min) {
            (Some(s), _, _) if s.refused > 0 => format!(
                "MISSED: {} of {} written binaries refused",
                s.refused, s.iterations
            ),
            (_, Some((v, _)), Some((m, _))) if m > 0.0 => format!(
                "{} ({} µs = {:.2} × the minimal responder's {} µs)",
                if v <= TARGET_RATIO * m {
                    "met"
                } else {
                    "MISSED"
                },
                us(v),
                v / m,
                us(m)
            ),
            _ => "not measured".to_string(),
        };
        let _ = writeln!(
            out,
            "- {}: overhead ≤ {TARGET_RATIO} × the minimal responder: {verdict}.",
            c.name()
        );
    }
    let _ = writeln!(
        out,
        "\nwritten-exec took {:.1} min.",
        elapsed.as_secs_f64() / 60.0
    );
    out
}

pub(crate) fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let args = Args::parse(&argv);
    if args.help {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("written-exec: needs root (fanotify permission events, mounts)");
        return ExitCode::from(2);
    }
    let configs: Vec<Config> = Config::ALL
        .into_iter()
        .filter(|c| {
            matches!(c, Config::None | Config::MinResponder)
                || args
                    .only
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|k| k == c.key()))
        })
        .collect();
    let began = Instant::now();
    let load_start = context::loadavg();
    let source = context::source_state();
    let bench = match Bench::new(args.execs, args.fs) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("written-exec: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut samples: BTreeMap<Config, Sample> = BTreeMap::new();
    let mut skipped: Vec<(Config, String)> = Vec::new();
    // (rounds started on a quiet machine, rounds, time waited for it).
    let mut quiet = (0usize, 0usize, Duration::ZERO);
    for round in 0..args.rounds {
        for k in 0..configs.len() {
            let config = configs[(k + round) % configs.len()];
            if skipped.iter().any(|(c, _)| *c == config) {
                continue;
            }
            eprintln!("round {}/{}: {}", round + 1, args.rounds, config.name());
            let (waited, calm) = santa_perf::wait_quiet(QUIET_RUNNING_MAX, QUIET_WAIT_MAX);
            quiet.0 += usize::from(calm);
            quiet.1 += 1;
            quiet.2 += waited;
            let sample = samples.entry(config).or_default();
            if let Err(e) = run_round(&bench, config, round, args.execs, sample) {
                eprintln!("  failed: {e}");
                skipped.push((config, format!("round {}: {e}", round + 1)));
            } else if sample.refused > 0 {
                eprintln!("  {} written binaries refused so far", sample.refused);
            }
        }
    }
    let load_end = context::loadavg();
    let source = format!(
        "{source} Before each configuration's round the benchmark waited for a quiet machine (at \
         most {QUIET_RUNNING_MAX} runnable tasks machine-wide for half a second, waiting at most {} \
         s): {} of {} started quiet, {:.0} s waited in all.",
        QUIET_WAIT_MAX.as_secs(),
        quiet.0,
        quiet.1,
        quiet.2.as_secs_f64()
    );
    if let Some(path) = &args.raw {
        let mut csv = String::from("config,round,i,watched_ns,control_ns\n");
        for (c, s) in &samples {
            for (r, i, w, ctl) in &s.raw {
                let _ = writeln!(csv, "{},{r},{i},{w},{ctl}", c.key());
            }
        }
        match std::fs::write(path, csv) {
            Ok(()) => eprintln!("wrote {path}"),
            Err(e) => eprintln!("could not write {path}: {e}"),
        }
    }
    let report = render(
        &args,
        &configs,
        &samples,
        &skipped,
        &source,
        (&load_start, &load_end),
        began.elapsed(),
    );
    print!("{report}");
    match write_result("written-exec.md", &report) {
        Ok(p) => eprintln!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write results/written-exec.md: {e}"),
    }
    match write_results_section("written-exec", &report) {
        Ok(p) => eprintln!("wrote its section of {}", p.display()),
        Err(e) => eprintln!("could not write RESULTS.md: {e}"),
    }
    drop(bench);
    ExitCode::SUCCESS
}
