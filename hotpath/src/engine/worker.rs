//! A worker: its loop (pop or steal, else poll its source, else sleep), one event's path through
//! the cache, the per-principal throttle and the evaluator, and the answers to events parked on
//! its evaluation.

use super::answer::{Answer, AnsweredBy, DefaultReason, Origin};
use super::shared::{Decision, ITEM_CHARGED, ITEM_INDEX, ITEM_RESTART, Local, Parts, Shared};
use super::traits::{Evaluator, Source};
use crate::cache::{Lookup, Parked};
use crate::clock::Clock;
use crate::counters::bump;
use crate::throttle::Principal;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{Ordering, fence};

impl<K: Parts> Shared<K> {
    /// Answers the events parked on an evaluation with its outcome, or re-queues them if the
    /// file changed meanwhile. Each parked event's reference is released here.
    pub(super) fn deliver(
        &self,
        worker: usize,
        mut parked: Parked,
        outcome: Result<&Decision<K>, DefaultReason>,
        epoch: u64,
    ) {
        if parked.restart {
            self.requeue_parked(worker, parked, true);
            return;
        }
        if parked.requeue {
            // Decided for the owner's execution only: each parked exec is decided for its own.
            self.requeue_parked(worker, parked, false);
            return;
        }
        if outcome.is_ok() && self.cache.epoch() != epoch {
            // Rules, mode or scopes changed while they waited: a parked exec may have started
            // after the change took effect, so it is decided again, under the new rules.
            self.requeue_parked(worker, parked, false);
            return;
        }
        let by = AnsweredBy::Worker(worker);
        while let Some(index) = self.cache.next_parked(&mut parked) {
            let slot = self.slots.held(index);
            let answer = match outcome {
                // The owner already let the kernel cache it if it could.
                Ok(decision) => Answer::Decided {
                    decision,
                    origin: Origin::Coalesced,
                    cacheable: false,
                    epoch,
                },
                Err(reason) => Answer::Default(reason),
            };
            self.answer(by, slot, answer);
            self.slots.release(slot);
        }
    }

    /// Ends a charged evaluation of `principal`; deferred events that may now run go back on
    /// `worker`'s queue already charged (one whose deadline already passed is dropped here).
    fn release_principal(&self, worker: usize, principal: Option<Principal>) {
        let Some(p) = principal else { return };
        // Answering (the responder's I/O) must not run under the throttle's lock: events that
        // find the queue full are collected and answered after it (allocates only then).
        let mut full: Vec<u32> = Vec::new();
        let mut pushed = false;
        self.throttle.release(p, |index| {
            let slot = self.slots.held(index);
            if self.slots.is_answered(slot) {
                self.slots.release(slot);
                return false;
            }
            let item = index | ITEM_CHARGED | ITEM_RESTART;
            match self.queues[worker].push(item) {
                Ok(()) => {
                    pushed = true;
                    true
                }
                Err(_) => {
                    full.push(index);
                    false
                }
            }
        });
        if pushed {
            self.after_push(worker);
        }
        for index in full {
            let slot = self.slots.held(index);
            self.answer_queue_full(AnsweredBy::Worker(worker), self.counters.core(worker), slot);
        }
    }

    fn process(&self, worker: usize, local: &mut Local<K>, item: u32) {
        let counters = self.counters.core(worker);
        bump(&counters.events);
        let by = AnsweredBy::Worker(worker);
        let slot = self.slots.held(item & ITEM_INDEX);
        let event = self.slots.data(slot);
        if self.source.is_prefetch(&event.payload) {
            // A prefetch handed back from an evaluation it waited on (the file changed, or the
            // decision was for one execution): workers never evaluate prefetches.
            let _ = self.slots.try_answer(slot);
            self.slots.release(slot);
            return;
        }
        let principal = self.source.principal(&event.payload);
        let charged = if item & ITEM_CHARGED != 0 {
            principal
        } else {
            None
        };
        if self.slots.is_answered(slot) {
            // The deadline came while it was deferred or queued: nothing left to decide.
            self.release_principal(worker, charged);
            self.slots.release(slot);
            return;
        }
        let stamp = if item & ITEM_RESTART != 0 {
            self.source.restamp(&event.payload).unwrap_or(event.stamp)
        } else {
            event.stamp
        };
        // Read before the lookup: a hit's entry is at least this epoch, so a flush between the
        // lookup and a kernel-cache placement always shows as a moved epoch (never the reverse).
        let epoch_before = self.cache.epoch();
        match self
            .cache
            .lookup(event.key, stamp, self.clock.now_ns(), slot.index)
        {
            Lookup::Hit(decision) => {
                bump(&counters.hits);
                self.release_principal(worker, charged);
                self.answer(
                    by,
                    slot,
                    Answer::Decided {
                        decision: &decision,
                        origin: Origin::Cache,
                        cacheable: true,
                        epoch: epoch_before,
                    },
                );
            }
            Lookup::Parked => {
                // The owner of the evaluation answers it and releases its reference.
                bump(&counters.waits);
                self.release_principal(worker, charged);
                return;
            }
            Lookup::Miss(ticket) => {
                if charged.is_none()
                    && let Some(p) = principal
                    && !self.throttle.admit(p, slot.index)
                {
                    // Deferred: our reference waits in the throttle; events parked on our
                    // placeholder meanwhile go round again (and wait behind us).
                    bump(&counters.deferred);
                    let parked = self.cache.abandon(ticket);
                    self.requeue_parked(worker, parked, false);
                    return;
                }
                bump(&counters.misses);
                bump(&counters.evaluations);
                let epoch = ticket.epoch();
                match catch_unwind(AssertUnwindSafe(|| {
                    self.evaluator.evaluate(local, &event.payload)
                })) {
                    Ok(evaluation) => {
                        let parked = self.cache.complete(
                            ticket,
                            &evaluation.decision,
                            evaluation.cacheability,
                            self.clock.now_ns(),
                        );
                        let answer = Answer::Decided {
                            decision: &evaluation.decision,
                            origin: Origin::Evaluated,
                            cacheable: evaluation.cacheability.is_cacheable(),
                            epoch,
                        };
                        self.answer(by, slot, answer);
                        self.deliver(worker, parked, Ok(&evaluation.decision), epoch);
                    }
                    Err(_) => {
                        bump(&counters.evaluator_panics);
                        let parked = self.cache.abandon(ticket);
                        self.answer(by, slot, Answer::Default(DefaultReason::EvaluationFailed));
                        self.deliver(worker, parked, Err(DefaultReason::EvaluationFailed), epoch);
                    }
                }
                // Charged now, by `admit` or before it was resumed.
                self.release_principal(worker, principal);
            }
        }
        self.slots.release(slot);
    }

    pub(super) fn run_worker(&self, worker: usize) {
        let _ = self.worker_threads[worker].set(std::thread::current());
        let mut local = self.evaluator.local(worker);
        let mut spins = 0u32;
        loop {
            if let Some(item) = self.pop(worker) {
                // The evaluator and the responder catch their own panics; this is the net for
                // the rest of the path, so a bug costs one event (answered by the deadline
                // thread), never the worker.
                if catch_unwind(AssertUnwindSafe(|| self.process(worker, &mut local, item)))
                    .is_err()
                {
                    bump(&self.counters.core(worker).worker_panics);
                }
                spins = 0;
                continue;
            }
            if !self.running.load(Ordering::Acquire) {
                break;
            }
            if self.source.poll(worker, self) > 0 {
                continue;
            }
            if spins < self.idle_spins {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            self.sleeping[worker].store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.any_queued() && self.running.load(Ordering::Acquire) {
                self.source.wait(worker);
            }
            self.sleeping[worker].store(false, Ordering::SeqCst);
            spins = 0;
        }
    }
}
