//! `santactl doctor`: whether this host is protected and why not, one check per concern, each
//! from what santad itself knows (its coverage report, policy, counters, databases and sync
//! state), so the answer is the daemon's own view and not a guess from outside.

use super::*;

/// A default answer within this long counts as recent.
const DEFAULTS_RECENT: Duration = Duration::from_secs(600);
/// The clock may drift (or be corrected) this far from santad's own count of time since it
/// started before the check says so.
const CLOCK_DRIFT_MAX: Duration = Duration::from_secs(120);
/// How long a rules database integrity check stands before doctor runs another.
const RULES_CHECK_TTL: Duration = Duration::from_secs(60);
/// Earlier than this (2024-01-01) the wall clock is certainly wrong: certificates, sync times
/// and log timestamps cannot be trusted.
const CLOCK_FLOOR_UNIX: u64 = 1_704_067_200;

fn check(name: &str, state: CheckState, detail: impl Into<String>) -> DoctorCheck {
    DoctorCheck {
        name: name.to_owned(),
        state,
        detail: detail.into(),
    }
}

impl ControlContext {
    /// Every check, in a fixed order.
    pub(super) fn doctor(&self) -> Result<DoctorReply, ControlError> {
        let status = self.status()?;
        let lockdown = status.daemon.mode == "Lockdown";
        let mut checks = Vec::new();
        coverage_checks(&status, lockdown, &mut checks);
        checks.push(if lockdown {
            check(
                "mode",
                CheckState::Ok,
                "Lockdown: only what a rule allows runs",
            )
        } else {
            check(
                "mode",
                CheckState::Warn,
                "Monitor: unknown binaries run (and are logged); only block rules block",
            )
        });
        checks.push(match (lockdown, status.events.default_decision.as_str()) {
            (true, "allow") => check(
                "fail_closed",
                CheckState::Warn,
                "Lockdown without FailClosed: an exec santad cannot decide in time (deadline, \
                 full queue) is allowed",
            ),
            (true, _) => check(
                "fail_closed",
                CheckState::Ok,
                "FailClosed: an exec santad cannot decide in time is denied",
            ),
            (false, _) => check(
                "fail_closed",
                CheckState::Ok,
                "not in Lockdown: default answers allow",
            ),
        });
        checks.push(self.defaults_check(&status));
        checks.push(self.rules_check(&status));
        checks.push(spool_check(&status));
        checks.push(self.log_check());
        checks.push(sync_check(&status));
        checks.push(self.clock_check());
        Ok(DoctorReply {
            protected: checks.iter().all(|c| c.state != CheckState::Fail),
            checks,
        })
    }

    fn defaults_check(&self, status: &StatusReply) -> DoctorCheck {
        let c = self.engine.counters();
        let total = status.events.defaults_answered;
        match c.last_default_age_ns.map(Duration::from_nanos) {
            Some(age) if age < DEFAULTS_RECENT => {
                let reasons: Vec<String> = status
                    .events
                    .defaults_by_reason
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect();
                check(
                    "defaults",
                    CheckState::Warn,
                    format!(
                        "the last exec answered with the default ({}) was {} s ago; {total} \
                         since start ({}): santad is overloaded or too slow for its DeadlineMs",
                        status.events.default_decision,
                        age.as_secs(),
                        reasons.join(", ")
                    ),
                )
            }
            Some(age) => check(
                "defaults",
                CheckState::Ok,
                format!(
                    "{total} default answers since start, the last {} s ago",
                    age.as_secs()
                ),
            ),
            None => check(
                "defaults",
                CheckState::Ok,
                "no exec answered with the default",
            ),
        }
    }

    /// The rules database: SQLite's quick check, and its rule count against the snapshot in
    /// force (they differ when a change reached one and not the other).
    fn rules_check(&self, status: &StatusReply) -> DoctorCheck {
        // Under the rules lock: concurrent doctors wait for one check instead of each running
        // their own, and the snapshot read is the one the counted rows built.
        let result = self.with_rules(|db| {
            let store = db.store()?;
            let cached = lock(&self.rules_checked)
                .as_ref()
                .filter(|(at, _)| at.elapsed() < RULES_CHECK_TTL)
                .map(|(_, p)| p.clone());
            let problem = match cached {
                Some(p) => p,
                None => {
                    let p = match store.quick_check() {
                        Ok(p) => p,
                        Err(e) => Some(format!("unreadable: {e}")),
                    };
                    *lock(&self.rules_checked) = Some((Instant::now(), p.clone()));
                    p
                }
            };
            let in_force = self.policy.snapshot().stats().rules() as i64;
            Ok::<_, rules::StoreError>((problem, store.counts()?, in_force))
        });
        let (problem, counts, in_force) = match result {
            Ok(r) => r,
            Err(e) => return check("rules_db", CheckState::Fail, format!("unreadable: {e}")),
        };
        if let Some(p) = problem {
            return check("rules_db", CheckState::Fail, format!("damaged: {p}"));
        }
        if counts.total != in_force {
            return check(
                "rules_db",
                CheckState::Fail,
                format!(
                    "{} rules stored but {in_force} in force: santad's rules are not the \
                     database's (send SIGHUP to reload)",
                    counts.total
                ),
            );
        }
        check(
            "rules_db",
            CheckState::Ok,
            format!(
                "{} ({} rules, {} static)",
                status.daemon.rules_db, counts.total, status.daemon.static_rules
            ),
        )
    }

    fn log_check(&self) -> DoctorCheck {
        let errors = self.log.write_errors();
        let config = self.config();
        let target = match &config.event_log_destination {
            LogDestination::File(p) => p.display().to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        if let LogDestination::File(p) = &config.event_log_destination
            && let Err(e) = std::fs::metadata(p)
        {
            return check(
                "log",
                CheckState::Fail,
                format!("{target}: {e} (it is reopened on SIGHUP)"),
            );
        }
        if errors > 0 {
            return check(
                "log",
                CheckState::Fail,
                format!("{target}: {errors} write errors since start"),
            );
        }
        let dropped = self.log.dropped();
        if dropped > 0 {
            return check(
                "log",
                CheckState::Warn,
                format!("{target}: {dropped} records dropped (the log ring was full)"),
            );
        }
        check(
            "log",
            CheckState::Ok,
            format!("{target}: written without errors"),
        )
    }

    fn clock_check(&self) -> DoctorCheck {
        let now = std::time::SystemTime::now();
        let unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if unix < CLOCK_FLOOR_UNIX {
            return check(
                "clock",
                CheckState::Fail,
                format!("the wall clock says {unix} s since 1970, before 2024"),
            );
        }
        let expected = self.started_at + self.started.elapsed();
        let drift = match now.duration_since(expected) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        if drift > CLOCK_DRIFT_MAX {
            return check(
                "clock",
                CheckState::Warn,
                format!(
                    "the wall clock moved {} s against santad's monotonic time since it \
                     started (stepped, or NTP corrected it)",
                    drift.as_secs()
                ),
            );
        }
        check(
            "clock",
            CheckState::Ok,
            "wall clock agrees with monotonic time",
        )
    }
}

/// Coverage and the backstop (Linux; on macOS Endpoint Security sees every exec).
fn coverage_checks(status: &StatusReply, lockdown: bool, checks: &mut Vec<DoctorCheck>) {
    let Some(c) = &status.coverage else {
        checks.push(check(
            "coverage",
            CheckState::Ok,
            "Endpoint Security holds every exec",
        ));
        return;
    };
    let backstop = c.backstop.state == "active";
    let mut gaps: Vec<String> = Vec::new();
    if c.mode == "WatchPaths" {
        // Only the configured paths' mounts are marked; the report lists no other filesystem.
        gaps.push(format!(
            "every filesystem outside WatchPaths ({})",
            status.daemon.watch_paths.join(", ")
        ));
    }
    gaps.extend(c.skipped.iter().filter(|f| f.gap).map(|f| {
        format!(
            "{} ({}, {}: {})",
            f.mount_point,
            f.fs_type,
            f.dev,
            f.reason.as_deref().unwrap_or("skipped")
        )
    }));
    let watched = c.watched.len();
    checks.push(match (gaps.is_empty(), backstop && lockdown) {
        (true, _) => check(
            "coverage",
            CheckState::Ok,
            format!(
                "{} ({watched} filesystems watched; none that can hold executables skipped)",
                c.mode
            ),
        ),
        (false, true) => check(
            "coverage",
            CheckState::Warn,
            format!(
                "{} filesystems not watched, their execs killed by the backstop instead of \
                 held: {}",
                gaps.len(),
                gaps.join("; ")
            ),
        ),
        (false, false) => check(
            "coverage",
            CheckState::Fail,
            format!(
                "{} filesystems that can hold executables are not watched ({}), and no \
                 backstop stops their execs: {}",
                gaps.len(),
                c.mode,
                gaps.join("; ")
            ),
        ),
    });
    checks.push(match (backstop, lockdown) {
        (true, _) => check("backstop", CheckState::Ok, c.backstop.detail.clone()),
        (false, true) => check(
            "backstop",
            CheckState::Fail,
            format!(
                "inactive ({}): in Lockdown, memfd execs, direct loader runs and execs from \
                 unwatched filesystems are not stopped",
                c.backstop.detail
            ),
        ),
        (false, false) => check(
            "backstop",
            CheckState::Warn,
            format!(
                "inactive ({}): execs santad does not hold are not reported",
                c.backstop.detail
            ),
        ),
    });
    if let Some(scope) = &c.lockdown_scope
        && lockdown
    {
        checks.push(check(
            "lockdown_scope",
            CheckState::Warn,
            format!("Lockdown applies only to {scope}; everyone else is in Monitor"),
        ));
    }
}

fn spool_check(status: &StatusReply) -> DoctorCheck {
    match &status.sync {
        None => check("spool_db", CheckState::Ok, "no sync server: no event spool"),
        Some(s) => match &s.spool_error {
            Some(e) => check(
                "spool_db",
                CheckState::Fail,
                format!("the event spool: {e}"),
            ),
            None if s.events_dropped > 0 => check(
                "spool_db",
                CheckState::Warn,
                format!(
                    "{} events pending, {} dropped (the spool was full)",
                    s.events_pending, s.events_dropped
                ),
            ),
            None => check(
                "spool_db",
                CheckState::Ok,
                format!("{} events pending", s.events_pending),
            ),
        },
    }
}

fn sync_check(status: &StatusReply) -> DoctorCheck {
    let Some(s) = &status.sync else {
        return check(
            "sync",
            CheckState::Ok,
            "no sync server configured (SyncBaseURL)",
        );
    };
    if let Some(why) = &s.disabled {
        return check(
            "sync",
            CheckState::Fail,
            format!("{}: disabled: {why}", s.server),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stale = 2 * s.full_sync_interval_secs + 300;
    let error = s
        .last_error
        .as_deref()
        .map_or(String::new(), |e| format!("; last error: {e}"));
    match s.last_successful_sync {
        None => check(
            "sync",
            CheckState::Fail,
            format!("{}: never synced{error}", s.server),
        ),
        Some(t) if now.saturating_sub(t) > stale => check(
            "sync",
            CheckState::Fail,
            format!(
                "{}: last successful sync {} s ago (more than twice FullSyncInterval){error}",
                s.server,
                now.saturating_sub(t)
            ),
        ),
        Some(t) if !error.is_empty() => check(
            "sync",
            CheckState::Warn,
            format!(
                "{}: last successful sync {} s ago{error}",
                s.server,
                now.saturating_sub(t)
            ),
        ),
        Some(t) => check(
            "sync",
            CheckState::Ok,
            format!(
                "{}: last successful sync {} s ago",
                s.server,
                now.saturating_sub(t)
            ),
        ),
    }
}
