//! The rules benchmark: decision latency of `santa_rules::Evaluator::decide` with 1,000,000 rules
//! loaded, over a mix of hits and misses in which every file carries all five identities
//! (production-signed), so a miss probes all five tables and then the path regexes and the mode.
//! Also: snapshot build time (from memory and from SQLite), bulk JSON import, memory per rule,
//! heap allocations per decision, and Santa's own approach — one SQLite query per exec — as the
//! baseline in the same run.
//!
//! `cargo run --release -p santa-perf --bin rules-bench [-- --quick]`; writes
//! `perf/results/rules.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use santa_perf::{CountingAlloc, allocations, machine_summary, write_result};
use santa_rules::{
    Action, CdHash, Cleanup, ClientMode, FileIdentity, Policy, PolicyConfig, PolicyEngine, Rule,
    RuleChange, RuleIdentifier, RuleState, RuleStore, RuleType, Sha256, SigningId, SigningIdPrefix,
    SigningStatus, Snapshot, TeamId, export_rules_json, read_rules_file,
};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// splitmix64: a fixed seed makes every run build the same rules and probes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn team(&mut self) -> TeamId {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut t = [0u8; 10];
        for b in &mut t {
            *b = ALNUM[self.below(ALNUM.len() as u64) as usize];
        }
        TeamId::from_signature(&t).expect("generated team ids are valid")
    }
}

/// Rules per type in the 1M set, in `RuleType::ALL` order. Binary rules dominate real databases
/// (and transitive rules are Binary), so half of them are Binary.
const MIX: [usize; 5] = [100_000, 600_000, 100_000, 100_000, 100_000];

fn make_rules(rng: &mut Rng, total: usize) -> Vec<Rule> {
    let messages: Vec<String> = (0..100)
        .map(|i| format!("Blocked by policy {i}: ask IT"))
        .collect();
    let mut rules = Vec::with_capacity(total);
    for (ti, &share) in MIX.iter().enumerate() {
        let n = share * total / 1_000_000;
        for _ in 0..n {
            let t = RuleType::ALL[ti];
            let identifier = match t {
                RuleType::CdHash => RuleIdentifier::CdHash(CdHash(rng.bytes())),
                RuleType::Binary => RuleIdentifier::Binary(Sha256(rng.bytes())),
                RuleType::Certificate => RuleIdentifier::Certificate(Sha256(rng.bytes())),
                RuleType::TeamId => RuleIdentifier::TeamId(rng.team()),
                RuleType::SigningId => {
                    let team = rng.team();
                    let ident = format!("com.vendor{}.app{}", rng.below(100_000), rng.below(100));
                    RuleIdentifier::SigningId(SigningId::from_parts(
                        SigningIdPrefix::Team(team),
                        &ident,
                    ))
                }
            };
            let roll = rng.below(100);
            let state = if t == RuleType::Binary && roll < 5 {
                RuleState::AllowTransitive
            } else if roll < 90 {
                RuleState::Allow
            } else if roll < 99 {
                RuleState::Block
            } else {
                RuleState::SilentBlock
            };
            let mut r = Rule::new(identifier, state);
            if state.is_block() && rng.below(10) == 0 {
                r.custom_msg = Some(messages[rng.below(100) as usize].clone());
                r.custom_url = Some("https://it.example/santa".into());
            }
            rules.push(r);
        }
    }
    rules
}

/// One probe file, owned.
struct ProbeFile {
    sha256: Sha256,
    cdhash: CdHash,
    team: TeamId,
    ident: String,
    cert: Sha256,
    path: &'static [u8],
    kind: &'static str,
}

impl ProbeFile {
    fn identity(&self) -> FileIdentity<'_> {
        FileIdentity {
            sha256: self.sha256,
            cdhash: Some(self.cdhash),
            signing_id: Some(&self.ident),
            team_id: Some(self.team),
            cert_sha256: Some(self.cert),
            signing_status: SigningStatus::Production,
            is_platform_binary: false,
            path: self.path,
            signing_time: None,
            secure_signing_time: None,
        }
    }
}

const PATHS: [&str; 6] = [
    "/usr/local/bin/tool",
    "/home/alice/Downloads/installer",
    "/opt/allowed/bin/agent",
    "/tmp/build/a.out",
    "/Applications/Some Vendor App.app/Contents/MacOS/Some Vendor App",
    "/usr/libexec/helper-with-a-rather-long-name-for-the-regex",
];

/// Half complete misses; half hits spread evenly over the five types. Every file has all five
/// identities, random where they are not meant to hit.
fn make_probes(rng: &mut Rng, rules: &[Rule], count: usize) -> Vec<ProbeFile> {
    let by_type: Vec<Vec<&Rule>> = RuleType::ALL
        .iter()
        .map(|&t| rules.iter().filter(|r| r.rule_type() == t).collect())
        .collect();
    (0..count)
        .map(|i| {
            let mut p = ProbeFile {
                sha256: Sha256(rng.bytes()),
                cdhash: CdHash(rng.bytes()),
                team: rng.team(),
                ident: format!("com.random{}.tool", rng.below(1_000_000)),
                cert: Sha256(rng.bytes()),
                path: PATHS[i % PATHS.len()].as_bytes(),
                kind: "miss",
            };
            let slot = rng.below(10) as usize;
            if slot < 5 {
                let pool = &by_type[slot];
                let r = pool[rng.below(pool.len() as u64) as usize];
                match &r.identifier {
                    RuleIdentifier::CdHash(h) => p.cdhash = *h,
                    RuleIdentifier::Binary(h) => p.sha256 = *h,
                    RuleIdentifier::Certificate(h) => p.cert = *h,
                    RuleIdentifier::TeamId(t) => p.team = *t,
                    RuleIdentifier::SigningId(s) => {
                        if let SigningIdPrefix::Team(t) = s.prefix() {
                            p.team = t;
                        }
                        p.ident = s.ident().to_owned();
                    }
                }
                p.kind = RuleType::ALL[slot].santa_name();
            }
            p
        })
        .collect()
}

/// Reads the bytes a file's identity borrows, as the daemon just did when it hashed the file and
/// parsed its signature: the decision then starts with its inputs in cache, as in the daemon, and
/// only the rule index is cold.
fn touch(f: &FileIdentity<'_>) -> u64 {
    let sid = f.signing_id.map_or(0, |s| s.bytes().map(u64::from).sum());
    let path: u64 = f.path.iter().map(|&b| u64::from(b)).sum();
    sid + path + u64::from(f.sha256.0[0]) + u64::from(f.cert_sha256.map_or(0, |c| c.0[0]))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("static histogram bounds are valid")
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    name: String,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    n: u64,
}

fn row(name: impl Into<String>, h: &Histogram<u64>) -> Row {
    Row {
        name: name.into(),
        p50: h.value_at_quantile(0.50),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        n: h.len(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total_rules = if quick { 100_000 } else { 1_000_000 };
    let decisions: usize = if quick { 200_000 } else { 2_000_000 };
    let probe_count = 100_000;
    let baseline_queries = if quick { 5_000 } else { 50_000 };

    // Read the core list (and describe the machine) before pinning: afterwards both see only
    // the pinned core.
    let machine = machine_summary();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(core) = cores.last().copied() {
        core_affinity::set_for_current(core);
    }
    // Other work on the machine skews every figure; record how busy it was.
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rng = Rng(0x5a17_a5a1_7a5a_17a5);
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();

    // Rules and probes.
    let rules = make_rules(&mut rng, total_rules);
    let probes = make_probes(&mut rng, &rules, probe_count);
    eprintln!(
        "generated {} rules and {} probe files",
        rules.len(),
        probes.len()
    );

    // Snapshot build from memory, three times. Memory is measured on the first build, before
    // any freed snapshot could leave reusable pages behind.
    let mut build_times = Vec::new();
    let mut snapshot = None;
    let mut rss_delta = 0;
    for run in 0..3 {
        drop(snapshot.take());
        let rss0 = rss_bytes();
        let t = Instant::now();
        let s = Snapshot::from_rules(1, &rules).expect("snapshot fits");
        build_times.push(t.elapsed());
        if run == 0 {
            rss_delta = rss_bytes().saturating_sub(rss0);
        }
        snapshot = Some(s);
    }
    let snapshot = snapshot.expect("built above");
    let stats = snapshot.stats();
    eprintln!(
        "snapshot: {} rules, {} heap bytes",
        stats.rules(),
        stats.heap_bytes
    );

    // Decisions.
    let mut cfg = PolicyConfig {
        mode: ClientMode::Lockdown,
        enable_transitive_rules: true,
        ..PolicyConfig::default()
    };
    cfg.allowed_path_regex = vec!["/opt/allowed/".into(), r"/Applications/[^/]+\.app/".into()];
    cfg.blocked_path_regex = vec!["/tmp/".into(), "/home/[^/]+/Downloads/".into()];
    cfg.failsafe_paths = vec![b"/usr/sbin/santad".to_vec(), b"/usr/bin/santactl".to_vec()];
    let engine = Arc::new(PolicyEngine::new(
        snapshot,
        Policy::new(cfg.clone()).expect("valid policy"),
    ));
    let mut ev = engine.evaluator();
    let identities: Vec<FileIdentity<'_>> = probes.iter().map(ProbeFile::identity).collect();

    // Warm up (regex caches, branch predictors, page faults on the tables).
    for f in identities.iter().cycle().take(200_000) {
        black_box(ev.decide(black_box(f)));
    }

    // Clock overhead, to read the single-decision figures against.
    let mut clock = histogram();
    for _ in 0..200_000 {
        let t = Instant::now();
        let e = t.elapsed().as_nanos() as u64;
        clock.record(e.max(1)).ok();
    }

    // Single decisions, each timed.
    let kinds = [
        "miss",
        "CDHASH",
        "BINARY",
        "SIGNINGID",
        "CERTIFICATE",
        "TEAMID",
    ];
    let mut single = histogram();
    let mut by_kind: Vec<Histogram<u64>> = kinds.iter().map(|_| histogram()).collect();
    let (mut allows, mut denies) = (0u64, 0u64);
    let allocs_before = allocations();
    for (i, f) in identities.iter().cycle().take(decisions).enumerate() {
        black_box(touch(f));
        let t = Instant::now();
        let d = ev.decide(black_box(f));
        let e = t.elapsed().as_nanos() as u64;
        match d.action {
            Action::Allow => allows += 1,
            Action::Deny => denies += 1,
        }
        black_box(&d);
        drop(d);
        single.record(e.max(1)).ok();
        let k = probes[i % probes.len()].kind;
        if let Some(j) = kinds.iter().position(|&x| x == k) {
            by_kind[j].record(e.max(1)).ok();
        }
    }
    let allocs_single = allocations() - allocs_before;

    // Batches of 32 decisions, timed together and divided: no per-decision clock cost.
    const BATCH: usize = 32;
    let mut batched = histogram();
    let mut it = identities.iter().cycle();
    let mut batch: Vec<&FileIdentity<'_>> = Vec::with_capacity(BATCH);
    let allocs_before = allocations();
    for _ in 0..decisions / BATCH {
        batch.clear();
        batch.extend(it.by_ref().take(BATCH));
        black_box(batch.iter().map(|f| touch(f)).sum::<u64>());
        let t = Instant::now();
        for f in &batch {
            black_box(ev.decide(black_box(f)));
        }
        let e = t.elapsed().as_nanos() as u64 / BATCH as u64;
        batched.record(e.max(1)).ok();
    }
    let allocs_batched = allocations() - allocs_before;

    // Breakdown: the index lookup alone, and the pipeline with an empty index (failsafe check,
    // regexes, mode), both batched like the row above.
    let timed_batches = |f_one: &mut dyn FnMut(&FileIdentity<'_>)| {
        let mut h = histogram();
        let mut it = identities.iter().cycle();
        let mut batch: Vec<&FileIdentity<'_>> = Vec::with_capacity(BATCH);
        for _ in 0..decisions / BATCH / 2 {
            batch.clear();
            batch.extend(it.by_ref().take(BATCH));
            black_box(batch.iter().map(|f| touch(f)).sum::<u64>());
            let t = Instant::now();
            for f in &batch {
                f_one(black_box(f));
            }
            h.record((t.elapsed().as_nanos() as u64 / BATCH as u64).max(1))
                .ok();
        }
        h
    };
    // Throughput with one evaluator per core, each pinned, sharing the engine: the readers share
    // nothing written, so the aggregate should scale with cores (on a quiet machine).
    let per_thread = decisions / 2;
    let mut throughput: Vec<(usize, f64)> = Vec::new();
    for threads in 1..=cores.len().max(1) {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let mut ev = engine.evaluator();
                let core = cores.get(t).copied();
                let ids = &identities;
                scope.spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let offset = t * 7919;
                    for f in ids.iter().cycle().skip(offset).take(per_thread) {
                        black_box(ev.decide(black_box(f)));
                    }
                });
            }
        });
        let secs = start.elapsed().as_secs_f64();
        throughput.push((threads, (threads * per_thread) as f64 / secs / 1e6));
    }

    // A rule change on the live set: 100 changes (new rules, replacements, removals) applied to
    // the published snapshot, as the control thread does after committing them to the store.
    let current = engine.snapshot();
    let mut change_rng = Rng(99);
    let mut batch_changes: Vec<RuleChange> = make_rules(&mut change_rng, 50_000)
        .into_iter()
        .take(50)
        .map(RuleChange::Upsert)
        .collect();
    for r in rules.iter().step_by(rules.len() / 25 + 1).take(25) {
        let mut r = r.clone();
        r.state = RuleState::Block;
        batch_changes.push(RuleChange::Upsert(r));
    }
    for r in rules.iter().skip(7).step_by(rules.len() / 25 + 1).take(25) {
        batch_changes.push(RuleChange::Remove(r.identifier.clone()));
    }
    let t = Instant::now();
    let updated = current
        .with_changes(2, &batch_changes)
        .expect("update fits");
    let incremental_time = t.elapsed();
    drop(updated);
    let lookup_only = timed_batches(&mut |f| {
        black_box(current.lookup(&f.rule_identifiers()).map(|m| m.state()));
    });
    drop(current);
    let empty_engine = Arc::new(PolicyEngine::new(
        Snapshot::empty(0),
        Policy::new(cfg).expect("valid policy"),
    ));
    let mut empty_ev = empty_engine.evaluator();
    let pipeline_only = timed_batches(&mut |f| {
        black_box(empty_ev.decide(f));
    });

    // Santa's way as the baseline: the rule store on disk, one SQL query per exec.
    let dir = tempfile_dir();
    let db_path = dir.join("rules.db");
    let _ = std::fs::remove_file(&db_path);
    let mut store = RuleStore::open(&db_path).expect("open store");
    let changes: Vec<RuleChange> = rules.iter().cloned().map(RuleChange::Upsert).collect();
    let t = Instant::now();
    let outcome = store.apply(&changes, Cleanup::None).expect("bulk insert");
    let store_fill = t.elapsed();
    drop(changes);
    let t = Instant::now();
    let (from_store, report) = store.build_snapshot().expect("snapshot from store");
    let store_build = t.elapsed();
    assert_eq!(from_store.stats().rules(), stats.rules());
    assert_eq!(report.skipped_count, 0);
    drop(from_store);
    let mut sql = histogram();
    for f in identities.iter().cycle().take(baseline_queries) {
        let ids = f.rule_identifiers();
        let t = Instant::now();
        let r = store.find_rule(&ids).expect("query");
        let e = t.elapsed().as_nanos() as u64;
        black_box(r);
        sql.record(e.max(1)).ok();
    }
    drop(store);
    let _ = std::fs::remove_file(&db_path);

    // JSON import of 100,000 rules: parse + one transaction into a fresh on-disk store, then the
    // snapshot the daemon would publish.
    let import_n = 100_000.min(rules.len());
    let mut import_rng = Rng(7);
    // Transitive rules are not exported, so make them plain allows: exactly 100,000 in the file.
    let mut import_rules = make_rules(&mut import_rng, 100_000);
    for r in &mut import_rules {
        if r.state == RuleState::AllowTransitive {
            r.state = RuleState::Allow;
        }
    }
    let (json, _) = export_rules_json(&import_rules[..import_n.min(import_rules.len())]);
    let json_path = dir.join("import.json");
    std::fs::write(&json_path, json.as_bytes()).expect("write json");
    let import_db = dir.join("import.db");
    let _ = std::fs::remove_file(&import_db);
    let t = Instant::now();
    let parsed = read_rules_file(&json_path).expect("parse json");
    let parse_time = t.elapsed();
    let mut import_store = RuleStore::open(&import_db).expect("open import store");
    let t2 = Instant::now();
    import_store.apply(&parsed, Cleanup::None).expect("import");
    let apply_time = t2.elapsed();
    let t3 = Instant::now();
    let (imported, _) = import_store.build_snapshot().expect("snapshot");
    let import_snapshot_time = t3.elapsed();
    let import_total = t.elapsed();
    let imported_count = imported.stats().rules();
    drop(import_store);
    let _ = std::fs::remove_file(&import_db);
    let _ = std::fs::remove_file(&json_path);

    // Report.
    let n = stats.rules() as f64;
    writeln!(out, "# rules benchmark\n").ok();
    writeln!(out, "{machine}\n").ok();
    let load: Vec<&str> = load_at_start.split_whitespace().take(3).collect();
    writeln!(
        out,
        "Load average when the run started (1/5/15 min): {} — other builds share these cores.\n",
        load.join(" / ")
    )
    .ok();
    writeln!(
        out,
        "`cargo run --release -p santa-perf --bin rules-bench{}` — {} rules \
         (CDHash/Binary/SigningID/Certificate/TeamID = {:?}; 5% of Binary transitive, 90% allow, \
         10% block), Lockdown, 2 allowed + 2 blocked path regexes, 2 failsafe paths. Probes: {} \
         production-signed files with all five identities, 50% complete misses, 10% hits on each \
         type; cycled for {} decisions on one pinned core.\n",
        if quick { " -- --quick" } else { "" },
        stats.rules(),
        stats.rules_by_type,
        probes.len(),
        decisions
    )
    .ok();
    writeln!(out, "## Decision latency (ns)\n").ok();
    writeln!(out, "| measurement | p50 | p99 | p99.9 | max | samples |").ok();
    writeln!(out, "|---|---:|---:|---:|---:|---:|").ok();
    let mut rows = vec![
        row("decide(), batches of 32 timed together ÷ 32", &batched),
        row("decide(), each timed alone (includes clock read)", &single),
    ];
    for (k, h) in kinds.iter().zip(&by_kind) {
        rows.push(row(format!("  … of which {k}"), h));
    }
    rows.push(row(
        "breakdown: Snapshot::lookup alone, batched",
        &lookup_only,
    ));
    rows.push(row(
        "breakdown: decide() with an empty snapshot, batched",
        &pipeline_only,
    ));
    rows.push(row("clock read alone (Instant::now + elapsed)", &clock));
    rows.push(row(
        "baseline: Santa's SQL query per exec (find_rule, on disk)",
        &sql,
    ));
    for r in &rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.name, r.p50, r.p99, r.p999, r.max, r.n
        )
        .ok();
    }
    let ratio = sql.value_at_quantile(0.5) as f64 / batched.value_at_quantile(0.5).max(1) as f64;
    writeln!(
        out,
        "\nHeap allocations during the timed decisions: {allocs_single} in {decisions} single, \
         {allocs_batched} in {} batched. Decisions: {allows} allow, {denies} deny. Snapshot vs \
         SQL p50 ratio: {ratio:.0}×.\n",
        decisions / BATCH * BATCH
    )
    .ok();

    writeln!(out, "## Throughput, one pinned evaluator per core\n").ok();
    writeln!(out, "| workers | decisions/s (millions, aggregate) |").ok();
    writeln!(out, "|---:|---:|").ok();
    for (threads, mdps) in &throughput {
        writeln!(out, "| {threads} | {mdps:.2} |").ok();
    }
    writeln!(out).ok();

    writeln!(out, "## Build, import, memory\n").ok();
    writeln!(out, "| measurement | value | target |").ok();
    writeln!(out, "|---|---:|---|").ok();
    let builds: Vec<String> = build_times
        .iter()
        .map(|d| format!("{:.0}", ms(*d)))
        .collect();
    writeln!(
        out,
        "| snapshot build from {} in-memory rules (3 runs) | {} ms | ≤ 1000 ms |",
        stats.rules(),
        builds.join(" / ")
    )
    .ok();
    writeln!(
        out,
        "| incremental update of the {}-rule snapshot by {} changes (`Snapshot::with_changes`) | {:.0} ms | — |",
        stats.rules(),
        batch_changes.len(),
        ms(incremental_time)
    )
    .ok();
    writeln!(
        out,
        "| snapshot build from the SQLite store ({} rows, read + parse + index) | {:.0} ms | — |",
        stats.rules(),
        ms(store_build)
    )
    .ok();
    writeln!(
        out,
        "| bulk insert of {} rules into the store (one transaction; flush = {}) | {:.0} ms | — |",
        stats.rules(),
        outcome.flush_cache,
        ms(store_fill)
    )
    .ok();
    writeln!(
        out,
        "| JSON import of {imported_count} rules: parse {:.0} ms + store {:.0} ms + snapshot {:.0} ms | {:.0} ms | ≤ 2000 ms |",
        ms(parse_time),
        ms(apply_time),
        ms(import_snapshot_time),
        ms(import_total)
    )
    .ok();
    writeln!(
        out,
        "| snapshot heap (tables + entries + strings), per rule | {:.1} B | — |",
        stats.heap_bytes as f64 / n
    )
    .ok();
    writeln!(
        out,
        "| RSS growth while building the snapshot, per rule | {:.1} B | — |",
        rss_delta as f64 / n
    )
    .ok();
    writeln!(
        out,
        "| size of a `Decision` (cloned into the cache and to waiters) | {} B | — |",
        std::mem::size_of::<santa_rules::Decision>()
    )
    .ok();

    notes.push(
        "Single-decision times include one `Instant::now()`/`elapsed()` pair (its own cost is the \
         'clock read alone' row); the batched row divides the time of 32 consecutive decisions, \
         so its percentiles are of 32-decision averages and smooth out single outliers."
            .into(),
    );
    notes.push(
        "The machine is shared (2 cores, other builds running): max and p99.9 carry scheduler \
         noise; the same-run SQL baseline is the figure to compare against."
            .into(),
    );
    notes.push(
        "Throughput: each worker decides over its own stream with no shared writes, so the \
         aggregate scales with idle cores; with the load average above, the second core is \
         partly taken by other work and the 2-worker figure understates it."
            .into(),
    );
    writeln!(out).ok();
    for n in &notes {
        writeln!(out, "- {n}").ok();
    }
    let _ = std::fs::remove_dir_all(&dir);
    print!("{out}");
    match write_result("rules.md", &out) {
        Ok(p) => eprintln!("wrote {}", p.display()),
        Err(e) => eprintln!("could not write the results file: {e}"),
    }
}

/// A private scratch directory under the system temp dir.
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rules-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}
