//! Transitive rules (Santa's `SNTCompilerController`): a file that a process running a compiler
//! (an `ALLOWLIST_COMPILER` rule, with `EnableTransitiveRules`) wrote and closed, and that is an
//! executable, gets an `ALLOWLIST_TRANSITIVE` Binary rule for its SHA-256 in the rules database.
//!
//! Santa's semantics, kept:
//! - a rule already stored for that SHA-256 (an allow, a block, a compiler rule) is left alone,
//!   so a transitive rule never replaces a rule an operator or a sync server wrote; a stored
//!   transitive rule is only stamped again;
//! - transitive rules rank below every other rule type (the snapshot's lookup and the store's
//!   query both put them last), so a block rule on the same hash always wins;
//! - each is stamped (seconds since Apple's reference date) when made and, at most once an hour
//!   per hash, when it allows an exec (`resetTimestampForCachedDecision:`); one unused for six
//!   30-day months expires (see [`TransitiveRules::cull`]);
//! - `--clean` syncs keep them; they are counted in preflight (`transitive_rule_count`); the
//!   log says `action=ALLOWLIST` when one is made and `reason=TRANSITIVE` on the execs it
//!   allows.
//!
//! Which writer is a compiler is the platform's business (Linux: `crate::linux::compilers`);
//! this module is handed the SHA-256 of a file a compiler wrote, already hashed by the
//! evaluation that decides it, so no file is read twice.

use crate::control::server::ControlContext;
use crate::eventlog::{EventLog, RecordKind};
use santa_rules as rules;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Santa's spacing of timestamp updates for one transitive rule: at most one write an hour.
const TOUCH_INTERVAL: Duration = Duration::from_secs(3600);
/// Hashes remembered for that spacing; beyond this the memory is cleared (a few extra writes).
const TOUCHED_MAX: usize = 16_384;
/// How often stale transitive rules are looked for (Santa: at most hourly).
pub const CULL_INTERVAL: Duration = Duration::from_secs(3600);

/// What the evaluator calls when it has hashed a file a compiler wrote.
pub trait TransitiveSink: Send + Sync + std::fmt::Debug {
    /// `sha256` is the SHA-256 of an executable `writer_pid` (a compiler) wrote at `path`.
    fn compiler_output(&self, sha256: [u8; 32], path: &[u8], writer_pid: i32);
    /// A transitive rule allowed an exec of a file with this SHA-256.
    fn used(&self, sha256: [u8; 32]);
    /// A compiler's output that no evaluation will hash: hashed off the exec path, its rule
    /// made, its cached decision dropped. False if the queue for that is full.
    fn compiler_output_unevaluated(
        &self,
        file: std::fs::File,
        key: santa_hotpath::FileKey,
        path: &[u8],
        writer_pid: i32,
        pending: Box<dyn std::any::Any + Send>,
    ) -> bool;
}

/// The slot the evaluator holds before santad's control context (and so the rules database)
/// exists; empty, compiler outputs get no rules.
pub type SinkSlot = Arc<OnceLock<Arc<dyn TransitiveSink>>>;

/// Counters, exported as `transitive.*`.
#[derive(Debug, Default, serde::Serialize)]
pub struct TransitiveCounters {
    /// Transitive rules added.
    pub rules_added: AtomicU64,
    /// Compiler outputs that already had a rule of another kind (left alone).
    pub outputs_with_rules: AtomicU64,
    /// Compiler outputs whose transitive rule already existed (stamped again).
    pub outputs_known: AtomicU64,
    /// Compiler outputs seen while transitive rules were off.
    pub outputs_while_off: AtomicU64,
    /// Rules that could not be stored (database errors, logged).
    pub store_errors: AtomicU64,
    /// Timestamp updates of transitive rules that allowed an exec.
    pub touches: AtomicU64,
    /// Transitive rules removed because they went unused for six months.
    pub expired: AtomicU64,
}

/// Work waiting for the housekeeping thread (a worker never writes the database).
const WORK_QUEUE: usize = 1024;

/// What the housekeeping thread is asked to do.
#[derive(Debug)]
enum Work {
    /// A compiler's output the engine did not evaluate for us (its decision was cached, or an
    /// exec of it was being evaluated, or the prefetch lane was full): hash it here, make its
    /// rule, and drop the file's cached decision.
    Hash {
        file: std::fs::File,
        key: santa_hotpath::FileKey,
        path: Vec<u8>,
        pid: i32,
        /// Held until the rule is made: the platform's mark that it is being made.
        pending: Box<dyn std::any::Any + Send>,
    },
    /// Renew the timestamp of the transitive rule for this hash.
    Touch([u8; 32]),
    /// Write the transitive rules made since the last write.
    Write,
}

/// The daemon's transitive rules: made in the rules database through the control context.
pub struct TransitiveRules {
    /// Weak: the platform's state holds this, and the control context holds the platform's.
    ctx: std::sync::Weak<ControlContext>,
    log: Arc<EventLog>,
    touched: Mutex<HashMap<[u8; 32], Instant>>,
    work: std::sync::mpsc::SyncSender<Work>,
    pending: Mutex<Option<std::sync::mpsc::Receiver<Work>>>,
    limits: santa_signing::HashLimits,
    /// Counters.
    pub counters: TransitiveCounters,
}

impl std::fmt::Debug for TransitiveRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitiveRules").finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TransitiveRules {
    /// Transitive rules over santad's rules database.
    pub fn new(ctx: Arc<ControlContext>, log: Arc<EventLog>, hash_bytes_max: u64) -> Arc<Self> {
        let (work, pending) = std::sync::mpsc::sync_channel(WORK_QUEUE);
        Arc::new(Self {
            ctx: Arc::downgrade(&ctx),
            log,
            touched: Mutex::new(HashMap::new()),
            work,
            pending: Mutex::new(Some(pending)),
            limits: crate::identity::hash_limits(hash_bytes_max),
            counters: TransitiveCounters::default(),
        })
    }

    /// Starts the housekeeping thread: timestamp updates of used rules, and the cull at start
    /// and every [`CULL_INTERVAL`]. It ends when `stop` is set (checked every second).
    pub fn spawn_housekeeping(
        self: &Arc<Self>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        std::thread::Builder::new()
            .name("santad-transitive".into())
            .spawn(move || {
                let Some(pending) = pending else { return };
                let mut next_cull = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    if Instant::now() >= next_cull {
                        if let Err(e) = me.cull() {
                            log::error!("transitive rules: culling: {e}");
                        }
                        next_cull = Instant::now() + CULL_INTERVAL;
                    }
                    match pending.recv_timeout(Duration::from_secs(1)) {
                        Ok(Work::Touch(sha)) => me.touch(sha),
                        Ok(Work::Hash {
                            file,
                            key,
                            path,
                            pid,
                            pending,
                        }) => {
                            me.hash_output(&file, key, &path, pid);
                            drop(pending);
                        }
                        // Writes whatever is pending (a batch, if more were made meanwhile).
                        Ok(Work::Write) => me.write_pending(),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => me.write_pending(),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                me.write_pending();
            })
    }

    fn hash_output(
        &self,
        file: &std::fs::File,
        key: santa_hotpath::FileKey,
        path: &[u8],
        pid: i32,
    ) {
        let mut scratch = Vec::new();
        let Ok(id) = santa_signing::identify_file(file, &self.limits, &mut scratch) else {
            return;
        };
        if id.hash.changed || !crate::identity::is_executable_output(file, id.format) {
            return;
        }
        self.compiler_output(*id.hash.sha256.as_bytes(), path, pid);
        self.write_pending();
        if let Some(ctx) = self.ctx() {
            // A decision cached before the rule existed (an exec that raced the close).
            ctx.invalidate(key);
        }
    }

    fn write_pending(&self) {
        let Some(ctx) = self.ctx() else { return };
        if let Err(e) = ctx.with_rules_deferred(|db| db.write_pending()) {
            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            log::error!("transitive rules not stored in the rules database: {e}");
        }
    }

    fn touch(&self, sha256: [u8; 32]) {
        let Some(ctx) = self.ctx() else { return };
        let sha = rules::Sha256(sha256);
        let now = rules::store::now_apple_reference_secs();
        match ctx.with_rules(|db| db.store().and_then(|s| s.touch_transitive_rule(&sha, now))) {
            Ok(_) => {
                self.counters.touches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => log::warn!(
                "transitive rule {}: timestamp not updated: {e}",
                hex(&sha256)
            ),
        }
    }

    fn ctx(&self) -> Option<Arc<ControlContext>> {
        self.ctx.upgrade()
    }

    fn enabled(&self, ctx: &ControlContext) -> bool {
        ctx.policy().policy().config().enable_transitive_rules
    }

    /// Deletes transitive rules unused for six 30-day months (Santa's expiry), then publishes
    /// the snapshot without them. Santa only culls once its table holds 500,000 rules; santad
    /// culls at any size, so that an expired rule stops allowing on every host, not only on
    /// large ones. Run at start, on SIGHUP and hourly.
    pub fn cull(&self) -> Result<usize, rules::StoreError> {
        let Some(ctx) = self.ctx() else { return Ok(0) };
        let now = rules::store::now_apple_reference_secs();
        let removed = ctx.with_rules(|db| -> Result<usize, rules::StoreError> {
            let store = db.store()?;
            let removed = store.cull_transitive_rules_any_size(now)?;
            if removed > 0 {
                let (snapshot, _) = store.build_snapshot()?;
                ctx.policy().publish_snapshot(snapshot);
            }
            Ok(removed)
        })?;
        if removed > 0 {
            self.counters
                .expired
                .fetch_add(removed as u64, Ordering::Relaxed);
            // An expired allow must not go on deciding from a cache.
            if let Err(e) = ctx.flush_engine(santa_hotpath::FlushReason::Rules) {
                log::error!("transitive rules: flushing caches after expiry: {e}");
            }
            log::info!("transitive rules: {removed} unused for six months removed");
        }
        Ok(removed)
    }

    fn log_allowlist(&self, sha256: [u8; 32], path: &[u8], pid: i32) {
        let Some(mut rec) = self.log.acquire() else {
            return;
        };
        rec.kind = RecordKind::Allowlist;
        rec.time = SystemTime::now();
        rec.pid = pid;
        rec.path.set(path);
        rec.sha256 = Some(sha256);
        rec.commit();
    }
}

impl TransitiveSink for TransitiveRules {
    fn compiler_output(&self, sha256: [u8; 32], path: &[u8], writer_pid: i32) {
        let Some(ctx) = self.ctx() else { return };
        if !self.enabled(&ctx) {
            self.counters
                .outputs_while_off
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sha = rules::Sha256(sha256);
        let id = rules::RuleIdentifier::Binary(sha);
        if ctx.policy().policy().static_rule(&id).is_some() {
            self.counters
                .outputs_with_rules
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let policy = ctx.policy();
        let outcome = ctx.with_rules_deferred(|db| -> Result<Option<bool>, String> {
            // Under the rules lock the published snapshot is the rules' latest state: the
            // database's plus what is pending for it.
            let snapshot = policy.snapshot();
            let ids = rules::RuleIdentifiers {
                binary: Some(sha),
                ..Default::default()
            };
            match snapshot.lookup(&ids).map(|m| m.state()) {
                Some(rules::RuleState::AllowTransitive) => return Ok(Some(false)),
                Some(_) => return Ok(None),
                None => {}
            }
            let mut rule = rules::Rule::new(id.clone(), rules::RuleState::AllowTransitive);
            rule.timestamp = rules::store::now_apple_reference_secs();
            let change = rules::RuleChange::Upsert(rule);
            let generation = db.defer(change.clone()).map_err(|e| e.to_string())?;
            let next = snapshot
                .with_changes(generation, std::slice::from_ref(&change))
                .map_err(|e| e.to_string())?;
            // Published now, written by the housekeeping thread (woken below) within a commit's
            // time, or by whoever takes the rules database next. No cache flush: no cached
            // decision is about this file's new bytes yet (its close invalidated it), and a
            // cached deny of another file with the same bytes lasts only the deny TTL.
            policy.publish_snapshot(next);
            Ok(Some(true))
        });
        match outcome {
            Ok(Some(true)) => {
                self.counters.rules_added.fetch_add(1, Ordering::Relaxed);
                // Stamped just now: its first uses need no timestamp update.
                self.touched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(sha256, Instant::now());
                let _ = self.work.try_send(Work::Write);
                log::info!(
                    "transitive rule added for {} (written by compiler pid {writer_pid}: {})",
                    hex(&sha256),
                    String::from_utf8_lossy(path)
                );
                self.log_allowlist(sha256, path, writer_pid);
            }
            Ok(Some(false)) => {
                self.counters.outputs_known.fetch_add(1, Ordering::Relaxed);
                // Santa re-adds it to renew its timestamp.
                self.used(sha256);
            }
            Ok(None) => {
                self.counters
                    .outputs_with_rules
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "transitive rule for {} (written by compiler pid {writer_pid}) not stored: {e}",
                    hex(&sha256)
                );
            }
        }
    }

    fn compiler_output_unevaluated(
        &self,
        file: std::fs::File,
        key: santa_hotpath::FileKey,
        path: &[u8],
        writer_pid: i32,
        pending: Box<dyn std::any::Any + Send>,
    ) -> bool {
        self.work
            .try_send(Work::Hash {
                file,
                key,
                path: path.to_vec(),
                pid: writer_pid,
                pending,
            })
            .is_ok()
    }

    fn used(&self, sha256: [u8; 32]) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            if touched
                .get(&sha256)
                .is_some_and(|t| t.elapsed() < TOUCH_INTERVAL)
            {
                return;
            }
            if touched.len() >= TOUCHED_MAX {
                touched.clear();
            }
            touched.insert(sha256, Instant::now());
        }
        // A full queue loses one update; the next use within the hour is skipped too, and the
        // rule is six months from expiring.
        let _ = self.work.try_send(Work::Touch(sha256));
    }
}
