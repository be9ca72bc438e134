//! A decision in the sync protocol's words: Santa's `Decision` enum for an execution event, and
//! which decisions Santa uploads.

use santa_rules::{Action, Reason};
use santa_sync::proto::Decision;

/// The `decision` of an uploaded event, as Santa derives it from its event state
/// (`SNTEventState` → `santa.sync.v1.Decision` in `SNTSyncEventUpload.mm`): the action and the
/// kind of rule (or scope, or the mode) that decided. A compiler allow is a binary allow there
/// too; santad's failsafe (its own binaries) is reported as Santa reports its critical binaries.
pub fn event_decision(action: Option<Action>, reason: Reason) -> Decision {
    match (action, reason) {
        (None, _) => Decision::Unknown,
        (Some(Action::Allow), r) => match r {
            Reason::Binary | Reason::Transitive => Decision::AllowBinary,
            // Santa reports its critical system binaries (its failsafe) as Signing ID allows.
            Reason::Failsafe => Decision::AllowSigningId,
            Reason::Cert => Decision::AllowCertificate,
            Reason::TeamId => Decision::AllowTeamId,
            Reason::SigningId => Decision::AllowSigningId,
            Reason::CdHash => Decision::AllowCdHash,
            Reason::Scope => Decision::AllowScope,
            Reason::Unknown => Decision::AllowUnknown,
            Reason::Platform => Decision::AllowPlatform,
        },
        (Some(Action::Deny), r) => match r {
            Reason::Binary | Reason::Transitive => Decision::BlockBinary,
            Reason::Cert => Decision::BlockCertificate,
            Reason::TeamId => Decision::BlockTeamId,
            Reason::SigningId => Decision::BlockSigningId,
            Reason::CdHash => Decision::BlockCdHash,
            Reason::Scope => Decision::BlockScope,
            Reason::Unknown | Reason::Platform | Reason::Failsafe => Decision::BlockUnknown,
        },
    }
}

/// Whether Santa uploads an execution with this decision: every block; an allow of an unknown
/// file (Monitor mode: Lockdown would have blocked it) unless `DisableUnknownEventUpload`;
/// everything else with `EnableAllEventUpload`, but a transitive allow.
pub fn is_uploaded(action: Option<Action>, reason: Reason, all: bool, unknown: bool) -> bool {
    match action {
        // Santa never uploads a transitive allow, nor an event without a decision
        // (`SNTSyncEventUpload.mm` drops both).
        Some(Action::Allow) if reason == Reason::Transitive => false,
        None => false,
        _ if all => true,
        Some(Action::Deny) => true,
        Some(Action::Allow) => reason == Reason::Unknown && unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn santas_decisions_and_upload_rule() {
        assert_eq!(
            event_decision(Some(Action::Deny), Reason::Unknown),
            Decision::BlockUnknown
        );
        assert_eq!(
            event_decision(Some(Action::Deny), Reason::TeamId),
            Decision::BlockTeamId
        );
        assert_eq!(
            event_decision(Some(Action::Allow), Reason::Unknown),
            Decision::AllowUnknown
        );
        assert_eq!(
            event_decision(Some(Action::Allow), Reason::Transitive),
            Decision::AllowBinary
        );
        assert!(is_uploaded(
            Some(Action::Deny),
            Reason::Binary,
            false,
            false
        ));
        assert!(is_uploaded(
            Some(Action::Allow),
            Reason::Unknown,
            false,
            true
        ));
        assert!(!is_uploaded(
            Some(Action::Allow),
            Reason::Unknown,
            false,
            false
        ));
        assert!(!is_uploaded(
            Some(Action::Allow),
            Reason::Binary,
            false,
            true
        ));
        assert!(is_uploaded(
            Some(Action::Allow),
            Reason::Binary,
            true,
            false
        ));
    }
}
