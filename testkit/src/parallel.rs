//! [`count_in_parallel`]: many calls spread over a few threads, as the storm tests and the
//! exec-storm harness make them.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls `f(i)` for every `i` in `0..calls` on `threads` threads, each taking the next index as
/// it goes (so a slow call holds up only its own thread), and returns how many calls returned
/// true. A panic in `f` is propagated once every thread has stopped.
pub fn count_in_parallel(threads: usize, calls: usize, f: impl Fn(usize) -> bool + Sync) -> usize {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut counted = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= calls {
                            return counted;
                        }
                        counted += usize::from(f(i));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_is_called_once() {
        let seen: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let even = count_in_parallel(4, seen.len(), |i| {
            seen[i].fetch_add(1, Ordering::Relaxed);
            i % 2 == 0
        });
        assert_eq!(even, 500);
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
    }
}
