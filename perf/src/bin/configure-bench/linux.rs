//! configure-bench on Linux (see `main.rs`).

// The run's circumstances (commit, load), shared with exec-storm; not every helper is used here.
#[allow(dead_code)]
#[path = "../exec-storm/context.rs"]
mod context;

use santa_perf::fapolicyd;
use santa_perf::image::{ImageFs, LoopImage};
use santa_perf::listen::{
    Listener, SantadSetup, cpu_ns, santad_counters, santad_log_key, start_min_responder,
    stat_cpu_ms, target_dir,
};
use santa_perf::{machine_summary, write_result, write_results_section};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The crate whose vendored C library's configure is run, and its checksum in the crates.io
/// index (`cksum`): the download is checked against it.
const CRATE: &str = "tikv-jemalloc-sys";
const VERSION: &str = "0.6.1+5.3.0-1-ge13ca993e8ccb9ba9847cc330696e02839f328f7";
const CRATE_SHA256: &str = "cd8aa5b2ab86a2cefa406d889139c162cbb230092f7d1d7cbc1716405d852a3b";
/// What the crate's build script passes as `--with-version`.
const JEMALLOC_VERSION: &str = "5.3.0-1-ge13ca993e8ccb9ba9847cc330696e02839f328f7";
/// Where the crate is fetched from: the crates.io download endpoint (what cargo uses), then the
/// API's download route, which redirects there.
fn crate_urls() -> [String; 2] {
    [
        format!("https://static.crates.io/crates/{CRATE}/{CRATE}-{VERSION}.crate"),
        format!("https://crates.io/api/v1/crates/{CRATE}/{VERSION}/download"),
    ]
}
/// configure's arguments, as the crate's build script gives them (default features, no C++).
const CONFIGURE_ARGS: [&str; 6] = [
    "--disable-cxx",
    "--enable-doc=no",
    "--enable-shared=no",
    "--with-jemalloc-prefix=_rjem_",
    "--with-private-namespace=_rjem_",
    "--disable-stats",
];
const CFLAGS: &str = "-O2 -fPIC";
/// Files configure generates from what it found: the same bytes in every run means every run
/// found the same (a denied conftest would change them).
const RESULT_FILES: [&str; 2] = [
    "include/jemalloc/internal/jemalloc_internal_defs.h",
    "include/jemalloc/jemalloc_defs.h",
];
/// The toolchain copied onto the watched image: gcc's driver and what it runs.
const TOOLCHAIN: [&str; 5] = ["gcc", "cc1", "as", "collect2", "ld"];
/// The santad counters that say how the run's execs were decided.
const COUNTERS: &[&str] = &[
    "engine.prefetch",
    "fanotify.prefetch",
    "fanotify.compiler",
    "compilers.",
    "transitive.",
    "decisions.",
];
/// A quiet machine, waited for before each run: at most this many runnable tasks (this
/// program and a kernel thread or two)…
const QUIET_RUNNING_MAX: u32 = 3;
/// …for at most this long (other builds share these cores, in bursts).
const QUIET_WAIT_MAX: Duration = Duration::from_secs(30);
/// The longest one configure run may take before it is killed (a listener holding an exec).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Targets: santad Lockdown (compiler rules) at most this multiple of no listener's median.
const TARGET_RATIO: f64 = 1.05;

/// A configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    None,
    MinResponder,
    SantadMonitor,
    SantadLockdown,
    Fapolicyd,
}

impl Config {
    const ALL: [Config; 5] = [
        Config::None,
        Config::MinResponder,
        Config::SantadMonitor,
        Config::SantadLockdown,
        Config::Fapolicyd,
    ];

    fn name(self) -> &'static str {
        match self {
            Config::None => "no listener",
            Config::MinResponder => "minimal responder",
            Config::SantadMonitor => "santad Monitor",
            Config::SantadLockdown => "santad Lockdown, compiler rules, EnableTransitiveRules",
            Config::Fapolicyd => {
                "fapolicyd enforcing, integrity sha256, toolchain trusted, `dir=` rule for the builds"
            }
        }
    }

    fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::MinResponder => "min",
            Config::SantadMonitor => "santad-monitor",
            Config::SantadLockdown => "santad-lockdown",
            Config::Fapolicyd => "fapolicyd",
        }
    }

    fn is_santad(self) -> bool {
        matches!(self, Config::SantadMonitor | Config::SantadLockdown)
    }
}

struct Args {
    help: bool,
    quick: bool,
    rounds: usize,
    only: Option<Vec<String>>,
    /// `--fs xfs|ext2`: the watched image's filesystem.
    fs: ImageFs,
    /// `--keep DIR`: copy each run's logs (configure's output, config.log, santad's log) there.
    keep: Option<PathBuf>,
    /// `--ld bfd|gold`: the linker copied as the toolchain's `ld` (`ld.bfd`, the default, or
    /// `ld.gold`).
    linker: &'static str,
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
                .unwrap_or(if quick { 2 } else { 6 }),
            only: value("--only").map(|v| v.split(',').map(str::to_string).collect()),
            fs: value("--fs")
                .and_then(|v| ImageFs::parse(v))
                .unwrap_or(ImageFs::Xfs),
            keep: value("--keep").map(PathBuf::from),
            linker: if value("--ld").map(String::as_str) == Some("gold") {
                "ld.gold"
            } else {
                "ld.bfd"
            },
        }
    }
}

fn usage() -> String {
    let keys: Vec<&str> = Config::ALL.iter().map(|c| c.key()).collect();
    format!(
        "configure-bench: jemalloc's autoconf configure (from the crates.io crate {CRATE}) run on a\n\
         watched mount under each listener (needs root: it mounts a private XFS (or ext2) image and starts\n\
         fanotify listeners on it; downloads the crate once into the build directory).\n\
         \n\
         usage: configure-bench [--quick] [--rounds N] [--only CONFIG,...] [--fs xfs|ext2] [--ld bfd|gold] [--keep DIR]\n\
         \n\
         \x20 --quick           2 rounds (default 6), one run of each configuration per round\n\
         \x20 --rounds N        rounds, configurations in rotating order\n\
         \x20 --only CONFIG,... only these configurations, beside `none`: {}\n\
         \x20 --fs xfs|ext2     the watched image's filesystem (default xfs: multigrain ctimes)\n\
         \x20 --ld bfd|gold     the linker copied as the toolchain's ld (default ld.bfd, Debian's ld)\n\
         \x20 --keep DIR        copy each run's logs there (configure's output, config.log, santad's log)\n\
         \x20 --help            this text\n\
         \n\
         Writes perf/results/configure.md (configure-gold.md with --ld gold) and its section of\n\
         perf/RESULTS.md.\n",
        keys.join(", ")
    )
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    santa_signing::hash_path(path, &Default::default())
        .map(|h| h.sha256.to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn run_ok(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The crate's sources, unpacked under `<target>/perf-downloads/`: downloaded once, checked
/// against [`CRATE_SHA256`], reused by later runs.
fn fetch_crate() -> Result<PathBuf, String> {
    let cache = target_dir().join("perf-downloads");
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let root = cache.join(format!("{CRATE}-{VERSION}"));
    let complete = root.join(".unpacked");
    if complete.exists() {
        return Ok(root);
    }
    let file = cache.join(format!("{CRATE}-{VERSION}.crate"));
    if sha256_hex(&file).ok().as_deref() != Some(CRATE_SHA256) {
        let part = cache.join(format!("{CRATE}-{VERSION}.crate.part"));
        let mut errors = Vec::new();
        for url in crate_urls() {
            eprintln!("configure-bench: downloading {url}");
            match run_ok(
                Command::new("curl")
                    .args(["-fsSL", "--retry", "2", "-o"])
                    .arg(&part)
                    .arg(&url),
                "curl",
            ) {
                Ok(_) => break,
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        let got = sha256_hex(&part).map_err(|_| format!("download failed: {}", errors.join("; ")))?;
        if got != CRATE_SHA256 {
            let _ = std::fs::remove_file(&part);
            return Err(format!(
                "{CRATE} {VERSION}: SHA-256 {got}, the crates.io index says {CRATE_SHA256}"
            ));
        }
        std::fs::rename(&part, &file).map_err(|e| e.to_string())?;
    }
    let tmp = cache.join(format!(".unpack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    run_ok(
        Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(&tmp),
        "tar",
    )?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(tmp.join(format!("{CRATE}-{VERSION}")), &root).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&tmp);
    for needed in ["jemalloc/configure.ac", "configure/configure"] {
        if !root.join(needed).exists() {
            return Err(format!("{CRATE} {VERSION} has no {needed}"));
        }
    }
    std::fs::write(&complete, "").map_err(|e| e.to_string())?;
    Ok(root)
}

/// Copies the crate's jemalloc tree and its generated configure into `dir` (`cp -a`, modes
/// kept).
fn prepare_tree(crate_root: &Path, dir: &Path) -> Result<(), String> {
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(crate_root.join("jemalloc"))
            .arg(dir),
        "cp -a",
    )?;
    std::fs::copy(
        crate_root.join("configure/configure"),
        dir.join("configure"),
    )
    .map_err(|e| format!("configure: {e}"))?;
    std::fs::set_permissions(dir.join("configure"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())
}

/// Every regular file under `dir` with an execute bit, relative to `dir`.
fn executables(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file()
                && md.permissions().mode() & 0o111 != 0
                && let Ok(rel) = e.path().strip_prefix(dir)
            {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// The gcc toolchain copied onto the watched image.
struct Toolchain {
    dir: PathBuf,
    /// (name, where it was copied from, SHA-256 of the copy).
    files: Vec<(&'static str, PathBuf, String)>,
    /// `CC` for configure.
    cc: String,
    /// `GCC_EXEC_PREFIX`: the real installation's, so that the copied driver finds its headers,
    /// libraries and plugin where they are installed, while `-B` makes it run the copied
    /// programs.
    gcc_exec_prefix: String,
}

fn which(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not found in PATH"))
}

fn gcc_prog(name: &str) -> Result<PathBuf, String> {
    let out = run_ok(
        Command::new("gcc").arg(format!("-print-prog-name={name}")),
        "gcc -print-prog-name",
    )?;
    let p = PathBuf::from(out.trim());
    if p.is_absolute() {
        Ok(p)
    } else {
        which(out.trim())
    }
}

impl Toolchain {
    /// Copies the toolchain into `dir`, with `linker` (`ld.bfd` or `ld.gold`) as its `ld`.
    fn install(dir: &Path, linker: &str) -> Result<Toolchain, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let sources = [
            ("gcc", which("gcc")?),
            ("cc1", gcc_prog("cc1")?),
            ("as", gcc_prog("as")?),
            ("collect2", gcc_prog("collect2")?),
            // collect2 looks for `ld` in gcc's program path (the -B directory first).
            ("ld", which(linker)?),
        ];
        let mut files = Vec::new();
        for (name, from) in sources {
            let real = std::fs::canonicalize(&from).map_err(|e| format!("{}: {e}", from.display()))?;
            let to = dir.join(name);
            std::fs::copy(&real, &to).map_err(|e| format!("copying {}: {e}", real.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            files.push((name, real, sha256_hex(&to)?));
        }
        let dirs = run_ok(Command::new("gcc").arg("-print-search-dirs"), "gcc")?;
        let install = dirs
            .lines()
            .find_map(|l| l.strip_prefix("install: "))
            .ok_or("gcc -print-search-dirs: no install line")?;
        // /usr/lib/gcc/<machine>/<version>/ → /usr/lib/gcc/
        let prefix = Path::new(install.trim())
            .parent()
            .and_then(Path::parent)
            .ok_or("gcc's install directory is too short")?;
        Ok(Toolchain {
            dir: dir.to_path_buf(),
            files,
            cc: format!("{}/gcc -B{}/", dir.display(), dir.display()),
            gcc_exec_prefix: format!("{}/", prefix.display()),
        })
    }

    /// Compiles and links a test program with `CC` under strace: gcc must run cc1, as, collect2
    /// and ld from the copies, and nothing else. Returns the programs it ran, in order, and how
    /// the linker wrote its output (the mode it created it with, and a chmod after it).
    fn verify(&self, scratch: &Path) -> Result<(Vec<String>, String), String> {
        let src = scratch.join("tc-check.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\nint main(void) { printf(\"ok\\n\"); return 0; }\n",
        )
        .map_err(|e| e.to_string())?;
        let out = scratch.join("tc-check");
        let traces = scratch.join("tc-strace.txt");
        let mut command = Command::new("strace");
        command
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=execve,openat,chmod,fchmodat",
                "-e",
                "signal=none",
                "-o",
            ])
            .arg(&traces)
            .arg(self.dir.join("gcc"))
            .arg(format!("-B{}/", self.dir.display()))
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .env("GCC_EXEC_PREFIX", &self.gcc_exec_prefix);
        run_ok(&mut command, "strace gcc (is strace installed?)")?;
        let ran: Vec<String> = successful_execs(&traces)
            .into_iter()
            .map(|p| p.display().to_string())
            .collect();
        let want: Vec<String> = TOOLCHAIN
            .iter()
            .map(|n| self.dir.join(n).display().to_string())
            .collect();
        if ran != want {
            return Err(format!(
                "`{}` ran {ran:?}, not the five copies {want:?}",
                self.cc
            ));
        }
        let said = run_ok(&mut Command::new(&out), "the test program")?;
        if said.trim() != "ok" {
            return Err(format!("the test program printed {said:?}"));
        }
        Ok((ran, output_writes(&traces, &out)))
    }
}

/// How a trace shows `out` written: the `openat` that created it (its mode argument) and any
/// `chmod`/`fchmodat` of it afterwards, as strace printed them.
fn output_writes(trace: &Path, out: &Path) -> String {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let quoted = format!("\"{}\"", out.display());
    let calls: Vec<String> = text
        .lines()
        .filter(|l| l.contains(&quoted))
        .filter_map(|l| {
            let call = l.split_once(' ')?.1.trim_start();
            let creates = call.starts_with("openat(") && call.contains("O_CREAT");
            let chmods = call.starts_with("chmod(") || call.starts_with("fchmodat(");
            (creates || chmods).then(|| {
                format!("`{}`", call.replace(&quoted, "\"OUT\"").split_whitespace().collect::<Vec<_>>().join(" "))
            })
        })
        .collect();
    if calls.is_empty() {
        "no openat/chmod of the output seen".into()
    } else {
        calls.join(", then ")
    }
}

/// The successful execve paths in an `strace -f -o FILE` trace, in the order they ran
/// (relative paths as given). One file for all processes, each line led by its pid, because
/// `-ff` names a file per pid and this machine's pids wrap (pid_max 32768): a reused pid would
/// overwrite an earlier process's file. A call another process interrupted is split into
/// `PID execve("…", … <unfinished ...>` and `PID <... execve resumed>…) = 0`.
fn successful_execs(trace: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let mut pending: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        if let Some(rest) = call.strip_prefix("execve(\"") {
            let Some(end) = rest.find('"') else { continue };
            pending.insert(pid.to_string(), PathBuf::from(&rest[..end]));
        } else if !call.starts_with("<... execve resumed>") {
            continue;
        }
        if line.ends_with("<unfinished ...>") {
            continue;
        }
        if let Some(path) = pending.remove(pid)
            && line.trim_end().ends_with("= 0")
        {
            out.push(path);
        }
    }
    out
}

/// How one configure run went.
#[derive(Debug, Default, Clone)]
struct RunResult {
    wall_s: f64,
    /// configure's own CPU (user + system of every process it ran, as reaped), s.
    children_cpu_s: f64,
    /// The listener's utime + stime over the run (/proc/PID/stat), ms.
    listener_cpu_ms: Option<f64>,
    /// The same from schedstat, ns (finer).
    listener_cpu_ns: Option<u64>,
    ok: bool,
    /// The generated headers' bytes (see [`RESULT_FILES`]).
    results: Option<Vec<u8>>,
    /// They equal the reference run's.
    same_results: Option<bool>,
    /// santad's log: its exec lines, and every line by `decision=…|reason=…` (`action=…` for
    /// lines other than execs) (santad configurations).
    santad_lines: usize,
    decisions: BTreeMap<String, usize>,
    /// santad's counters of [`COUNTERS`] at the end of the run.
    counters: BTreeMap<String, u64>,
    failure: Option<String>,
}

struct Bench {
    watched: LoopImage,
    state: tempfile::TempDir,
    crate_root: PathBuf,
    toolchain: Toolchain,
    /// Relative paths and SHA-256 of the source tree's executable files (the helper scripts
    /// configure may exec): binary allow rules in santad Lockdown.
    scripts: Vec<(PathBuf, String)>,
    builds: PathBuf,
    /// The generated headers of the reference run (no listener).
    reference: Option<Vec<u8>>,
    /// `--keep`.
    keep: Option<PathBuf>,
}

/// `RESULT_FILES`' bytes in `dir`, concatenated.
fn results_of(dir: &Path) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    for f in RESULT_FILES {
        all.extend(std::fs::read(dir.join(f)).ok()?);
    }
    Some(all)
}

impl Bench {
    fn new(crate_root: PathBuf, fs: ImageFs, linker: &str) -> Result<Bench, String> {
        let watched =
            LoopImage::new(fs, 1 << 30).map_err(|e| format!("watched {} image: {e}", fs.name()))?;
        let state = tempfile::tempdir().map_err(|e| e.to_string())?;
        let toolchain = Toolchain::install(&watched.join("toolchain"), linker)?;
        let builds = watched.join("builds");
        std::fs::create_dir_all(&builds).map_err(|e| e.to_string())?;
        // The scripts of a pristine tree, hashed once.
        let pristine = state.path().join("pristine");
        std::fs::create_dir_all(&pristine).map_err(|e| e.to_string())?;
        let tree = pristine.join("jemalloc");
        prepare_tree(&crate_root, &tree)?;
        let scripts = executables(&tree)
            .into_iter()
            .map(|rel| {
                let sha = sha256_hex(&tree.join(&rel))?;
                Ok((rel, sha))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Bench {
            watched,
            state,
            crate_root,
            toolchain,
            scripts,
            builds,
            reference: None,
            keep: None,
        })
    }

    fn build_dir(&self, label: &str) -> PathBuf {
        self.builds.join(label)
    }

    /// `sh configure …` in `dir`, stdout and stderr to `log`; optionally under `wrapper` (strace).
    fn configure(&self, dir: &Path, log: &Path, wrapper: &[String]) -> Result<RunResult, String> {
        let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut argv: Vec<String> = wrapper.to_vec();
        argv.extend(["timeout".into(), "-s".into(), "KILL".into()]);
        argv.push(RUN_TIMEOUT.as_secs().to_string());
        argv.extend(["sh".into(), "configure".into()]);
        argv.push(format!("--with-version={JEMALLOC_VERSION}"));
        argv.extend(CONFIGURE_ARGS.iter().map(|s| s.to_string()));
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(dir)
            .env("CC", &self.toolchain.cc)
            .env("CFLAGS", CFLAGS)
            .env("GCC_EXEC_PREFIX", &self.toolchain.gcc_exec_prefix)
            .env_remove("CXX")
            .env_remove("CPPFLAGS")
            .env_remove("LDFLAGS")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let cpu0 = children_cpu_s();
        let start = Instant::now();
        let status = command.status().map_err(|e| format!("sh configure: {e}"))?;
        let wall_s = start.elapsed().as_secs_f64();
        let children_cpu_s = children_cpu_s() - cpu0;
        let mut r = RunResult {
            wall_s,
            children_cpu_s,
            ok: status.success(),
            ..Default::default()
        };
        if !status.success() {
            let tail: Vec<String> = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(3)
                .map(str::to_string)
                .collect();
            r.failure = Some(format!(
                "configure exited {status}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        Ok(r)
    }

    fn santad_setup(&self, config: Config, label: &str) -> SantadSetup {
        SantadSetup {
            mode: if config == Config::SantadLockdown {
                "LOCKDOWN"
            } else {
                "MONITOR"
            },
            watch: self.watched.path().to_path_buf(),
            // A fresh state for every run: no transitive rule survives from an earlier one.
            dir: self.state.path().join(format!("santad-{label}")),
            transitive: config == Config::SantadLockdown,
            log_exec_notifications: true,
            rules_db: None,
        }
    }

    fn fapolicyd_rules(&self) -> String {
        fapolicyd_rules(&self.builds)
    }

    fn start(&self, config: Config, label: &str) -> Result<Option<Listener>, String> {
        match config {
            Config::None => Ok(None),
            Config::MinResponder => start_min_responder(self.watched.path()).map(Some),
            Config::SantadMonitor | Config::SantadLockdown => {
                let setup = self.santad_setup(config, label);
                let listener = setup.start()?;
                if config == Config::SantadLockdown {
                    for (_, _, sha) in &self.toolchain.files {
                        setup.santactl(&["rule", "--compiler", "--sha256", sha])?;
                    }
                    for (_, sha) in &self.scripts {
                        setup.santactl(&["rule", "--allow", "--sha256", sha])?;
                    }
                }
                Ok(Some(listener))
            }
            Config::Fapolicyd => {
                let setup = fapolicyd::Setup {
                    permissive: false,
                    integrity: "sha256",
                    rules: self.fapolicyd_rules(),
                    trust: TOOLCHAIN
                        .iter()
                        .map(|n| self.toolchain.dir.join(n))
                        .collect(),
                    watch_fs: self.watched.fs().name(),
                };
                fapolicyd::start(&setup, self.watched.path(), self.state.path()).map(Some)
            }
        }
    }

    /// One measured run of `config`: a fresh tree, the listener started, configure, the
    /// listener stopped, the results checked, the tree removed.
    fn run(&self, config: Config, label: &str) -> RunResult {
        let dir = self.build_dir(label);
        let log = self.state.path().join(format!("configure-{label}.log"));
        let mut result = (|| -> Result<RunResult, String> {
            // The tree is copied before the listener starts: the copy is not part of the run.
            prepare_tree(&self.crate_root, &dir)?;
            let mut listener = self.start(config, label)?;
            let pid = listener.as_ref().map_or(0, Listener::cpu_pid);
            let (ms0, ns0) = (stat_cpu_ms(pid), cpu_ns(pid));
            let r = self.configure(&dir, &log, &[]);
            let (ms1, ns1) = (stat_cpu_ms(pid), cpu_ns(pid));
            let counters = if config.is_santad() {
                santad_counters(&self.santad_setup(config, label), COUNTERS)
            } else {
                BTreeMap::new()
            };
            if let Some(l) = listener.as_mut() {
                l.stop();
            }
            let mut r = r?;
            r.counters = counters;
            if pid > 0 {
                r.listener_cpu_ms = ms0.zip(ms1).map(|(a, b)| b - a);
                r.listener_cpu_ns = Some(ns1.saturating_sub(ns0));
            }
            Ok(r)
        })()
        .unwrap_or_else(|e| RunResult {
            failure: Some(e),
            ..Default::default()
        });
        if result.ok {
            result.results = results_of(&dir);
            result.same_results = self
                .reference
                .as_ref()
                .map(|r| result.results.as_ref() == Some(r));
        }
        if config.is_santad() {
            let text = std::fs::read_to_string(self.santad_setup(config, label).log_path())
                .unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("action=")) {
                let key = santad_log_key(line);
                if key.starts_with("decision=") {
                    result.santad_lines += 1;
                }
                *result.decisions.entry(key).or_default() += 1;
            }
        }
        if let Some(keep) = &self.keep {
            let _ = std::fs::create_dir_all(keep);
            let santa_log = self.santad_setup(config, label).log_path();
            for (from, name) in [
                (log.clone(), "configure-output.txt"),
                (dir.join("config.log"), "config.log"),
                (santa_log, "santa.log"),
            ] {
                let _ = std::fs::copy(&from, keep.join(format!("{label}-{name}")));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// The exec census: one run with no listener under `strace -f -e trace=execve`.
    fn census(&self) -> Result<Census, String> {
        let dir = self.build_dir("census");
        prepare_tree(&self.crate_root, &dir)?;
        let traces = self.state.path().join("census-strace.txt");
        let wrapper: Vec<String> = [
            "strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(traces.display().to_string()))
        .collect();
        let log = self.state.path().join("configure-census.log");
        let r = self.configure(&dir, &log, &wrapper)?;
        if !r.ok {
            return Err(r.failure.unwrap_or_else(|| "configure failed".into()));
        }
        let mut census = Census::default();
        for path in successful_execs(&traces) {
            let abs = if path.is_absolute() {
                path.clone()
            } else {
                dir.join(&path)
            };
            if abs.starts_with(&self.toolchain.dir) {
                let name = abs
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                *census.toolchain.entry(name).or_default() += 1;
            } else if let Ok(rel) = abs.strip_prefix(&dir) {
                let rel = rel.strip_prefix(".").unwrap_or(rel).to_path_buf();
                if self.scripts.iter().any(|(p, _)| *p == rel) {
                    *census.scripts.entry(rel.display().to_string()).or_default() += 1;
                } else {
                    *census.built.entry(rel.display().to_string()).or_default() += 1;
                }
            } else if abs.starts_with(self.watched.path()) {
                *census.other_watched.entry(abs.display().to_string()).or_default() += 1;
            } else {
                // strace's own exec of the wrapper (timeout) is the first line; count it too.
                *census.root_fs.entry(abs.display().to_string()).or_default() += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(census)
    }
}

/// fapolicyd's rules here: trusted files (the toolchain copies) execute, and so does whatever is
/// under the build directories (no transitive trust in fapolicyd: a `dir=` rule is how a
/// build's outputs and scripts get to run); any other execution is denied; plain opens are
/// allowed.
fn fapolicyd_rules(builds: &Path) -> String {
    format!(
        "allow perm=execute all : trust=1\nallow perm=execute all : dir={}/\n\
         deny_audit perm=execute all : all\nallow perm=open all : all\n",
        builds.display()
    )
}

/// What one configure run executes, by where the file lives.
#[derive(Debug, Default)]
struct Census {
    toolchain: BTreeMap<String, usize>,
    /// Executable files of the source tree (helper scripts).
    scripts: BTreeMap<String, usize>,
    /// Files the run produced (conftest programs).
    built: BTreeMap<String, usize>,
    other_watched: BTreeMap<String, usize>,
    root_fs: BTreeMap<String, usize>,
}

/// user + system CPU of this process's reaped children so far, s.
fn children_cpu_s() -> f64 {
    // SAFETY: `ru` is a zeroed rusage the kernel fills.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn median_f(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Each round's wall time of `config` over that round's run with no listener (runs that
/// succeeded).
fn round_ratios(runs: &BTreeMap<Config, Vec<(usize, RunResult)>>, config: Config) -> Vec<f64> {
    let (Some(c), Some(base)) = (runs.get(&config), runs.get(&Config::None)) else {
        return Vec::new();
    };
    c.iter()
        .filter(|(_, x)| x.ok)
        .filter_map(|(round, x)| {
            let b = base.iter().find(|(br, bx)| br == round && bx.ok)?;
            Some(x.wall_s / b.1.wall_s)
        })
        .collect()
}

fn sum(m: &BTreeMap<String, usize>) -> usize {
    m.values().sum()
}

/// `name count` pairs, `quote`d names.
fn counts(m: &BTreeMap<String, usize>, quote: bool) -> String {
    let q = if quote { "`" } else { "" };
    m.iter()
        .map(|(k, n)| format!("{q}{k}{q} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The census paragraph of the report.
fn census_text(c: &Census) -> String {
    let watched = sum(&c.toolchain) + sum(&c.scripts) + sum(&c.built) + sum(&c.other_watched);
    let mut busiest: Vec<(&String, &usize)> = c.root_fs.iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(a.1));
    let busiest: BTreeMap<String, usize> = busiest
        .into_iter()
        .take(6)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    let other = if c.other_watched.is_empty() {
        String::new()
    } else {
        format!(", other {}", sum(&c.other_watched))
    };
    format!(
        "Execs of one run (counted once, on a separate run with no listener, with `strace -f -e \
         trace=execve`: successful execve calls): {} in all. On the watched image {watched}: the \
         toolchain copies {} ({}), the source tree's scripts {} ({}), programs the run linked {} \
         ({}){other}. On the unwatched root filesystem {} (sh, sed, grep, rm, cat, …: none of the \
         listeners sees these; the most frequent: {}).\n\n",
        watched + sum(&c.root_fs),
        sum(&c.toolchain),
        counts(&c.toolchain, false),
        sum(&c.scripts),
        counts(&c.scripts, true),
        sum(&c.built),
        counts(&c.built, true),
        sum(&c.root_fs),
        counts(&busiest, true),
    )
}

struct Report<'a> {
    args: &'a Args,
    configs: &'a [Config],
    /// Every run, by configuration: (round, result).
    runs: &'a BTreeMap<Config, Vec<(usize, RunResult)>>,
    census: &'a Result<Census, String>,
    verified: &'a [String],
    /// How the linker wrote the test program (see [`output_writes`]).
    linker_writes: &'a str,
    bench: &'a Bench,
    source: &'a str,
    load: (&'a str, &'a str),
    elapsed: Duration,
}

fn render(r: &Report<'_>) -> String {
    let b = r.bench;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## configure: jemalloc's autoconf configure under each listener{}\n",
        if r.args.linker == "ld.gold" {
            ", ld.gold as the linker"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "{}\n", machine_summary());
    let _ = writeln!(
        out,
        "{} Load average (1/5/15 min) at the start: {}; at the end: {}.\n",
        r.source, r.load.0, r.load.1
    );
    let flags = format!(
        "{}{}{}",
        if r.args.quick { " --quick" } else { "" },
        if r.args.fs == ImageFs::Xfs {
            String::new()
        } else {
            format!(" --fs {}", r.args.fs.name())
        },
        if r.args.linker == "ld.gold" {
            " --ld gold"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "Rewritten by `make perf-configure` (`configure-bench{}`, as root; part of `make perf`). \
         The script: jemalloc's `configure` (generated by autoconf 2.69) as vendored in the crates.io \
         crate `{CRATE}` {VERSION}, downloaded at run time into the build directory \
         (`perf-downloads/`, checked against the crates.io index's SHA-256), never committed. Each \
         run copies the sources into a fresh directory on a private {} loop image (the watched \
         mount; the copy is made before the listener starts and is not timed), starts the listener, \
         runs `sh configure --with-version={JEMALLOC_VERSION} {}` there (the crate's build script's \
         arguments) with `CFLAGS=\"{CFLAGS}\"` and `CC=\"<image>/toolchain/gcc -B<image>/toolchain/\"`, \
         and stops the listener. {} rounds, one run of each configuration per round in rotating \
         order; each listener is started fresh for its run, santad with a fresh rules database \
         (no transitive rule survives from an earlier run).\n",
        flags,
        r.args.fs.name(),
        CONFIGURE_ARGS.join(" "),
        r.args.rounds,
    );
    let _ = writeln!(
        out,
        "The toolchain on the watched image: copies of {} as {}. The copied driver runs with \
         `GCC_EXEC_PREFIX={}` (so that it finds headers, crt files, libgcc and the LTO plugin where \
         they are installed) and `-B<image>/toolchain/` (so that it runs cc1, as and collect2 from \
         the copies, and collect2 runs the copy of {}). Checked at setup by compiling and \
         linking a test program under `strace -f`: it ran exactly {}, and the linker wrote the \
         program with {} (what matters to santad: a transitive rule is made for a compiler's output \
         when it is closed). Everything else configure runs (sh, bash, sed, grep, rm, cat, awk, …) \
         lives on the unwatched root filesystem: none of the listeners sees those execs, in any \
         configuration.\n",
        b.toolchain
            .files
            .iter()
            .map(|(_, from, _)| format!("`{}`", from.display()))
            .collect::<Vec<_>>()
            .join(", "),
        TOOLCHAIN
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        b.toolchain.gcc_exec_prefix,
        r.args.linker,
        r.verified
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", "),
        r.linker_writes,
    );
    let _ = writeln!(
        out,
        "santad Lockdown: `EnableTransitiveRules = true`; each toolchain copy gets `santactl rule \
         --compiler --sha256 <its SHA-256>`, and each of the {} files of the source tree with an \
         execute bit (the helper scripts configure may exec, e.g. `include/jemalloc/jemalloc_rename.sh`) \
         `santactl rule --allow --sha256 <its SHA-256>`; `configure` itself is run by `sh configure`, \
         not exec'd. The conftest programs it links can only run on transitive rules (written and \
         closed by the compiler-ruled ld). santad Monitor runs with its defaults and no rules. \
         fapolicyd (1.1.7, enforcing, `integrity = sha256`) trusts the five toolchain copies (trust \
         file: path, size, SHA-256) and, having no transitive trust, allows execution under the \
         build directories with a `dir=` rule:\n",
        b.scripts.len()
    );
    let _ = writeln!(out, "```\n{}```\n", fapolicyd_rules(Path::new("<image>/builds")));
    match r.census {
        Ok(c) => out.push_str(&census_text(c)),
        Err(e) => {
            let _ = writeln!(out, "Exec census: not taken ({e}).\n");
        }
    }
    let _ = writeln!(
        out,
        "| configuration | runs ok | wall s (median) | min…max s | × no listener (medians) | per-round × no listener | listener CPU ms/run (utime+stime, median) | listener CPU ms/run (schedstat, median) | configure's CPU s (median) | results as with no listener | santad log lines/run (median) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let walls = |c: Config| -> Vec<f64> {
        r.runs
            .get(&c)
            .map(|v| v.iter().filter(|(_, x)| x.ok).map(|(_, x)| x.wall_s).collect())
            .unwrap_or_default()
    };
    let base = median_f(&walls(Config::None));
    for c in r.configs {
        let Some(runs) = r.runs.get(c) else { continue };
        let ok: Vec<&RunResult> = runs.iter().filter(|(_, x)| x.ok).map(|(_, x)| x).collect();
        let w = walls(*c);
        let med = median_f(&w);
        let lo = w.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let per_round: Vec<String> = round_ratios(r.runs, *c)
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect();
        let ms: Vec<f64> = ok.iter().filter_map(|x| x.listener_cpu_ms).collect();
        let ns: Vec<f64> = ok
            .iter()
            .filter_map(|x| x.listener_cpu_ns.map(|n| n as f64 / 1e6))
            .collect();
        let cc: Vec<f64> = ok.iter().map(|x| x.children_cpu_s).collect();
        let same = ok.iter().filter(|x| x.same_results == Some(true)).count();
        let lines: Vec<f64> = ok.iter().map(|x| x.santad_lines as f64).collect();
        let f = |v: Option<f64>, p: usize| v.map_or("—".to_string(), |v| format!("{v:.p$}"));
        let _ = writeln!(
            out,
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name(),
            ok.len(),
            runs.len(),
            f(med, 2),
            if w.is_empty() {
                "—".into()
            } else {
                format!("{lo:.2}…{hi:.2}")
            },
            if *c == Config::None {
                "—".into()
            } else {
                f(med.zip(base).map(|(m, b)| m / b), 3)
            },
            if *c == Config::None || per_round.is_empty() {
                "—".into()
            } else {
                per_round.join(", ")
            },
            f(median_f(&ms), 0),
            f(median_f(&ns), 1),
            f(median_f(&cc), 2),
            if ok.is_empty() {
                "—".into()
            } else {
                format!("{same} of {}", ok.len())
            },
            if c.is_santad() {
                f(median_f(&lines), 0)
            } else {
                "—".into()
            },
        );
    }
    let _ = writeln!(out);
    for c in r.configs {
        let Some(runs) = r.runs.get(c) else { continue };
        if c.is_santad() {
            let mut all: BTreeMap<String, usize> = BTreeMap::new();
            let mut counters: BTreeMap<String, u64> = BTreeMap::new();
            for (_, x) in runs {
                for (k, n) in &x.decisions {
                    *all.entry(k.clone()).or_default() += n;
                }
                for (k, n) in &x.counters {
                    *counters.entry(k.clone()).or_default() += n;
                }
            }
            counters.retain(|_, v| *v > 0);
            let _ = writeln!(
                out,
                "- {}: santad's log over its {} runs: {}; its counters (summed over the runs, \
                 non-zero): {}.",
                c.name(),
                runs.len(),
                if all.is_empty() {
                    "no lines".to_string()
                } else {
                    all.iter()
                        .map(|(k, n)| format!("`{k}` × {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                if counters.is_empty() {
                    "none".to_string()
                } else {
                    counters
                        .iter()
                        .map(|(k, n)| format!("{k} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        for (round, x) in runs {
            if let Some(f) = &x.failure {
                let _ = writeln!(out, "- {} failed in round {}: {f}", c.name(), round + 1);
            } else if x.same_results == Some(false) {
                let _ = writeln!(
                    out,
                    "- {}, round {}: configure's generated headers differ from the run with no listener.",
                    c.name(),
                    round + 1
                );
            }
        }
    }
    let _ = writeln!(out, "\nTargets:\n");
    let lock = median_f(&walls(Config::SantadLockdown));
    let fapo = median_f(&walls(Config::Fapolicyd));
    let lock_runs = r.runs.get(&Config::SantadLockdown);
    let lock_clean = lock_runs.is_some_and(|v| {
        !v.is_empty() && v.iter().all(|(_, x)| x.ok && x.same_results == Some(true))
    });
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(
        out,
        "- santad Lockdown with compiler rules ≤ {TARGET_RATIO} × no listener (medians): {}.",
        match (lock, base, lock_clean) {
            (Some(l), Some(b), true) => format!(
                "{} ({l:.2} s against {b:.2} s: {:.3} ×; the median of the per-round ratios, each \
                 run against the same round's run with no listener: {})",
                verdict(l <= TARGET_RATIO * b),
                l / b,
                median_f(&round_ratios(r.runs, Config::SantadLockdown))
                    .map_or("—".to_string(), |x| format!("{x:.3} ×")),
            ),
            (_, _, false) if lock_runs.is_some_and(|v| !v.is_empty()) => {
                "MISSED: not every run succeeded with the results of the run with no listener (see above)".to_string()
            }
            _ => "not measured".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "- santad Lockdown with compiler rules faster than fapolicyd (medians): {}.",
        match (lock, fapo, lock_clean) {
            (Some(l), Some(f), true) => format!("{} ({l:.2} s against {f:.2} s)", verdict(l < f)),
            (_, _, false) if lock_runs.is_some_and(|v| !v.is_empty()) => {
                "MISSED: santad Lockdown's runs did not all succeed".to_string()
            }
            _ => "not measured".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "\nconfigure-bench took {:.1} min (setup, the census run, a warm-up run, {} rounds).",
        r.elapsed.as_secs_f64() / 60.0,
        r.args.rounds
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
        eprintln!("configure-bench: needs root (fanotify permission events, mounts)");
        return ExitCode::from(2);
    }
    let configs: Vec<Config> = Config::ALL
        .into_iter()
        .filter(|c| {
            *c == Config::None
                || args
                    .only
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|k| k == c.key()))
        })
        .collect();
    let began = Instant::now();
    let load_start = context::loadavg();
    let source = context::source_state();
    let setup = || -> Result<(Bench, Vec<String>, String), String> {
        let crate_root = fetch_crate()?;
        let bench = Bench::new(crate_root, args.fs, args.linker)?;
        let (verified, writes) = bench.toolchain.verify(bench.state.path())?;
        Ok((bench, verified, writes))
    };
    let (mut bench, verified, linker_writes) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("configure-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    bench.keep = args.keep.clone();
    eprintln!("configure-bench: exec census (strace, no listener)…");
    let census = bench.census();
    if let Err(e) = &census {
        eprintln!("  census failed: {e}");
    }
    eprintln!("configure-bench: warm-up and reference run (no listener)…");
    let warm = bench.run(Config::None, "reference");
    if !warm.ok {
        eprintln!(
            "configure-bench: the run with no listener failed: {}",
            warm.failure.unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    bench.reference = warm.results;
    if bench.reference.is_none() {
        eprintln!("configure-bench: no reference results ({RESULT_FILES:?} missing)");
        return ExitCode::FAILURE;
    }
    let mut runs: BTreeMap<Config, Vec<(usize, RunResult)>> = BTreeMap::new();
    // (runs started on a quiet machine, runs, time waited for it).
    let mut quiet = (0usize, 0usize, Duration::ZERO);
    for round in 0..args.rounds {
        for k in 0..configs.len() {
            let config = configs[(k + round) % configs.len()];
            let label = format!("r{round}-{}", config.key());
            eprint!("round {}/{}: {} … ", round + 1, args.rounds, config.name());
            let (waited, calm) = santa_perf::wait_quiet(QUIET_RUNNING_MAX, QUIET_WAIT_MAX);
            quiet.0 += usize::from(calm);
            quiet.1 += 1;
            quiet.2 += waited;
            let result = bench.run(config, &label);
            eprintln!(
                "{:.2} s{}",
                result.wall_s,
                result
                    .failure
                    .as_ref()
                    .map(|f| format!(" FAILED: {f}"))
                    .unwrap_or_default()
            );
            runs.entry(config).or_default().push((round, result));
        }
    }
    let load_end = context::loadavg();
    let source = format!(
        "{source} Before each run the benchmark waited for a quiet machine (at most \
         {QUIET_RUNNING_MAX} runnable tasks machine-wide for half a second, waiting at most {} s): \
         {} of {} runs started quiet, {:.0} s waited in all.",
        QUIET_WAIT_MAX.as_secs(),
        quiet.0,
        quiet.1,
        quiet.2.as_secs_f64()
    );
    let report = render(&Report {
        args: &args,
        configs: &configs,
        runs: &runs,
        census: &census,
        verified: &verified,
        linker_writes: &linker_writes,
        bench: &bench,
        source: &source,
        load: (&load_start, &load_end),
        elapsed: began.elapsed(),
    });
    print!("{report}");
    // The ld.gold variant has a file and a section of its own beside the default's.
    let key = if args.linker == "ld.gold" {
        "configure-gold"
    } else {
        "configure"
    };
    match write_result(&format!("{key}.md"), &report) {
        Ok(p) => eprintln!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write results/{key}.md: {e}"),
    }
    match write_results_section(key, &report) {
        Ok(p) => eprintln!("wrote its section of {}", p.display()),
        Err(e) => eprintln!("could not write RESULTS.md: {e}"),
    }
    drop(bench);
    ExitCode::SUCCESS
}
