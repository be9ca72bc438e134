//! Hashing benchmark: SHA-256 throughput of `santa_signing::hash_path` on a 256 MiB file in the
//! page cache, side by side in the same run with `openssl dgst -sha256` and `sha256sum` (spawned
//! and timed, rounds interleaved with a rotating order); per-call tails from 4 KiB to 16 MiB for
//! every way of reading the bytes — mmap (santad's path, registered with the SIGBUS handler),
//! mmap without the registry, `pread` of the whole file, and streaming `pread` through a reused
//! 256 KiB or 1 MiB buffer — which places `MMAP_THRESHOLD_BYTES_DEFAULT` and answers whether
//! streaming is as fast as mmap on every size; the cost of the SIGBUS registration on a map/unmap
//! cycle; and the time to fully parse and verify the Developer ID fixture (two slices, page
//! hashes, CMS, chain).
//!
//! `cargo run --release -p santa-perf --bin hash-bench [-- --quick]`; writes
//! `perf/results/hash.md`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use santa_perf::{machine_summary, write_result};
use santa_signing::file::hash_file_streaming;
use santa_signing::verify::ExternalFiles;
use santa_signing::{FileBytes, FileSigning, HashLimits, ReadMethod, Sha256, hash_path, stat_file};

const BIG_FILE_BYTES: usize = 256 << 20;

/// Streaming buffers measured: 256 KiB stays in L2 on these EPYCs; 1 MiB is the top of the range
/// the issue names. Each is allocated once and reused for every call.
const STREAM_BUFFER_BYTES: [usize; 2] = [256 << 10, 1 << 20];

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

/// Times one run of `f`: `None` when it failed or `ok` refuses what it returned.
fn timed<T>(f: impl FnOnce() -> Option<T>, ok: impl FnOnce(&T) -> bool) -> Option<Duration> {
    let start = Instant::now();
    let out = f()?;
    let d = start.elapsed();
    ok(&out).then_some(d)
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

/// `hash_file_streaming` of `path` through `buffer`, opened like `hash_path` opens.
fn hash_streaming(path: &Path, limits: &HashLimits, buffer: &mut [u8]) -> Option<(Sha256, bool)> {
    let file = File::open(path).ok()?;
    let h = hash_file_streaming(&file, limits, buffer).ok()?;
    Some((h.sha256, h.changed))
}

/// The same work as `hash_path` on a mapped file — open, fstat, mmap, madvise, SHA-256, fstat,
/// munmap — with a bench-local mapping that is NOT entered in santa-signing's SIGBUS registry:
/// the baseline for what the registration costs.
fn hash_unregistered_mmap(path: &Path) -> Option<(Sha256, bool)> {
    let file = File::open(path).ok()?;
    let before = stat_file(&file).ok()?;
    let len = usize::try_from(before.1.size_bytes).ok()?;
    let ptr = map_unregistered(&file, len)?;
    // SAFETY: `ptr` is a live read-only mapping of `len` bytes (just made, unmapped below, after
    // the last use of `bytes`); the bench's own files are not truncated while mapped.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    let sha = Sha256::digest(bytes);
    let changed = stat_file(&file).ok()? != before;
    unmap(ptr, len);
    Some((sha, changed))
}

/// `mmap` of the whole of `file`, read-only and private, with sequential read-ahead advised.
fn map_unregistered(file: &File, len: usize) -> Option<*mut libc::c_void> {
    // SAFETY: a fresh read-only private mapping chosen by the kernel (no fixed address), of a
    // file descriptor that is open for the call; nothing aliases it yet.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: advice on the mapping just made; it changes no memory contents.
    unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
    Some(ptr)
}

fn unmap(ptr: *mut libc::c_void, len: usize) {
    // SAFETY: `ptr`/`len` are exactly a mapping from `map_unregistered` with no borrow left.
    unsafe { libc::munmap(ptr, len) };
}

fn hist_ns() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram")
}

/// `p50 / p99 / max` of a histogram in nanoseconds, shown in µs.
fn tails_us(h: &Histogram<u64>) -> String {
    let us = |ns: u64| ns as f64 / 1e3;
    format!(
        "{:.1} / {:.1} / {:.1}",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.max())
    )
}

/// One table row: `| name | n | p50 | p99 | p99.9 | max |`, in the histogram's own unit.
fn tails_row(report: &mut String, name: &str, h: &Histogram<u64>) {
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
    let stream_bufs = STREAM_BUFFER_BYTES.map(|n| RefCell::new(vec![0u8; n]));
    type Runner<'a> = Box<dyn Fn() -> Option<Duration> + 'a>;
    let check = |hex: String| (hex == reference.to_string()).then_some(());
    let streaming = |i: usize| -> Runner<'_> {
        let (big, limits, bufs) = (&big, &limits, &stream_bufs);
        Box::new(move || {
            let mut buf = bufs[i].borrow_mut();
            timed(
                || hash_streaming(big, limits, &mut buf),
                |&(sha, changed)| sha == reference && !changed,
            )
        })
    };
    let runners: Vec<(&str, Runner<'_>)> = vec![
        (
            "santa-signing `hash_path` (mmap + ring)",
            Box::new(|| {
                timed(
                    || hash_path(&big, &limits).ok(),
                    |h| h.sha256 == reference && h.method == ReadMethod::Mmap,
                )
            }),
        ),
        (
            "santa-signing `hash_path` (pread + ring)",
            Box::new(|| {
                timed(
                    || hash_path(&big, &read_limits).ok(),
                    |h| h.sha256 == reference && h.method == ReadMethod::Read,
                )
            }),
        ),
        (
            "santa-signing streaming `pread` 256 KiB + ring",
            streaming(0),
        ),
        ("santa-signing streaming `pread` 1 MiB + ring", streaming(1)),
        (
            "mmap + ring without the SIGBUS registry (bench-local)",
            Box::new(|| {
                timed(
                    || hash_unregistered_mmap(&big),
                    |&(sha, changed)| sha == reference && !changed,
                )
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
    let median_of = |name_prefix: &str| {
        runners
            .iter()
            .zip(&series)
            .find(|((name, _), s)| name.starts_with(name_prefix) && !s.times.is_empty())
            .map_or(f64::NAN, |(_, s)| gbps(BIG_FILE_BYTES, s.median()))
    };
    let openssl_median = median_of("`openssl");
    let mmap_median = median_of("santa-signing `hash_path` (mmap");
    let _ = writeln!(
        report,
        "## SHA-256 of a 256 MiB file in the page cache ({rounds} rounds, interleaved)\n"
    );
    let _ = writeln!(
        report,
        "| hasher | median GB/s | best GB/s | median ms | vs mmap (median) | vs openssl (median) |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|");
    for ((name, _), s) in runners.iter().zip(&series) {
        if s.times.is_empty() {
            let _ = writeln!(report, "| {name} | n/a | n/a | n/a | n/a | n/a |");
            continue;
        }
        let med = gbps(BIG_FILE_BYTES, s.median());
        let _ = writeln!(
            report,
            "| {name} | {med:.3} | {:.3} | {:.1} | {:.1} % | {:.1} % |",
            gbps(BIG_FILE_BYTES, s.best()),
            s.median().as_secs_f64() * 1e3,
            100.0 * med / mmap_median,
            100.0 * med / openssl_median
        );
    }
    let _ = writeln!(
        report,
        "\nThe spawned tools' times include their process start (about 1 ms, under 1 % here).\n"
    );

    // 2. Every way of reading, per call, from 4 KiB to 16 MiB: places the mmap threshold and
    //    answers whether streaming `pread` is as fast as mmap on every size.
    const METHODS: [&str; 5] = [
        "mmap (santad)",
        "mmap, no registry",
        "pread whole",
        "stream 256 KiB",
        "stream 1 MiB",
    ];
    let mmap_limits = HashLimits {
        mmap_threshold_bytes: 1,
        ..limits
    };
    let mut rows = Vec::new();
    for size_kib in [4usize, 16, 64, 256, 1024, 2048, 4096, 8192, 16384] {
        // About 256 MiB hashed per method and size, between 100 and 2000 calls.
        let calls = ((256usize << 10) / size_kib).clamp(100, 2000) / if quick { 4 } else { 1 };
        let p = tmp.0.join(format!("small-{size_kib}"));
        write_file(&p, size_kib << 10, size_kib as u64);
        let want = hash_path(&p, &read_limits).expect("hash").sha256;
        let mut hists: Vec<Histogram<u64>> = METHODS.iter().map(|_| hist_ns()).collect();
        for call in 0..calls {
            // Every method once per call, in a rotating order.
            for k in 0..METHODS.len() {
                let m = (call + k) % METHODS.len();
                let s = Instant::now();
                let (sha, changed) = match m {
                    0 => {
                        let h = hash_path(&p, &mmap_limits).expect("hash");
                        assert_eq!(h.method, ReadMethod::Mmap);
                        (h.sha256, h.changed)
                    }
                    1 => hash_unregistered_mmap(&p).expect("hash"),
                    2 => {
                        let h = hash_path(&p, &read_limits).expect("hash");
                        assert_eq!(h.method, ReadMethod::Read);
                        (h.sha256, h.changed)
                    }
                    _ => hash_streaming(&p, &limits, &mut stream_bufs[m - 3].borrow_mut())
                        .expect("hash"),
                };
                let d = s.elapsed();
                assert!(
                    sha == want && !changed,
                    "{} gave a wrong digest",
                    METHODS[m]
                );
                hists[m]
                    .record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                    .expect("record");
            }
        }
        rows.push((size_kib, calls, hists));
    }
    let _ = writeln!(
        report,
        "## Per call, 4 KiB to 16 MiB, every way of reading (page cache)\n\n\
         `hash_path` / `hash_file_streaming` per call including open and both fstats; every \
         method once per call in a rotating order, so all see the same noise. Cells: p50 / p99 / \
         max in µs.\n"
    );
    let _ = writeln!(report, "| size | calls | {} |", METHODS.join(" | "));
    let _ = writeln!(report, "|---|---|{}", "---|".repeat(METHODS.len()));
    for (size_kib, calls, hists) in &rows {
        let cells: Vec<String> = hists.iter().map(tails_us).collect();
        let _ = writeln!(
            report,
            "| {size_kib} KiB | {calls} | {} |",
            cells.join(" | ")
        );
    }
    let _ = writeln!(
        report,
        "\nRatios of p50 against mmap (santad) in the same run (> 100 % is slower than mmap), \
         and the fastest at p50:\n"
    );
    let _ = writeln!(
        report,
        "| size | {} | fastest p50 |",
        METHODS[1..].join(" | ")
    );
    let _ = writeln!(report, "|---|{}---|", "---|".repeat(METHODS.len() - 1));
    for (size_kib, _, hists) in &rows {
        let p50: Vec<f64> = hists
            .iter()
            .map(|h| h.value_at_quantile(0.5) as f64)
            .collect();
        let cells: Vec<String> = p50[1..]
            .iter()
            .map(|v| format!("{:.1} %", 100.0 * v / p50[0]))
            .collect();
        let fastest = p50
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map_or("n/a", |(i, _)| METHODS[i]);
        let _ = writeln!(
            report,
            "| {size_kib} KiB | {} | {fastest} |",
            cells.join(" | ")
        );
    }
    // The question the issue asks, answered from this run's p50s: is streaming as fast as mmap
    // on every size, and as fast as the path santad takes at each size (whole-file `pread`
    // below `MMAP_THRESHOLD_BYTES_DEFAULT`, mmap from it on)?
    let threshold_kib = usize::try_from(santa_signing::file::MMAP_THRESHOLD_BYTES_DEFAULT >> 10)
        .unwrap_or(usize::MAX);
    let _ = writeln!(
        report,
        "\nStreaming against mmap and against santad's path, at p50:\n"
    );
    for (m, method) in METHODS.iter().enumerate().skip(3) {
        let slower = |baseline: &dyn Fn(usize) -> usize| {
            let list: Vec<String> = rows
                .iter()
                .filter_map(|(size_kib, _, hists)| {
                    let base = hists[baseline(*size_kib)].value_at_quantile(0.5) as f64;
                    let ratio = hists[m].value_at_quantile(0.5) as f64 / base;
                    (ratio > 1.0)
                        .then(|| format!("{size_kib} KiB (+{:.1} %)", 100.0 * (ratio - 1.0)))
                })
                .collect();
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        };
        let _ = writeln!(
            report,
            "- {method}: slower than mmap on {}; slower than santad's path on {}.",
            slower(&|_| 0),
            slower(&|size_kib| if size_kib < threshold_kib { 2 } else { 0 })
        );
    }
    let _ = writeln!(
        report,
        "\nBelow the threshold santad reads with `FileBytes::load_reusing` into a worker's \
         buffer; `hash_path` here allocates a fresh one per call, so \"pread whole\" is a little \
         slower than santad's small-file path.\n"
    );

    // 2b. What the SIGBUS registration adds to a mapping: a map/unmap cycle of a 2 MiB file with
    //     no page touched, so the cycle is all syscalls and bookkeeping.
    {
        let p = tmp.0.join("small-2048");
        let file = File::open(&p).expect("open");
        let cycles = if quick { 5_000 } else { 20_000 };
        let mut registered = hist_ns();
        let mut raw = hist_ns();
        for i in 0..cycles {
            for k in 0..2 {
                let s = Instant::now();
                if (i + k) % 2 == 0 {
                    let b = FileBytes::load(&file, &mmap_limits).expect("load");
                    assert_eq!(b.method(), ReadMethod::Mmap);
                    drop(std::hint::black_box(b));
                    registered
                        .record(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX))
                        .expect("record");
                } else {
                    let (_, stamp) = stat_file(&file).expect("fstat");
                    let len = usize::try_from(stamp.size_bytes).expect("len");
                    let ptr = map_unregistered(&file, len).expect("map");
                    unmap(std::hint::black_box(ptr), len);
                    raw.record(u64::try_from(s.elapsed().as_nanos()).unwrap_or(u64::MAX))
                        .expect("record");
                }
            }
        }
        let _ = writeln!(
            report,
            "\n## Cost of the SIGBUS registration: map + unmap of a 2 MiB file, no page touched\n\n\
             `FileBytes::load` + drop (fstat, claim a slot, mmap, publish, madvise; release, \
             munmap) against the same syscalls without the registry, interleaved.\n"
        );
        let _ = writeln!(
            report,
            "| cycle | n | p50 ns | p99 ns | p99.9 ns | max ns |"
        );
        let _ = writeln!(report, "|---|---|---|---|---|---|");
        for (name, h) in [
            ("registered (`FileBytes::load` + drop)", &registered),
            ("unregistered (libc fstat + mmap + madvise + munmap)", &raw),
        ] {
            tails_row(&mut report, name, h);
        }
        let _ = writeln!(
            report,
            "\nDifference at p50: {} ns per mapping (registration + release are a CAS and a few \
             atomic stores each).\n",
            registered.value_at_quantile(0.5) as i64 - raw.value_at_quantile(0.5) as i64
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
                let f = FileSigning::from_bytes(&bytes, &external).expect("Mach-O");
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
                let f = FileSigning::from_bytes(&bytes, &external).expect("Mach-O");
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
                tails_row(&mut report, name, h);
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
