//! A decision in the words the decision log and the block message use, shared by every
//! platform's responder.

use crate::blockmsg::BlockReason;
use crate::eventlog::{self, Record};
use crate::identity::Verdict;
use santa_hotpath::DefaultReason;
use santa_rules as rules;
use std::time::SystemTime;

/// The block message's reason for a rules reason.
pub fn block_reason(reason: rules::Reason) -> BlockReason {
    match reason {
        rules::Reason::Binary | rules::Reason::Transitive => BlockReason::Binary,
        rules::Reason::Cert => BlockReason::Certificate,
        rules::Reason::TeamId => BlockReason::TeamId,
        rules::Reason::SigningId => BlockReason::SigningId,
        rules::Reason::CdHash => BlockReason::CdHash,
        rules::Reason::Scope => BlockReason::Scope,
        rules::Reason::Unknown | rules::Reason::Platform | rules::Reason::Failsafe => {
            BlockReason::Unknown
        }
    }
}

/// The log's `reason=` for a rules reason.
pub fn log_reason(reason: rules::Reason) -> eventlog::Reason {
    match reason {
        rules::Reason::Binary => eventlog::Reason::Binary,
        rules::Reason::Cert => eventlog::Reason::Cert,
        rules::Reason::TeamId => eventlog::Reason::TeamId,
        rules::Reason::SigningId => eventlog::Reason::SigningId,
        rules::Reason::CdHash => eventlog::Reason::CdHash,
        rules::Reason::Scope => eventlog::Reason::Scope,
        rules::Reason::Unknown => eventlog::Reason::Unknown,
        rules::Reason::Transitive => eventlog::Reason::Transitive,
        rules::Reason::Platform => eventlog::Reason::Platform,
        rules::Reason::Failsafe => eventlog::Reason::Failsafe,
    }
}

/// Fills the decision half of an EXEC record: action, time, decision, reason, mode, explain
/// and the file's identities — or, for a default answer, why it was one.
pub fn fill_decision(
    rec: &mut Record,
    allow: bool,
    verdict: Option<&Verdict>,
    default: Option<DefaultReason>,
    policy: &rules::PolicyEngine,
) {
    rec.action = eventlog::Action::Exec;
    rec.time = SystemTime::now();
    rec.decision = if allow {
        eventlog::Decision::Allow
    } else {
        eventlog::Decision::Deny
    };
    match verdict {
        Some(v) => {
            rec.reason = log_reason(v.decision.reason);
            rec.mode = v.decision.mode;
            if let Some(explain) = v.decision.explain {
                rec.explain.set(explain.as_bytes());
            }
            rec.sha256 = v.sha256;
            rec.cert_sha256 = v.cert_sha256;
            if let Some(cn) = &v.cert_cn {
                rec.cert_cn.set(cn.as_bytes());
            }
            if let Some(t) = &v.team_id {
                rec.team_id.set(t.as_bytes());
            }
            if let Some(s) = &v.signing_id {
                rec.signing_id.set(s.as_bytes());
            }
            rec.cdhash = v.cdhash;
        }
        None => {
            rec.reason = eventlog::Reason::Unknown;
            rec.mode = policy.policy().config().mode;
            rec.explain.set(b"default answer: ");
            rec.explain
                .push(default.map_or("unknown", DefaultReason::name).as_bytes());
        }
    }
}
