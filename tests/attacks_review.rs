//! Regression tests for the attacks a security review of the fixed decision path found (each
//! demonstrated end to end before its fix): an unprivileged user in Lockdown, on files that
//! user owns, on the test's own private tmpfs (see `common`).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "common/attacker.rs"]
mod attacker;
mod common;

use attacker::{
    NOBODY, Outcome, SCRIPT, SCRIPT_EXIT, SharedMap, Target, allow, as_user, attack_while_held,
    elf_bytes, exec_timed, held_by_fanotify, lockdown, lockdown_with_allowed_big_file, spawn_exec,
    write_sparse_exe,
};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Takes a write lease on `file` (the attacker's own): the kernel then breaks it — and makes
/// whoever opens the file wait `fs.lease-break-time` — on any other open. A write lease needs
/// the file open nowhere else, and santad briefly holds the fd of the close-after-write event
/// of the file just written: retry until it is gone.
fn write_lease(file: &std::fs::File) {
    let start = Instant::now();
    loop {
        // SAFETY: fcntl with integer arguments on an open fd.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
        if rc == 0 {
            return;
        }
        let e = std::io::Error::last_os_error();
        assert!(
            e.raw_os_error() == Some(libc::EAGAIN) && start.elapsed() < common::WAIT,
            "F_SETLEASE F_WRLCK: {e}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ignore_sigio() {
    // SAFETY: setting a signal's disposition to ignore has no preconditions. The test process
    // holds the leases, and the kernel signals the holder when one is broken.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
}

#[test]
fn a_write_lease_on_ones_own_file_does_not_stall_santads_workers() {
    // Before: santad's workers opened event fds blocking; the open broke the user's lease and
    // waited 45 s in read(2), so with two such execs root's next exec was not answered.
    ignore_sigio();
    let (s, dir) = lockdown("");
    let (leases, execs) = as_user(NOBODY, || {
        (0..2)
            .map(|i| {
                let p = dir.join(format!("leased-{i}"));
                attacker::write_exe(&p, &elf_bytes(&format!("l{i}")));
                let f = std::fs::File::open(&p).unwrap();
                write_lease(&f);
                (f, spawn_exec(&p))
            })
            .unzip::<_, _, Vec<_>, Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(300));
    let probe = s.binary("probe", "probe");
    allow(&s, &probe);
    let t = Instant::now();
    let (outcome, _, _) = exec_timed(Target::Path(&probe));
    let took = t.elapsed();
    drop(leases);
    for e in execs {
        let o = e.wait();
        assert!(!o.ran(), "a leased file nobody allowed ran: {o:?}");
    }
    assert!(outcome.ran(), "root's allowed exec: {outcome:?}");
    assert!(
        took < Duration::from_secs(3),
        "root's exec waited {took:?} behind the user's leases"
    );
}

#[test]
fn a_write_through_a_prefaulted_mapping_during_hashing_then_unmapped_never_runs() {
    // Before: the lease failed during the evaluation (a writer was open) but the allow stood;
    // the writer rewrote an already-hashed page through its writable mapping (no fault, so no
    // ctime change), unmapped before the answer, and the unhashed bytes ran — logged ALLOW with
    // the old hash.
    const BYTES: u64 = 300 << 20;
    let (s, big, original) = lockdown_with_allowed_big_file("mapwrite", BYTES);
    let results: Vec<(u64, bool, Outcome)> = as_user(NOBODY, || {
        [5u64, 15, 30, 60, 90, 5, 15, 30]
            .iter()
            .map(|&delay_ms| {
                SharedMap::new(&big).write(0, &original[..SCRIPT.len()]);
                common::settle();
                // Not inherited by the exec'ing child: the writer is only the attacker's.
                let mut map = SharedMap::new(&big);
                map.dont_fork();
                // The page's first write fault now (ctime moves once, before the exec).
                map.write(0, &original[..1]);
                common::settle();
                // Unmapped before the answer, whether or not the write landed.
                let (_, written_while_held, outcome) =
                    attack_while_held(&big, Duration::from_millis(delay_ms), move |pid| {
                        map.write(0, SCRIPT);
                        let held = held_by_fanotify(pid);
                        drop(map);
                        held
                    });
                (delay_ms, written_while_held, outcome)
            })
            .collect()
    });
    for (delay_ms, held, outcome) in &results {
        eprintln!("delay {delay_ms} ms: written while held {held}, exec {outcome:?}");
        assert_ne!(
            *outcome,
            Outcome::Ran(SCRIPT_EXIT),
            "bytes written after the hash ran; log:\n{}",
            s.log_lines().join("\n")
        );
    }
    assert!(
        results.iter().any(|r| r.1),
        "no write landed while santad held the exec: the attack did not happen"
    );
}

#[test]
fn a_full_kernel_queue_never_lets_an_unapproved_exec_through() {
    // Before: with the workers stalled (the write-lease attack) and 17,000 close-after-write
    // events queued, the group's bounded queue (16,384) overflowed and the kernel let the
    // next permission event through without asking santad.
    ignore_sigio();
    let (_s, dir) = lockdown("");
    let (leases, execs, outcome) = as_user(NOBODY, || {
        let mut leases = Vec::new();
        let mut execs = Vec::new();
        for i in 0..2 {
            let p = dir.join(format!("leased-{i}"));
            attacker::write_exe(&p, &elf_bytes(&format!("q{i}")));
            let f = std::fs::File::open(&p).unwrap();
            write_lease(&f);
            leases.push(f);
            execs.push(spawn_exec(&p));
        }
        let unapproved = attacker::exe(&dir, "unapproved", "nobody-allowed-this");
        std::thread::sleep(Duration::from_millis(300));
        let spam = dir.join("spam");
        std::fs::create_dir(&spam).unwrap();
        for i in 0..17_000 {
            drop(std::fs::File::create(spam.join(i.to_string())).unwrap());
        }
        let (o, _, _) = exec_timed(Target::Path(&unapproved));
        (leases, execs, o)
    });
    drop(leases);
    for e in execs {
        let _ = e.wait();
    }
    assert!(
        outcome.is_eperm(),
        "an exec no rule allows ran in Lockdown: {outcome:?}"
    );
}

#[test]
fn an_exec_deferred_behind_ones_own_slow_files_is_denied_at_its_deadline() {
    // Before: each user's further evaluations wait behind its running one, with their deadline;
    // without FailClosed (the default) a deadline was an allow, so an unapproved payload queued
    // behind the user's own slow files ran.
    const SLOW: usize = 10;
    const BYTES: u64 = 24 << 20;
    let (s, dir) = lockdown("DeadlineMs = 150");
    let outcome = as_user(NOBODY, || {
        let files: Vec<_> = (0..SLOW)
            .map(|i| {
                let p = dir.join(format!("slow-{i}"));
                write_sparse_exe(&p, &elf_bytes(&format!("s{i}")), BYTES);
                p
            })
            .collect();
        let payload = attacker::exe(&dir, "payload", "nobody-allowed-this");
        common::settle();
        let slow: Vec<_> = files.iter().map(|f| spawn_exec(f)).collect();
        std::thread::sleep(Duration::from_millis(5));
        let (o, _, _) = exec_timed(Target::Path(&payload));
        for e in slow {
            let _ = e.wait();
        }
        o
    });
    assert!(
        outcome.is_eperm(),
        "an unapproved payload ran: {outcome:?}; log:\n{}",
        s.log_lines().join("\n")
    );
}
