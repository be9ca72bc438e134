//! Translation: what the intake does with one message (decide, invalidate, allow at once,
//! ignore), and each exec's deadline on the engine's clock.

use super::{EventView, Kind, MessageView};
use santa_hotpath::clock::MachTimebase;
use santa_hotpath::{FileKey, FileStamp, budget};

/// Deadline of an exec notification (nobody waits on it): only bounds how long it may sit
/// queued before it is logged with the default.
pub const NOTIFICATION_DEADLINE_NS: u64 = 60_000_000_000;

/// What the intake does with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// An exec to decide: submit it to the engine.
    Decide {
        /// AUTH (answer the kernel) or NOTIFY (log only).
        kind: Kind,
        /// The executable's cache key.
        key: FileKey,
        /// The executable's stamp.
        stamp: FileStamp,
        /// When the engine must have answered, on the engine's clock.
        deadline_ns: u64,
    },
    /// Files whose cached decisions are no longer valid.
    Invalidate([Option<FileKey>; 2]),
    /// An AUTH message santad does not decide: allow it at once, uncached (ES kills a client
    /// that leaves an AUTH message unanswered).
    AllowUnknownAuth,
    /// A message from another Endpoint Security client, left alone
    /// (`IgnoreOtherEndpointSecurityClients`; an AUTH was allowed at once). Only the intake
    /// gives it; [`translate`] never does.
    OtherEsClient,
    /// Nothing to do.
    Ignore,
}

/// Translates one message into what the intake does with it. `now_ns` is the engine clock's
/// now, on the same time line as `mach_absolute_time` scaled by `timebase` (santad's
/// `MonotonicClock` on macOS), so the kernel deadline converts to the engine's clock directly.
///
/// - AUTH_EXEC: decide by Santa's budget, 80 % of the time left keeping 1–5 s of headroom
///   ([`budget::answer_by_ns`]); the key and stamp come from ES's own `stat` of the executable,
///   so the callback makes no system call.
/// - NOTIFY_EXEC: decide (for the log line) within [`NOTIFICATION_DEADLINE_NS`].
/// - NOTIFY_CLOSE of a modified file: its contents changed.
/// - NOTIFY_UNLINK: the inode number may be reused by another file.
/// - NOTIFY_RENAME: path rules (`AllowedPathRegex`, `BlockedPathRegex`) decided for the old
///   path; a replaced destination is gone, like an unlinked file.
pub fn translate(view: &MessageView<'_>, now_ns: u64, timebase: MachTimebase) -> Intake {
    match &view.event {
        EventView::AuthExec(exec) | EventView::NotifyExec(exec) => {
            let file = &exec.target.executable;
            let (kind, deadline_ns) = if matches!(view.event, EventView::AuthExec(_)) {
                let kernel_deadline_ns = timebase.ticks_to_ns(view.deadline_ticks);
                (Kind::Auth, budget::answer_by_ns(now_ns, kernel_deadline_ns))
            } else {
                (
                    Kind::Notify,
                    now_ns.saturating_add(NOTIFICATION_DEADLINE_NS),
                )
            };
            Intake::Decide {
                kind,
                key: file.key(),
                stamp: file.stamp(),
                deadline_ns,
            }
        }
        _ if view.is_auth => Intake::AllowUnknownAuth,
        EventView::NotifyClose {
            modified: true,
            target,
        } => Intake::Invalidate([Some(target.key()), None]),
        EventView::NotifyUnlink { target } => Intake::Invalidate([Some(target.key()), None]),
        EventView::NotifyRename {
            source,
            destination,
        } => Intake::Invalidate([Some(source.key()), destination.map(|d| d.key())]),
        EventView::NotifyClose {
            modified: false, ..
        }
        | EventView::Other(_) => Intake::Ignore,
    }
}
