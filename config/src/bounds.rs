//! Every bound on a config value, each with the reason for its number, and the defaults that
//! sit inside them. [`crate::validate`] applies the bounds; [`crate::Config`]'s `Default` uses the
//! defaults.

/// A config file larger than this is refused before parsing: a real one is a few hundred bytes,
/// and the limit keeps a wrong path (a log, a binary) from being read whole into memory.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// `DeadlineMs` bounds. Below 10 ms a first exec of any real binary cannot be hashed in time and
/// every first exec would get the default answer; above 60 s a held exec looks like a hung system
/// to its user (Santa itself answers well before the macOS ES deadline of about a minute).
pub const DEADLINE_MS_MIN: u64 = 10;
/// See [`DEADLINE_MS_MIN`].
pub const DEADLINE_MS_MAX: u64 = 60_000;
/// Default deadline: long enough to hash a few hundred MB at the measured ~1.8 GB/s.
pub const DEADLINE_MS_DEFAULT: u64 = 5_000;

/// `MaxHashBytes` bounds. Smaller than 1 MiB would leave ordinary binaries unhashable; above 16 GiB
/// hashing cannot finish inside [`DEADLINE_MS_MAX`] even at SHA-NI speed.
pub const MAX_HASH_BYTES_MIN: u64 = 1 << 20;
/// See [`MAX_HASH_BYTES_MIN`].
pub const MAX_HASH_BYTES_MAX: u64 = 16 << 30;
/// Default: 1 GiB, about 0.6 s at 1.8 GB/s — far inside the default deadline.
pub const MAX_HASH_BYTES_DEFAULT: u64 = 1 << 30;

/// `WorkerCount` upper bound (0 means one per online core): per-core queues are arrays sized at
/// start, and more workers than this is a typo, not a machine.
pub const WORKER_COUNT_MAX: u64 = 1024;

/// `CacheCapacity` bounds (entries). Under 1,024 the cache thrashes on an ordinary desktop's
/// working set; 16 M entries at ~100 bytes each is 1.6 GB, the most a daemon should ever hold.
pub const CACHE_CAPACITY_MIN: u64 = 1_024;
/// See [`CACHE_CAPACITY_MIN`].
pub const CACHE_CAPACITY_MAX: u64 = 16 << 20;
/// Default: 16 Ki entries, ~100 B each when empty (the cache is preallocated) plus ~300 B of
/// verdict per file cached. A host rarely runs more distinct executables; past it, the least
/// recently executed are evicted (and the kernel's own allow cache still answers them). fapolicyd
/// defaults to 8,191 objects.
pub const CACHE_CAPACITY_DEFAULT: u64 = 16 << 10;

/// `DenyCacheTtlMs` upper bound: a deny is cached only briefly so that a new allow rule takes
/// effect without a flush; a minute is the longest a user should wait for that. 0 disables.
pub const DENY_CACHE_TTL_MS_MAX: u64 = 60_000;
/// Default deny lifetime, as in the design (1500 ms).
pub const DENY_CACHE_TTL_MS_DEFAULT: u64 = 1_500;

/// `InFlightSlots` bounds. Each slot holds an open event fd, so the upper bound stays well inside
/// the fd limit santad raises itself to; below 16 a short burst of execs overflows at once.
pub const IN_FLIGHT_SLOTS_MIN: u64 = 16;
/// See [`IN_FLIGHT_SLOTS_MIN`].
pub const IN_FLIGHT_SLOTS_MAX: u64 = 65_536;
/// Default: 4,096 held execs, far above any measured exec storm's concurrency.
pub const IN_FLIGHT_SLOTS_DEFAULT: u64 = 4_096;

/// `QueueDepth` (per core) bounds; it may not exceed `InFlightSlots` either, since every queued
/// item is a slot.
pub const QUEUE_DEPTH_MIN: u64 = 16;
/// See [`QUEUE_DEPTH_MIN`].
pub const QUEUE_DEPTH_MAX: u64 = 65_536;
/// Default per-core queue depth.
pub const QUEUE_DEPTH_DEFAULT: u64 = 1_024;

/// `EventLogRingSize` bounds (records). Each record is a preallocated fixed-size buffer of about
/// 11 KiB (path, arguments, bundle fields: see `eventlog`), so 16,384 records is ~180 MB, the
/// most worth holding for a logger that fell behind; below 64 a single burst drops log lines.
pub const EVENT_LOG_RING_MIN: u64 = 64;
/// See [`EVENT_LOG_RING_MIN`].
pub const EVENT_LOG_RING_MAX: u64 = 16_384;
/// Default ring: 256 records of ~10 KB (~2.6 MB, preallocated). The logger thread drains it as
/// lines come; 256 absorb a 25 ms stall of the logger at 10,000 execs/s. A full ring drops and
/// counts, it never blocks a worker.
pub const EVENT_LOG_RING_DEFAULT: u64 = 256;

/// Longest string value accepted (messages, URLs, regexes): a block message is a paragraph; the
/// limit keeps a stray file from becoming a terminal message.
pub const STRING_BYTES_MAX: usize = 4_096;
/// At most this many `WatchPaths`: each is a kernel mark; a real host has a handful of mounts.
pub const WATCH_PATHS_MAX: usize = 64;
/// Unix socket paths must fit `sockaddr_un.sun_path` (108 bytes with its NUL).
pub const SOCKET_PATH_BYTES_MAX: usize = 107;

/// At most this many entries in each `LockdownScope` list (the backstop's maps hold as many).
pub const SCOPE_ENTRIES_MAX: usize = 256;
/// `StaticRules` entries (the config file's own size bound, 1 MiB, holds about this many).
pub const STATIC_RULES_MAX: usize = 10_000;
/// At most this many `LockdownScope.Cgroups` (each is one check per exec in the backstop).
pub const SCOPE_CGROUPS_MAX: usize = 8;

/// `FullSyncInterval` bounds, seconds: Santa's minimum (a server's shorter interval is raised to
/// it too), and a week, past which a fleet has stopped steering the host.
pub const FULL_SYNC_INTERVAL_SECS_MIN: u64 = 60;
/// See [`FULL_SYNC_INTERVAL_SECS_MIN`].
pub const FULL_SYNC_INTERVAL_SECS_MAX: u64 = 7 * 24 * 3600;
/// Santa's default full sync interval: ten minutes.
pub const FULL_SYNC_INTERVAL_SECS_DEFAULT: u64 = 600;

/// `EventSpoolMaxEvents` bounds. Each spooled event is about 1 KiB on disk; a million is a GiB,
/// the most a host should keep for a server that stopped answering.
pub const EVENT_SPOOL_MAX_EVENTS_MIN: u64 = 100;
/// See [`EVENT_SPOOL_MAX_EVENTS_MIN`].
pub const EVENT_SPOOL_MAX_EVENTS_MAX: u64 = 1_000_000;
/// Default: 10,000 events (~10 MiB), days of blocks on a busy host.
pub const EVENT_SPOOL_MAX_EVENTS_DEFAULT: u64 = 10_000;

/// At most this many `SyncExtraHeaders`.
pub const SYNC_EXTRA_HEADERS_MAX: usize = 32;

/// `SyncRequestTries` bounds: at least one try; ten tries with doubling backoff already wait
/// over half an hour.
pub const SYNC_REQUEST_TRIES_MIN: u64 = 1;
/// See [`SYNC_REQUEST_TRIES_MIN`].
pub const SYNC_REQUEST_TRIES_MAX: u64 = 10;
/// Santa's five tries.
pub const SYNC_REQUEST_TRIES_DEFAULT: u64 = 5;

/// `MetricExportInterval` bounds, seconds: at most once a second (an export is a snapshot of
/// counters, a few KiB; more often tells a collector nothing new), at least once a day.
pub const METRIC_EXPORT_INTERVAL_SECS_MIN: u64 = 1;
/// See [`METRIC_EXPORT_INTERVAL_SECS_MIN`].
pub const METRIC_EXPORT_INTERVAL_SECS_MAX: u64 = 24 * 3600;
/// Santa's default export interval (`SNTConfigurator metricExportInterval`): 30 s.
pub const METRIC_EXPORT_INTERVAL_SECS_DEFAULT: u64 = 30;

/// `MetricExportTimeout` bounds, seconds: a POST of a few KiB needs at least a second over a
/// slow link, and one that takes five minutes has failed.
pub const METRIC_EXPORT_TIMEOUT_SECS_MIN: u64 = 1;
/// See [`METRIC_EXPORT_TIMEOUT_SECS_MIN`].
pub const METRIC_EXPORT_TIMEOUT_SECS_MAX: u64 = 300;
/// Santa's default export timeout (`SNTConfigurator metricExportTimeout`): 30 s.
pub const METRIC_EXPORT_TIMEOUT_SECS_DEFAULT: u64 = 30;

/// At most this many `MetricExtraLabels`: root labels identify a host (site, fleet, role); a
/// handful is usual.
pub const METRIC_EXTRA_LABELS_MAX: usize = 32;

/// `PrefetchQueueDepth` bounds: written executables waiting to be decided before their first
/// exec. Each holds an in-flight slot and an fd; a full queue only means a first exec hashes
/// the file itself (or, for a compiler's output, that it gets no transitive rule: logged).
pub const PREFETCH_QUEUE_DEPTH_MIN: u64 = 1;
/// See [`PREFETCH_QUEUE_DEPTH_MIN`].
pub const PREFETCH_QUEUE_DEPTH_MAX: u64 = 4_096;
/// Default: 256, more than a parallel build links at once.
pub const PREFETCH_QUEUE_DEPTH_DEFAULT: u64 = 256;

/// `PrefetchBytesPerSecond` upper bound (0: only compilers' outputs are prefetched): 16 GiB/s is
/// more than SHA-256 runs on all cores of any host.
pub const PREFETCH_BYTES_PER_SECOND_MAX: u64 = 16 << 30;
/// Default: 256 MiB/s, about 14 % of one core's SHA-256 here (1.8 GB/s): a build writing
/// binaries all the time costs at most that much, and a user writing files with exec bits to
/// keep santad busy gets no more.
pub const PREFETCH_BYTES_PER_SECOND_DEFAULT: u64 = 256 << 20;

/// `PrefetchFileBytesMax` upper bound: `MaxHashBytes`'s.
pub const PREFETCH_FILE_BYTES_MAX_MAX: u64 = MAX_HASH_BYTES_MAX;
/// Default: 64 MiB (~35 ms of SHA-256), above nearly every program a build links; a larger file
/// is decided at its exec.
pub const PREFETCH_FILE_BYTES_MAX_DEFAULT: u64 = 64 << 20;
