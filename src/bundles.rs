//! `action=BUNDLE` lines: denied files whose bundle is hashed off the workers (both
//! platforms' responders hand them over).

use crate::eventlog::{self, EventLog};
use crossbeam_queue::ArrayQueue;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// Denied paths waiting for the bundle task; beyond this they are dropped and counted.
const BUNDLE_QUEUE_DEPTH: usize = 64;

/// Denied files whose bundle is hashed off the workers, for `action=BUNDLE` lines.
#[derive(Debug)]
pub struct BundleTask {
    queue: Arc<ArrayQueue<PathBuf>>,
    thread: std::thread::Thread,
    enabled: Arc<std::sync::atomic::AtomicBool>,
}

impl BundleTask {
    /// Starts the task's thread; it logs to `log` and stops when `stop` is set.
    pub fn spawn(
        log: Arc<EventLog>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let queue: Arc<ArrayQueue<PathBuf>> = Arc::new(ArrayQueue::new(BUNDLE_QUEUE_DEPTH));
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("santad-bundles".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match q.pop() {
                        Some(path) => log_bundle(&log, &path),
                        None => std::thread::park_timeout(std::time::Duration::from_secs(1)),
                    }
                }
            })?;
        Ok((
            Self {
                queue,
                thread: handle.thread().clone(),
                enabled: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            },
            handle,
        ))
    }

    /// The switch (`EnableBundles`): off, denied files are not handed over. Kept by the wiring,
    /// which sets it on each reload, once the task itself has gone to its responder.
    pub fn switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.enabled.clone()
    }

    /// Hands over a denied file; false when the queue is full (the caller counts the drop). With
    /// bundles off, nothing is handed over (and it is not a drop).
    pub fn submit(&self, path: PathBuf) -> bool {
        if !self.enabled.load(Ordering::Relaxed) {
            return true;
        }
        let ok = self.queue.push(path).is_ok();
        self.thread.unpark();
        ok
    }
}

/// Logs one `action=BUNDLE` line per executable of the bundle holding `path`, if any.
fn log_bundle(log: &EventLog, path: &std::path::Path) {
    let Some(bundle) = santa_signing::bundle::find_ancestor_bundle(path) else {
        return;
    };
    let limits = santa_signing::bundle::BundleLimits::default();
    let Ok(hashed) = santa_signing::bundle::hash_bundle(&bundle.path, &limits, &|_| {}) else {
        return;
    };
    let Some(bundle_hash) = hashed.bundle_hash else {
        return;
    };
    for binary in &hashed.binaries {
        let Some(mut rec) = log.acquire() else { return };
        rec.kind = eventlog::RecordKind::Bundle;
        rec.time = SystemTime::now();
        rec.sha256 = Some(*binary.sha256.as_bytes());
        rec.bundle_hash = Some(*bundle_hash.as_bytes());
        rec.bundle_name
            .set(bundle.name.as_deref().unwrap_or("").as_bytes());
        rec.bundle_id.set(bundle.identifier.as_bytes());
        rec.bundle_path
            .set(bundle.path.as_os_str().as_encoded_bytes());
        rec.path.set(binary.path.as_os_str().as_encoded_bytes());
        rec.commit();
    }
}
