//! How long santad may take over an event whose kernel deadline is known (Endpoint Security
//! gives every AUTH message one; on Linux santad sets its own from `DeadlineMs`).
//!
//! Santa's rule: answer at 80 % of the time left, but keep between 1 s and 5 s of headroom
//! before the kernel's deadline, so that a deadline answer always has time to get through and
//! long deadlines are not wasted: 45 s → 40 s, 15 s → 12 s, 3.5 s → 2.5 s. With less than 1 s
//! left there is no budget: answer at once.

/// Share of the time left that may be spent deciding.
pub const BUDGET_SHARE_PERCENT: u64 = 80;
/// Least headroom kept before the kernel's deadline.
pub const HEADROOM_MIN_NS: u64 = 1_000_000_000;
/// Most headroom kept before the kernel's deadline.
pub const HEADROOM_MAX_NS: u64 = 5_000_000_000;

/// The processing budget for an event with `until_deadline_ns` left before the kernel's
/// deadline; 0 means answer now.
pub fn processing_budget_ns(until_deadline_ns: u64) -> u64 {
    let budget = until_deadline_ns / 100 * BUDGET_SHARE_PERCENT
        + until_deadline_ns % 100 * BUDGET_SHARE_PERCENT / 100;
    let headroom = (until_deadline_ns - budget).clamp(HEADROOM_MIN_NS, HEADROOM_MAX_NS);
    until_deadline_ns.saturating_sub(headroom)
}

/// The engine deadline (on the engine's clock) for an event received at `now_ns` whose kernel
/// deadline is `kernel_deadline_ns` on the same clock.
pub fn answer_by_ns(now_ns: u64, kernel_deadline_ns: u64) -> u64 {
    now_ns.saturating_add(processing_budget_ns(
        kernel_deadline_ns.saturating_sub(now_ns),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn santas_table() {
        // The figures Santa's own client test uses.
        for (deadline_ms, budget_ms) in [(45_000, 40_000), (15_000, 12_000), (3_500, 2_500)] {
            assert_eq!(
                processing_budget_ns(deadline_ms * MS),
                budget_ms * MS,
                "deadline {deadline_ms} ms"
            );
        }
    }

    #[test]
    fn headroom_bounds() {
        // 20 % of 25 s is exactly the 5 s maximum; 20 % of 5 s exactly the 1 s minimum.
        assert_eq!(processing_budget_ns(25_000 * MS), 20_000 * MS);
        assert_eq!(processing_budget_ns(5_000 * MS), 4_000 * MS);
        assert_eq!(processing_budget_ns(60_000 * MS), 55_000 * MS);
    }

    #[test]
    fn too_little_time_means_answer_now() {
        assert_eq!(processing_budget_ns(1_000 * MS), 0);
        assert_eq!(processing_budget_ns(750 * MS), 0);
        assert_eq!(processing_budget_ns(0), 0);
    }

    #[test]
    fn answer_by_is_relative_to_now_and_never_overflows() {
        assert_eq!(
            answer_by_ns(1_000, 1_000 + 15_000 * MS),
            1_000 + 12_000 * MS
        );
        assert_eq!(
            answer_by_ns(5_000, 1_000),
            5_000,
            "a deadline already past: answer now"
        );
        assert!(answer_by_ns(u64::MAX - 10, u64::MAX) >= u64::MAX - 10);
        let _ = processing_budget_ns(u64::MAX);
    }
}
