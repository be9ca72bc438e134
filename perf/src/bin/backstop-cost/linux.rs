//! backstop-cost on Linux (see `main.rs`).

#![allow(clippy::unwrap_used)] // a benchmark harness: a failed step ends the run with its message

use santa_perf::stats::{TRIM, percentile, trimmed_mean, trimmed_se};
use santa_rules::Action;
use santa_testkit::{PrivateMount, TmpfsOptions};
use santad::linux::backstop::{Backstop, ProgramScope, kernel_dev_of};
use santad::linux::fanotify::{self, EventBuffer, Fanotify, InitOptions, MarkScope, WakeFd};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Execs left out at the start of each block of arm 3.
const WARMUP: usize = 50;

/// Exec `path` and wait: the elapsed nanoseconds; a refusal or a failed run ends the benchmark.
fn spawn_wait(path: &CString) -> u64 {
    match santa_perf::spawn_wait(path) {
        Ok(ns) => ns,
        Err(libc::ECHILD) => panic!("{} did not exit 0", path.to_string_lossy()),
        Err(rc) => panic!("posix_spawn: {}", std::io::Error::from_raw_os_error(rc)),
    }
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s
}

fn us(ns: f64) -> String {
    format!("{:.2}", ns / 1000.0)
}

fn tails(v: &[i64]) -> String {
    let s = sorted(v);
    format!(
        "{} | {} | {} | {}",
        us(percentile(&s, 0.5) as f64),
        us(percentile(&s, 0.99) as f64),
        us(percentile(&s, 0.999) as f64),
        us(*s.last().unwrap_or(&0) as f64)
    )
}

fn static_binary(dir: &Path) -> PathBuf {
    santa_perf::build_static_binary(dir).unwrap_or_else(|_| {
        panic!("cc -static failed (the benchmark builds a static binary; libc6-dev)")
    })
}

fn copy_exe(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Restores `kernel.bpf_stats_enabled` when dropped.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> BpfStats {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(path).unwrap_or_else(|_| "0".into());
        std::fs::write(path, "1").expect("enabling kernel.bpf_stats_enabled");
        BpfStats(before.trim().to_owned())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

fn load(dev: u32) -> Backstop {
    let b = Backstop::load(
        false,
        &ProgramScope {
            all: true,
            ..ProgramScope::default()
        },
    )
    .expect("loading the backstop");
    b.set_superblocks(&[dev]).unwrap();
    b.activate().unwrap();
    b
}

pub(crate) fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (pairs, block, rounds, stats_execs) = if quick {
        (2_000, 300, 4, 2_000)
    } else {
        (10_000, 250, 40, 10_000)
    };
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "backstop-cost needs root");

    let build = tempfile::tempdir().unwrap();
    let exit0 = static_binary(build.path());
    let watched = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 16 << 20,
        exec: true,
    })
    .unwrap();
    let unwatched = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 16 << 20,
        exec: true,
    })
    .unwrap();
    let exe = watched.join("exit0");
    let other = unwatched.join("exit0");
    copy_exe(&exit0, &exe);
    copy_exe(&exit0, &other);
    let exe_c = CString::new(exe.as_os_str().as_bytes()).unwrap();
    let other_c = CString::new(other.as_os_str().as_bytes()).unwrap();

    // The watched tmpfs as santad marks filesystems, the binary in the kernel's allow cache.
    let fan = Arc::new(
        Fanotify::new(InitOptions {
            report_pidfd: false,
            enable_audit: false,
        })
        .unwrap(),
    );
    fan.add_watch(
        watched.path(),
        MarkScope::Filesystem,
        fanotify::MASK_OPEN_EXEC_PERM,
    )
    .unwrap();
    let file = std::fs::File::open(&exe).unwrap();
    fan.ignore_inode(file.as_fd(), fanotify::MASK_OPEN_EXEC_PERM)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(WakeFd::new().unwrap());
    let answerer = {
        let (fan, stop, wake) = (fan.clone(), stop.clone(), wake.clone());
        std::thread::spawn(move || {
            let mut buf = EventBuffer::new(4096).unwrap();
            let mut answered = 0u64;
            while !stop.load(Ordering::Acquire) {
                let _ = fan.wait(&wake, 200);
                if let Ok(events) = fan.read_answering(&mut buf, Action::Allow) {
                    for e in events.flatten() {
                        if let Some(fd) = e.fd {
                            let _ = fan.respond(fd.as_fd(), Action::Allow, false);
                            answered += 1;
                        }
                    }
                }
            }
            answered
        })
    };
    let dev = kernel_dev_of(std::fs::metadata(&exe).unwrap().dev());
    for _ in 0..200 {
        spawn_wait(&exe_c);
        spawn_wait(&other_c);
    }

    // 1. The kernel's accounting.
    let stats = BpfStats::enable();
    let b = load(dev);
    let per_run = |b: &Backstop, path: &CString| {
        let (n0, t0) = b.program_runtime().unwrap();
        for _ in 0..stats_execs {
            spawn_wait(path);
        }
        let (n1, t1) = b.program_runtime().unwrap();
        ((t1 - t0) as f64 / (n1 - n0).max(1) as f64, n1 - n0)
    };
    let (covered_ns, covered_runs) = per_run(&b, &exe_c);
    let (report_ns, report_runs) = per_run(&b, &other_c);
    let reported = b.stats().reported;
    drop(b);
    drop(stats);

    // 2. Checks on against off, exec by exec.
    let b = load(dev);
    let mut diffs = Vec::with_capacity(pairs);
    let (mut on, mut off) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for i in 0..pairs {
        let first_on = i % 2 == 0;
        let run = |active: bool| {
            b.set_active(active).unwrap();
            spawn_wait(&exe_c) as i64
        };
        let (a, c) = if first_on {
            let a = run(true);
            (a, run(false))
        } else {
            let c = run(false);
            (run(true), c)
        };
        on.push(a);
        off.push(c);
        diffs.push(a - c);
    }
    drop(b);

    // 3. Loaded against not loaded, blocks rotated.
    let (mut loaded, mut absent) = (Vec::new(), Vec::new());
    let mut round_diffs = Vec::new();
    for r in 0..rounds {
        let block_of = |with: bool| {
            let b = with.then(|| load(dev));
            // The first execs after a load (or an unload) are left out: the load's own work
            // (verifier, JIT, maps) and the previous program's freeing run meanwhile.
            for _ in 0..WARMUP {
                spawn_wait(&exe_c);
            }
            let v: Vec<i64> = (0..block).map(|_| spawn_wait(&exe_c) as i64).collect();
            drop(b);
            v
        };
        let (l, a) = if r % 2 == 0 {
            let l = block_of(true);
            (l, block_of(false))
        } else {
            let a = block_of(false);
            (block_of(true), a)
        };
        round_diffs.push(trimmed_mean(&l) - trimmed_mean(&a));
        loaded.extend(l);
        absent.extend(a);
    }

    stop.store(true, Ordering::Release);
    let _ = wake.wake();
    let stray = answerer.join().unwrap_or(0);

    let diff_tm = trimmed_mean(&diffs);
    let diff_se = trimmed_se(&diffs);
    let block_diff = trimmed_mean(&loaded) - trimmed_mean(&absent);
    let mut rd = round_diffs.clone();
    rd.sort_by(f64::total_cmp);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let report = format!(
        "# Exec backstop cost\n\n\
         `{cmd}` on {date}; load average {load}.\n\
         Static binary on a private tmpfs with santad's filesystem mark and a kernel-cache ignore \
         mark (no event reaches user space; {stray} stray events answered). Times are whole \
         execs (posix_spawn + waitpid), in µs.\n\n\
         ## 1. The kernel's accounting (`kernel.bpf_stats_enabled`)\n\n\
         | path | runs | ns per run |\n|---|---|---|\n\
         | watched filesystem (every exec of a marked superblock) | {covered_runs} | {covered_ns:.0} |\n\
         | unwatched filesystem, reported ({reported} reports) | {report_runs} | {report_ns:.0} |\n\n\
         ## 2. Checks on against off, exec by exec ({pairs} pairs, order alternated)\n\n\
         | arm | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|\n\
         | checks on | {on_t} |\n| checks off (attached, returns at once) | {off_t} |\n\n\
         Per-exec difference, trimmed mean ({trim}% each end): **{diff} ± {se} µs** (± 1 SE).\n\n\
         ## 3. Loaded against not loaded ({rounds} rounds of {block} execs each after {WARMUP} left out, order rotated)\n\n\
         | arm | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|\n\
         | backstop loaded | {l_t} |\n| no program | {a_t} |\n\n\
         Difference of trimmed means: **{bd} µs**; per round from {rmin} to {rmax} µs (median \
         {rmed}). Block-to-block drift on these machines is several µs, so this arm bounds the \
         cost only roughly; 1 and 2 measure it.\n\n\
         Target: under 1 µs per exec.\n",
        cmd = if quick {
            "make perf-backstop QUICK=1"
        } else {
            "make perf-backstop"
        },
        date = Command::new("date")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default(),
        load = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        on_t = tails(&on),
        off_t = tails(&off),
        trim = (TRIM * 100.0) as u32,
        diff = us(diff_tm),
        se = us(diff_se),
        l_t = tails(&loaded),
        a_t = tails(&absent),
        bd = us(block_diff),
        rmin = us(rd[0]),
        rmax = us(rd[rd.len() - 1]),
        rmed = us(rd[rd.len() / 2]),
    );
    print!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/backstop-cost.md");
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("{}: {e}", out.display());
    }
    drop(fan);
    watched.close().unwrap();
    unwatched.close().unwrap();
}
