//! The deadline thread: sleeps until the earliest pending deadline on the engine's clock and
//! answers the default for every event still pending then.

use super::answer::{Answer, AnsweredBy, DefaultReason};
use super::shared::{Parts, Shared};
use super::traits::Responder;
use crate::clock::Clock;
use crate::counters::bump;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest the deadline thread sleeps with nothing pending: a safety net, like a parked worker's
/// `PARK_MAX`.
const DEADLINE_SLEEP_MAX: Duration = Duration::from_secs(1);
/// `next_wake` value while the deadline thread scans: submitters then always wake it.
pub(super) const SCANNING: u64 = 0;

impl<K: Parts> Shared<K> {
    pub(super) fn expire_due(&self) -> u64 {
        let counters = self.counters.core(self.deadline_core());
        let now = self.clock.now_ns();
        self.slots.expire_due(now, |event| {
            bump(&counters.deadline_defaults);
            self.responder.respond(
                AnsweredBy::Deadline,
                &event.payload,
                Answer::Default(DefaultReason::Deadline),
            );
        })
    }

    pub(super) fn run_deadline(&self) {
        while !self.deadline_stop.load(Ordering::Acquire) {
            self.next_wake.store(SCANNING, Ordering::SeqCst);
            let next = self.expire_due().max(SCANNING + 1);
            self.next_wake.store(next, Ordering::SeqCst);
            // Linux: a futex wait on CLOCK_MONOTONIC (std's park_timeout); macOS: park, then
            // mach_wait_until for the last millisecond. Either way an earlier deadline unparks it.
            self.clock.park_until_ns(next, DEADLINE_SLEEP_MAX);
        }
    }
}
