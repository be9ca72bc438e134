//! Hashing benchmark: SHA-256 throughput of `santa_signing::hash_path` on a 256 MiB file in the
//! page cache, side by side in the same run with `openssl dgst -sha256` and `sha256sum` (spawned
//! and timed, rounds interleaved with a rotating order); the mmap/`pread` crossover for small
//! files that sets `MMAP_THRESHOLD_BYTES_DEFAULT`; and the time to fully parse and verify the
//! Developer ID fixture (two slices, page hashes, CMS, chain).
//!
//! `cargo run --release -p santa-perf --bin hash-bench [-- --quick]`; writes
//! `perf/results/hash.md`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use santa_perf::{machine_summary, write_result};
use santa_signing::verify::ExternalFiles;
use santa_signing::{FileSigning, HashLimits, ReadMethod, hash_path};

const BIG_FILE_BYTES: usize = 256 << 20;

/// A temporary directory removed on drop (also when the benchmark panics).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("santa-hash-bench-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic incompressible bytes (xorshift64*), so no layer can shortcut zero pages.
fn fill(buf: &mut [u8], mut seed: u64) {
    for chunk in buf.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let v = seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn write_file(path: &Path, len: usize, seed: u64) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut s = seed;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], s);
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        f.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    f.sync_all().expect("sync");
}

/// Runs `cmd args.. path`, returns the wall time and the first hex word of its output.
fn run_tool(cmd: &str, args: &[&str], path: &Path) -> Option<(Duration, String)> {
    let start = Instant::now();
    let out = Command::new(cmd).args(args).arg(path).output().ok()?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `openssl dgst` prints `SHA2-256(path)= hex`, `sha256sum` prints `hex  path`.
    let hex = text
        .split(|c: char| c.is_whitespace() || c == '=')
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))?
        .to_string();
    Some((elapsed, hex))
}

#[derive(Default)]
struct Series {
    times: Vec<Duration>,
}

impl Series {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }
    fn best(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 9 };
    let tmp = TempDir::new();
    let mut report = String::new();
    let _ = writeln!(report, "# Hashing and signature verification\n");
    let _ = writeln!(report, "{}\n", machine_summary());
    let _ = writeln!(
        report,
        "Command: `cargo run --release -p santa-perf --bin hash-bench{}`\n",
        if quick { " -- --quick" } else { "" }
    );

    // 1. Throughput on 256 MiB in the page cache.
    let big = tmp.0.join("big.bin");
    write_file(&big, BIG_FILE_BYTES, 0x5eed);
    let limits = HashLimits::default();
    // Warm the page cache and learn the reference digest.
    let reference = hash_path(&big, &limits).expect("hash").sha256;
    let read_limits = HashLimits {
        mmap_threshold_bytes: u64::MAX,
        ..limits
    };
    type Runner<'a> = Box<dyn Fn() -> Option<Duration> + 'a>;
    let check = |hex: String| (hex == reference.to_string()).then_some(());
    let runners: Vec<(&str, Runner<'_>)> = vec![
        (
            "santa-signing `hash_path` (mmap + ring)",
            Box::new(|| {
                let start = Instant::now();
                let h = hash_path(&big, &limits).ok()?;
                let d = start.elapsed();
                (h.sha256 == reference && h.method == ReadMethod::Mmap).then_some(d)
            }),
        ),
        (
            "santa-signing `hash_path` (pread + ring)",
            Box::new(|| {
                let start = Instant::now();
                let h = hash_path(&big, &read_limits).ok()?;
                let d = start.elapsed();
                (h.sha256 == reference && h.method == ReadMethod::Read).then_some(d)
            }),
        ),
        (
            "`openssl dgst -sha256` (spawned)",
            Box::new(|| {
                let (d, hex) = run_tool("openssl", &["dgst", "-sha256"], &big)?;
                check(hex).map(|()| d)
            }),
        ),
        (
            "`sha256sum` (spawned)",
            Box::new(|| {
                let (d, hex) = run_tool("sha256sum", &[], &big)?;
                check(hex).map(|()| d)
            }),
        ),
    ];
    let mut series: Vec<Series> = runners.iter().map(|_| Series::default()).collect();
    for round in 0..rounds {
        // Rotate the order each round so no tool always runs first after a pause.
        for k in 0..runners.len() {
            let i = (round + k) % runners.len();
            match (runners[i].1)() {
                Some(d) => series[i].times.push(d),
                None => eprintln!("{}: failed or gave a wrong digest", runners[i].0),
            }
        }
    }
    let openssl_median = if series[2].times.is_empty() {
        f64::NAN
    } else {
        gbps(BIG_FILE_BYTES, series[2].median())
    };
    let _ = writeln!(
        report,
        "## SHA-256 of a 256 MiB file in the page cache ({rounds} rounds, interleaved)\n"
    );
    let _ = writeln!(
        report,
        "| hasher | median GB/s | best GB/s | median ms | vs openssl (median) |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for ((name, _), s) in runners.iter().zip(&series) {
        if s.times.is_empty() {
            let _ = writeln!(report, "| {name} | n/a | n/a | n/a | n/a |");
            continue;
        }
        let med = gbps(BIG_FILE_BYTES, s.median());
        let _ = writeln!(
            report,
            "| {name} | {med:.3} | {:.3} | {:.1} | {:.1} % |",
            gbps(BIG_FILE_BYTES, s.best()),
            s.median().as_secs_f64() * 1e3,
            100.0 * med / openssl_median
        );
    }
    let _ = writeln!(
        report,
        "\nThe spawned tools' times include their process start (about 1 ms, under 1 % here).\n"
    );

    // 2. Small files: mmap vs pread, to place the threshold.
    let _ = writeln!(
        report,
        "## Small and medium files: `hash_path` per call, mmap vs pread (median, page cache)\n"
    );
    let _ = writeln!(report, "| size | calls | mmap µs | pread µs | faster |");
    let _ = writeln!(report, "|---|---|---|---|---|");
    for size_kib in [4usize, 16, 64, 256, 1024, 2048, 4096, 8192, 16384] {
        // About 256 MiB hashed per configuration, between 30 and 2000 calls.
        let calls = ((256usize << 10) / size_kib).clamp(30, 2000) / if quick { 4 } else { 1 };
        let p = tmp.0.join(format!("small-{size_kib}"));
        write_file(&p, size_kib << 10, size_kib as u64);
        let mut med = [0f64; 2];
        for (j, threshold) in [1u64, u64::MAX].into_iter().enumerate() {
            let l = HashLimits {
                mmap_threshold_bytes: threshold,
                ..limits
            };
            let mut t: Vec<Duration> = (0..calls)
                .map(|_| {
                    let s = Instant::now();
                    let h = hash_path(&p, &l).expect("hash");
                    std::hint::black_box(h);
                    s.elapsed()
                })
                .collect();
            t.sort();
            med[j] = t[t.len() / 2].as_secs_f64() * 1e6;
        }
        let _ = writeln!(
            report,
            "| {size_kib} KiB | {calls} | {:.1} | {:.1} | {} |",
            med[0],
            med[1],
            if med[0] < med[1] { "mmap" } else { "pread" }
        );
    }

    // 3. Parse and verify the Developer ID executable.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/fixtures/macho/devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector",
    );
    match std::fs::read(&fixture) {
        Ok(bytes) => {
            let iterations = if quick { 200 } else { 2000 };
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let external = ExternalFiles::default();
            for _ in 0..iterations {
                let s = Instant::now();
                let f = FileSigning::from_bytes(&bytes, &external, 0).expect("Mach-O");
                let d = s.elapsed();
                assert!(f.status.is_valid(), "fixture must verify: {:?}", f.status);
                std::hint::black_box(f);
                hist.record(d.as_micros() as u64).expect("record");
            }
            let mut whole = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..iterations / 4 {
                let s = Instant::now();
                let bytes = santa_signing::FileBytes::open(&fixture, &limits).expect("load");
                let sha = bytes.sha256();
                let f = FileSigning::from_bytes(&bytes, &external, 0).expect("Mach-O");
                let d = s.elapsed();
                std::hint::black_box((sha, f));
                whole.record(d.as_micros() as u64).expect("record");
            }
            let _ = writeln!(
                report,
                "\n## Parse + verify the Developer ID executable ({} bytes, 2 slices)\n",
                bytes.len()
            );
            let _ = writeln!(
                report,
                "Both slices: Mach-O, SuperBlob, every page hash, special slots, CMS signature \
                 (RSA-2048), three certificate signatures, entitlements.\n"
            );
            let _ = writeln!(report, "| what | n | p50 µs | p99 µs | p99.9 µs | max µs |");
            let _ = writeln!(report, "|---|---|---|---|---|---|");
            for (name, h) in [
                ("parse + verify (bytes in memory)", &hist),
                ("open + mmap + SHA-256 + parse + verify", &whole),
            ] {
                let _ = writeln!(
                    report,
                    "| {name} | {} | {} | {} | {} | {} |",
                    h.len(),
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(report, "\nFixture {} unavailable: {e}", fixture.display());
        }
    }

    println!("{report}");
    match write_result("hash.md", &report) {
        Ok(p) => eprintln!("written to {}", p.display()),
        Err(e) => eprintln!("cannot write results: {e}"),
    }
}
