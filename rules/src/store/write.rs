//! Writes: [`RuleStore::apply`] (cleanup, then every change, in one transaction, with Santa's
//! cache-flush rule computed inside it), and the transitive rules' timestamps and culling.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Transaction, TransactionBehavior, params};

use super::RuleStore;
use super::error::{StoreError, sql_err};
use crate::model::{RuleChange, RuleState, RuleType};

/// Seconds between the Unix epoch and Apple's reference date (2001-01-01), in which Santa keeps
/// transitive rule timestamps.
pub const APPLE_REFERENCE_DATE_UNIX_SECS: i64 = 978_307_200;

/// Santa culls stale transitive rules only once the table holds this many rules.
pub const TRANSITIVE_CULL_THRESHOLD_RULES: i64 = 500_000;

/// Santa's age after which an unused transitive rule is stale: six 30-day months.
pub const TRANSITIVE_RULE_EXPIRY_SECS: i64 = 6 * 30 * 24 * 3600;

/// Santa's non-allow count above which it flushes without looking rules up.
const FLUSH_NON_ALLOW_RULES_MAX: usize = 1000;

/// Which existing rules to delete before applying changes (`santactl rule --clean`/`--clean-all`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Keep existing rules.
    None,
    /// Delete every rule except transitive ones (Santa's `--clean`).
    NonTransitive,
    /// Delete every rule (Santa's `--clean-all`).
    All,
}

/// What a successful [`RuleStore::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Cached decisions may now be wrong: flush the decision caches (user space and kernel).
    pub flush_cache: bool,
    /// Rules inserted or replaced.
    pub upserted: usize,
    /// Rules deleted by removals (not counting cleanup).
    pub removed: usize,
}

/// Seconds since Apple's reference date, as Santa stamps transitive rules.
pub fn now_apple_reference_secs() -> i64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    unix - APPLE_REFERENCE_DATE_UNIX_SECS
}

impl RuleStore {
    /// Applies changes in one transaction, after an optional cleanup, and says whether decision
    /// caches must be flushed (computed inside the same transaction, before the writes, against
    /// the rules they replace). Either every change is stored or none is.
    pub fn apply(
        &mut self,
        changes: &[RuleChange],
        cleanup: Cleanup,
    ) -> Result<ApplyOutcome, StoreError> {
        if changes.is_empty() && cleanup == Cleanup::None {
            return Err(StoreError::NothingToApply);
        }
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(&location, "beginning a transaction"))?;
        let flush_cache = cleanup != Cleanup::None
            || changes_require_flush(&tx, changes)
                .map_err(sql_err(&location, "checking whether caches need a flush"))?;
        match cleanup {
            Cleanup::None => {}
            Cleanup::NonTransitive => tx
                .execute(
                    "DELETE FROM execution_rules WHERE state != ?1",
                    [RuleState::AllowTransitive.db_value()],
                )
                .map(drop)
                .map_err(sql_err(&location, "deleting non-transitive rules"))?,
            Cleanup::All => tx
                .execute_batch(
                    "DELETE FROM execution_rules; DELETE FROM file_access_rules;
                     DELETE FROM network_flow_rules; DELETE FROM signal_rules;",
                )
                .map_err(sql_err(&location, "deleting all rules"))?,
        }
        let (mut upserted, mut removed) = (0, 0);
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO execution_rules (identifier, state, type, custommsg, \
                     customurl, event_detail_button_text, timestamp, comment, cel_expr, \
                     seatbelt_policy, rule_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql_err(&location, "preparing the rule insert"))?;
            let mut delete = tx
                .prepare_cached("DELETE FROM execution_rules WHERE identifier = ?1 AND type = ?2")
                .map_err(sql_err(&location, "preparing the rule delete"))?;
            let now = now_apple_reference_secs();
            for change in changes {
                match change {
                    RuleChange::Upsert(r) => {
                        let timestamp = if r.state == RuleState::AllowTransitive && r.timestamp == 0
                        {
                            now
                        } else {
                            r.timestamp
                        };
                        insert
                            .execute(params![
                                r.identifier.to_string(),
                                r.state.db_value(),
                                r.rule_type().db_value(),
                                r.custom_msg,
                                r.custom_url,
                                r.event_detail_button_text,
                                timestamp,
                                r.comment,
                                r.cel_expr,
                                r.seatbelt_policy,
                                r.rule_id,
                            ])
                            .map_err(sql_err(&location, "inserting a rule"))?;
                        upserted += 1;
                    }
                    RuleChange::Remove(id) => {
                        removed += delete
                            .execute(params![id.to_string(), id.rule_type().db_value()])
                            .map_err(sql_err(&location, "deleting a rule"))?;
                    }
                }
            }
        }
        tx.commit()
            .map_err(sql_err(&location, "committing rule changes"))?;
        self.generation += 1;
        Ok(ApplyOutcome {
            flush_cache,
            upserted,
            removed,
        })
    }

    /// Records that a transitive rule just allowed an execution (Santa's
    /// `resetTimestampForExecutionRule:`), so culling keeps rules that are still used. Returns
    /// whether such a rule exists. Does not change decisions, so it does not bump the generation.
    pub fn touch_transitive_rule(
        &mut self,
        sha256: &crate::model::Sha256,
        now_apple_secs: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE execution_rules SET timestamp = ?1 \
                 WHERE identifier = ?2 AND type = ?3 AND state = ?4",
                params![
                    now_apple_secs,
                    sha256.to_string(),
                    RuleType::Binary.db_value(),
                    RuleState::AllowTransitive.db_value()
                ],
            )
            .map_err(sql_err(
                &self.location,
                "updating a transitive rule's timestamp",
            ))?;
        Ok(n > 0)
    }

    /// Santa's housekeeping: once the table holds [`TRANSITIVE_CULL_THRESHOLD_RULES`] rules,
    /// delete transitive rules unused for [`TRANSITIVE_RULE_EXPIRY_SECS`]. Returns how many went.
    /// Deleting allows never needs a cache flush beyond the daemon's usual epoch bump.
    pub fn cull_transitive_rules(&mut self, now_apple_secs: i64) -> Result<usize, StoreError> {
        let loc = self.location.clone();
        let total: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM execution_rules", [], |r| r.get(0))
            .map_err(sql_err(&loc, "counting rules"))?;
        if total < TRANSITIVE_CULL_THRESHOLD_RULES {
            return Ok(0);
        }
        self.cull_transitive_rules_any_size(now_apple_secs)
    }

    /// Deletes transitive rules unused for [`TRANSITIVE_RULE_EXPIRY_SECS`], whatever the size
    /// of the table (santad's expiry; Santa waits for [`TRANSITIVE_CULL_THRESHOLD_RULES`]).
    pub fn cull_transitive_rules_any_size(
        &mut self,
        now_apple_secs: i64,
    ) -> Result<usize, StoreError> {
        let loc = self.location.clone();
        let n = self
            .conn
            .execute(
                "DELETE FROM execution_rules WHERE state = ?1 AND timestamp < ?2",
                params![
                    RuleState::AllowTransitive.db_value(),
                    now_apple_secs - TRANSITIVE_RULE_EXPIRY_SECS
                ],
            )
            .map_err(sql_err(&loc, "culling transitive rules"))?;
        if n > 0 {
            self.generation += 1;
        }
        Ok(n)
    }
}

/// Santa's rule for when added rules invalidate cached decisions
/// (`SNTRuleTable addedRulesShouldFlushDecisionCache:`):
///
/// - any removal flushes (cached decisions of other precedence may depend on the removed rule);
/// - 1000 or more non-allow rules flush without further checks;
/// - a non-allow rule (block, silent block, compiler, CEL, ...) flushes unless the same rule
///   (identifier, type, state, and CEL expression) is already stored;
/// - an allow flushes if it replaces an allow-compiler rule (CDHash, Binary, Signing ID) for the
///   same identifier, so the process stops being treated as a compiler;
/// - plain new allows do not flush: denies are cached only briefly, so a new allow takes effect
///   when they expire.
fn changes_require_flush(tx: &Transaction<'_>, changes: &[RuleChange]) -> rusqlite::Result<bool> {
    let mut non_allow = 0usize;
    for c in changes {
        match c {
            RuleChange::Remove(_) => return Ok(true),
            RuleChange::Upsert(r) if !r.state.is_plain_allow() => {
                non_allow += 1;
                if non_allow >= FLUSH_NON_ALLOW_RULES_MAX {
                    return Ok(true);
                }
            }
            RuleChange::Upsert(_) => {}
        }
    }
    let mut same = tx.prepare_cached(
        "SELECT COUNT(*) FROM execution_rules WHERE identifier = ?1 AND type = ?2 AND state = ?3 \
         AND (cel_expr IS NULL OR cel_expr = ?4) LIMIT 1",
    )?;
    let mut compiler = tx.prepare_cached(
        "SELECT COUNT(*) FROM execution_rules WHERE identifier = ?1 AND type IN (?2, ?3, ?4) \
         AND state = ?5 LIMIT 1",
    )?;
    for c in changes {
        let RuleChange::Upsert(r) = c else { continue };
        let id = r.identifier.to_string();
        if !r.state.is_plain_allow() {
            let n: i64 = same.query_row(
                params![id, r.rule_type().db_value(), r.state.db_value(), r.cel_expr],
                |row| row.get(0),
            )?;
            if n == 0 {
                return Ok(true);
            }
        } else if !matches!(r.rule_type(), RuleType::Certificate | RuleType::TeamId) {
            let n: i64 = compiler.query_row(
                params![
                    id,
                    RuleType::CdHash.db_value(),
                    RuleType::Binary.db_value(),
                    RuleType::SigningId.db_value(),
                    RuleState::AllowCompiler.db_value()
                ],
                |row| row.get(0),
            )?;
            if n > 0 {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
