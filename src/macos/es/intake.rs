//! The ES callback's side: what it shares with the responder (counters, our own recent
//! allows) and the intake that hands each message to the engine without blocking.

use super::{EsExec, EsMessage, Intake, Kind, translate};
use crate::eventlog::RecentAllows;
use santa_hotpath::clock::MachTimebase;
use santa_hotpath::{Event, Submit};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the ES side, for status and tests; serialized as the `es.*` metrics.
#[derive(Debug, Default, serde::Serialize)]
pub struct EsCounters {
    /// AUTH_EXEC messages taken.
    pub auth_execs: AtomicU64,
    /// NOTIFY_EXEC messages taken.
    pub notify_execs: AtomicU64,
    /// NOTIFY_EXEC messages dropped as following our own allow.
    pub notify_execs_deduplicated: AtomicU64,
    /// Cached decisions invalidated by close-modified, unlink and rename.
    pub invalidations: AtomicU64,
    /// AUTH messages of a type santad does not decide, allowed at once.
    pub unknown_auths: AtomicU64,
    /// AUTH messages that arrived before the engine was running (allowed at once, uncached).
    pub early_auths: AtomicU64,
    /// Answers ES refused.
    pub respond_errors: AtomicU64,
    /// `es_clear_cache` failures (throttled or internal).
    pub clear_cache_errors: AtomicU64,
    /// Denied paths not handed to the bundle task because its queue was full.
    pub bundle_drops: AtomicU64,
    /// AUTH messages from another Endpoint Security client, allowed at once
    /// (`IgnoreOtherEndpointSecurityClients`).
    pub other_es_client_auths: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the ES callback shares with the responder.
#[derive(Debug)]
pub struct EsShared {
    /// Counters.
    pub counters: EsCounters,
    /// Our own recent allows (NOTIFY_EXEC deduplication).
    pub recent: RecentAllows,
    /// The Mach timebase of the engine's clock.
    pub timebase: MachTimebase,
    /// Log NOTIFY_EXEC for execs ES's cache allowed (`LogExecNotifications`).
    pub log_notifications: bool,
    /// Leave alone what other Endpoint Security clients do
    /// (`IgnoreOtherEndpointSecurityClients`).
    pub ignore_other_es_clients: bool,
    next_core: AtomicU64,
}

/// What the intake does beyond deciding execs, from the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeOptions {
    /// `LogExecNotifications`: log the execs ES's own cache allowed.
    pub log_notifications: bool,
    /// `IgnoreOtherEndpointSecurityClients`: allow at once (and let ES cache) an exec made by
    /// another Endpoint Security client, and ignore its other events.
    pub ignore_other_es_clients: bool,
}

impl EsShared {
    /// Shared state for an engine whose clock converts ticks with `timebase`.
    pub fn new(timebase: MachTimebase, options: IntakeOptions) -> Arc<Self> {
        Arc::new(Self {
            counters: EsCounters::default(),
            recent: RecentAllows::default(),
            timebase,
            log_notifications: options.log_notifications,
            ignore_other_es_clients: options.ignore_other_es_clients,
            next_core: AtomicU64::new(0),
        })
    }

    /// Takes one message in ES's callback thread: submits, invalidates, or answers at once.
    /// `answer_now(msg, cache)` allows an AUTH message santad does not decide; `cache` says
    /// whether ES may cache that allow.
    ///
    /// The ES callback runs on a thread that is not a worker, so there is no core-local queue
    /// to prefer: messages go round-robin over the workers' queues (the engine wakes idle
    /// siblings to steal when one queue backs up).
    pub fn intake<M: EsMessage>(
        &self,
        engine: &dyn Submit<EsExec<M>>,
        msg: M,
        answer_now: impl FnOnce(&M, bool),
    ) -> Intake {
        let view = msg.view();
        if self.ignore_other_es_clients && view.process.is_es_client {
            // Santa's shouldHandleMessage: an AUTH from another ES client is allowed at once
            // and ES may cache it (cacheable:true there too); anything else it does is not
            // santad's business. The flag comes from the kernel (the process holds the ES
            // entitlement), not from anything the process says.
            if view.is_auth {
                bump(&self.counters.other_es_client_auths);
                answer_now(&msg, true);
            }
            return Intake::OtherEsClient;
        }
        let intake = translate(&view, engine.now_ns(), self.timebase);
        match intake {
            Intake::Decide {
                kind,
                key,
                stamp,
                deadline_ns,
            } => {
                if kind == Kind::Notify {
                    bump(&self.counters.notify_execs);
                    if !self.log_notifications {
                        return Intake::Ignore;
                    }
                    let pid = view.exec().map_or(0, |e| e.target.pid);
                    if self.recent.take(pid, key) {
                        bump(&self.counters.notify_execs_deduplicated);
                        return Intake::Ignore;
                    }
                } else {
                    bump(&self.counters.auth_execs);
                }
                let core = self.next_core.fetch_add(1, Ordering::Relaxed) as usize;
                engine.submit(
                    core,
                    Event {
                        payload: EsExec { msg, kind, key },
                        key,
                        stamp,
                        deadline_ns,
                    },
                );
            }
            Intake::Invalidate(keys) => {
                for key in keys.into_iter().flatten() {
                    bump(&self.counters.invalidations);
                    engine.invalidate(0, key);
                }
            }
            Intake::AllowUnknownAuth => {
                bump(&self.counters.unknown_auths);
                answer_now(&msg, false);
            }
            Intake::OtherEsClient | Intake::Ignore => {}
        }
        intake
    }
}
