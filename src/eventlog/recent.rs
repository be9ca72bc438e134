//! Our own recent allows, by `(pid, file)`: the kernel follows each allowed exec with a
//! notification of it (fanotify's `FAN_OPEN_EXEC`, ES's NOTIFY_EXEC), which must not be logged a
//! second time.

use santa_hotpath::FileKey;
use std::sync::atomic::{AtomicU64, Ordering};

/// Remembered allows. A notification follows its permission event (or AUTH answer) within
/// microseconds, so a small table suffices; a collision at worst logs a line twice.
pub const RECENT_ALLOWS: usize = 4_096;

/// Recent allows by `(pid, file)`, to drop the notification that follows each of them.
#[derive(Debug)]
pub struct RecentAllows {
    tags: Box<[AtomicU64]>,
}

impl Default for RecentAllows {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentAllows {
    /// An empty table of [`RECENT_ALLOWS`] entries.
    pub fn new() -> Self {
        Self {
            tags: (0..RECENT_ALLOWS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn tag(pid: i32, key: FileKey) -> u64 {
        let mut h = (pid as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= key.ino.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= key.dev.rotate_left(29);
        h | 1
    }

    fn slot(&self, pid: i32) -> &AtomicU64 {
        &self.tags[pid as u32 as usize % self.tags.len()]
    }

    /// Remembers that we allowed `pid` to exec `key`.
    pub fn record(&self, pid: i32, key: FileKey) {
        self.slot(pid).store(Self::tag(pid, key), Ordering::Release);
    }

    /// True (and forgotten) if we just allowed this exec ourselves.
    pub fn take(&self, pid: i32, key: FileKey) -> bool {
        let tag = Self::tag(pid, key);
        self.slot(pid)
            .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_allows_drop_exactly_the_matching_notification() {
        let r = RecentAllows::new();
        let key = FileKey { dev: 1, ino: 2 };
        r.record(100, key);
        assert!(!r.take(100, FileKey { dev: 1, ino: 3 }), "another file");
        assert!(!r.take(101, key), "another process");
        assert!(r.take(100, key));
        assert!(!r.take(100, key), "taken once");
    }
}
