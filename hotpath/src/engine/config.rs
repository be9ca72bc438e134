//! [`EngineConfig`]: the engine's bounds and knobs, each with why it has its default.

/// Bounds and knobs of the engine. Every limit is here, with why it has its default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads; 0 means one per online core (thread-per-core: more only adds switches).
    pub workers: usize,
    /// Pin worker `w` to core `w % cores`, so a worker's queue, cache lines and the kernel's
    /// wake-ups stay on one CPU (a cross-CPU wake-up costs ~55 µs here against ~6 µs).
    pub pin_workers: bool,
    /// In-flight slots: events held at once. 4096 is well above what the kernel queues for one
    /// listener in practice (each held exec is a blocked process) and costs ~200 KiB.
    pub inflight_max: usize,
    /// Queue depth per worker. A full queue is answered with the default at once, so it must
    /// absorb a burst (1024 execs) without ever making the kernel wait on us.
    pub queue_depth_max: usize,
    /// Decisions kept in the user-space cache (one entry per distinct file).
    pub cache_capacity: usize,
    /// Cache shards; more shards mean less lock contention, each costs one mutex and LRU.
    pub cache_shards: usize,
    /// How long a deny is cached, so a new allow rule takes effect without a flush (Santa: 1.5 s).
    pub deny_ttl_ms: u64,
    /// Spins on the queues before a worker blocks in its source; 0 when the source is the
    /// kernel (the worker is woken by it directly) — spinning only helps cross-thread feeding.
    pub idle_spins: u32,
    /// Start the deadline thread. Tests with a simulated clock turn it off and call
    /// [`Engine::expire_due`](super::Engine::expire_due) themselves.
    pub deadline_thread: bool,
    /// Evaluations one principal (on Linux: the owner of the file) may have running at once;
    /// 0 means one fewer than the workers (at least 1), so one user's slow files always leave a
    /// worker for everyone else's execs. Principals the source does not name (root's files)
    /// are not bounded.
    pub evaluations_per_principal_max: usize,
    /// Bytes one principal may have being hashed at once (a file larger than this still runs,
    /// alone). 256 MiB is ~150 ms of SHA-256 here: enough for any real binary to be evaluated
    /// beside another, not enough to pin two workers with sparse giants.
    pub hash_bytes_per_principal_max: u64,
    /// Depth of the prefetch lane's queue (files evaluated before their first exec, on a
    /// thread of their own); 0: no lane. A full lane drops the prefetch (counted), never an
    /// exec. Each queued file holds an in-flight slot and, on Linux, an fd.
    pub prefetch_queue_depth: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            pin_workers: true,
            inflight_max: 4096,
            queue_depth_max: 1024,
            cache_capacity: 10_000,
            cache_shards: 64,
            deny_ttl_ms: 1_500,
            idle_spins: 0,
            deadline_thread: true,
            evaluations_per_principal_max: 0,
            hash_bytes_per_principal_max: 256 << 20,
            prefetch_queue_depth: 0,
        }
    }
}
