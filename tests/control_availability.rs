//! Regression tests for the control socket's availability and for its file on disk, end to end
//! against a real santad (as root, on a private tmpfs: see `common`), each named after the attack
//! it pins.
//!
//! The attackers are forked children that drop to an unprivileged uid (`nobody`, or a uid with no
//! account: `SO_PEERCRED` reports the number either way) and then only make system calls on
//! memory prepared before the fork: open many connections, send part of a frame, and trickle one
//! byte at a time, reconnecting whenever santad closes one. What they see (connections turned
//! away, cut off, how long each was held) goes into memory shared with the test.
//!
//! Bound stated and checked here: under that attack, every `santactl status` run by root
//! (process start to exit) finishes within [`ROOT_ANSWER_BOUND`].
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ctl::{ctl, ctl_as, json, ok};
use santad::control::server::{CONNECTIONS_PER_UID_MAX, SOCKET_MODE, UNPRIVILEGED_HANDLERS_MAX};
use santad::control::{IDLE_TIMEOUT, REQUEST_DEADLINE_UNPRIVILEGED};
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest root's `santactl status` may take, from starting the process to its exit, while
/// unprivileged clients hold every handler they may. Unloaded it takes about 10 ms here; the
/// margin is for a shared 2-core machine. Without a handler kept for root it fails outright
/// ("busy") or waits for an attacker's request deadline (5 s).
const ROOT_ANSWER_BOUND: Duration = Duration::from_secs(1);

/// How long root keeps asking during the attack: longer than an unprivileged request deadline,
/// so the attackers' connections are cut off and replaced at least once meanwhile.
const ATTACK_OBSERVED: Duration = Duration::from_secs(8);

const NOBODY: u32 = 65534;

/// One test of this file at a time, across processes too (nextest runs each test in its own):
/// each starts a santad and several attacker processes, and the latency bound is about santad,
/// not about another test's load.
struct Serial(#[allow(dead_code)] std::fs::File);

fn serial() -> Serial {
    let path = std::env::temp_dir().join("santad-control-availability.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on an fd we own; the lock goes with the file when the guard drops.
    let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock");
    Serial(f)
}

fn metrics(socket: &Path) -> Value {
    json(&ctl(socket, &["metrics", "--json"]))
}

fn metric(m: &Value, name: &str) -> u64 {
    m[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no metric {name} in {m}"))
}

/// A santad whose state directory (and so its socket) everyone may reach.
fn start_reachable(mode: &str) -> common::Santad {
    common::start_with(mode, "", |dir| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
}

/// Waits until `cond` holds, for at most `common::WAIT`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < common::WAIT, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// The attacker
// ---------------------------------------------------------------------------------------------

/// Connections one attacker process keeps open at most.
const ATTACK_CONNECTIONS_MAX: usize = 64;

/// What an attacker saw; lives in memory shared with the test.
#[repr(C)]
struct AttackStats {
    /// 1 once the child runs as its uid, 2 if it could not switch.
    ready: AtomicU64,
    /// Connections made.
    connects: AtomicU64,
    /// Connections santad turned away with "busy".
    busy: AtomicU64,
    /// Connections santad cut off with "timed_out".
    timed_out: AtomicU64,
    /// Connections closed with anything else.
    other_closes: AtomicU64,
    /// Shortest and longest a cut-off connection was held, ms from connect to santad's close.
    held_ms_min: AtomicU64,
    held_ms_max: AtomicU64,
}

/// A forked child attacking santad's socket as an unprivileged uid; killed on drop.
struct Attacker {
    pid: libc::pid_t,
    stats: *mut AttackStats,
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How the child attacks.
#[derive(Clone, Copy)]
struct Plan {
    uid: u32,
    /// Connections kept open (at most [`ATTACK_CONNECTIONS_MAX`]).
    connections: usize,
    /// One byte is sent on every open connection this often (below santad's idle timeout, so
    /// only the request deadline can cut a connection off).
    trickle: Duration,
    /// The body length each frame announces (never sent whole).
    announce: u32,
}

impl Attacker {
    fn spawn(socket: &Path, plan: Plan) -> Attacker {
        assert!(plan.connections <= ATTACK_CONNECTIONS_MAX);
        // Everything the child touches is made before the fork: it allocates nothing.
        // SAFETY: an all-zero sockaddr_un is valid; the path is copied in below.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = socket.as_os_str().as_bytes();
        assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let addr_len = (std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1)
            as libc::socklen_t;
        let devnull = CString::new("/dev/null").unwrap();
        // SAFETY: a fresh anonymous shared mapping of the size of AttackStats.
        let stats = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<AttackStats>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(stats, libc::MAP_FAILED, "mmap");
        let stats = stats.cast::<AttackStats>();
        // SAFETY: the mapping is writable, page-aligned and large enough.
        unsafe {
            stats.write(AttackStats {
                ready: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                other_closes: AtomicU64::new(0),
                held_ms_min: AtomicU64::new(u64::MAX),
                held_ms_max: AtomicU64::new(0),
            })
        };
        // SAFETY: the child runs only `attack`, which makes system calls on memory prepared
        // above and never returns (no allocation, no lock, no unwinding after the fork).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child; `stats` is the shared mapping, valid until exit.
            unsafe { attack(&addr, addr_len, &devnull, plan, &*stats) }
        }
        let attacker = Attacker { pid, stats };
        let start = Instant::now();
        while attacker.stats().ready.load(Ordering::Acquire) == 0 {
            assert!(start.elapsed() < common::WAIT, "the attacker never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            attacker.stats().ready.load(Ordering::Acquire),
            1,
            "the attacker could not become uid {}",
            plan.uid
        );
        attacker
    }

    fn stats(&self) -> &AttackStats {
        // SAFETY: mapped in `spawn`, unmapped only in drop.
        unsafe { &*self.stats }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // SAFETY: our own child, by its pid, reaped here; then the mapping we made.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            libc::munmap(self.stats.cast(), std::mem::size_of::<AttackStats>());
        }
    }
}

/// The attacker child: becomes `plan.uid`, then keeps `plan.connections` connections open, each
/// with a frame header announcing `plan.announce` bytes and one byte more every `plan.trickle`;
/// whenever santad closes one, it records why and how long it was held, and reconnects.
///
/// # Safety
/// Only in the child right after `fork`: it closes every inherited fd but the standard three.
unsafe fn attack(
    addr: &libc::sockaddr_un,
    addr_len: libc::socklen_t,
    devnull: &CString,
    plan: Plan,
    stats: &AttackStats,
) -> ! {
    // SAFETY: system calls on the stack, on `addr`, `devnull` and the shared `stats`, all
    // valid in the child; the fds are the child's own.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Inherited pipes (a santactl another thread is running, the harness's) must not be
        // kept open by this child.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let null = libc::open(devnull.as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(plan.uid) != 0
            || libc::setuid(plan.uid) != 0
            || libc::getuid() != plan.uid
            || libc::geteuid() != plan.uid
        {
            stats.ready.store(2, Ordering::Release);
            libc::_exit(1);
        }
        stats.ready.store(1, Ordering::Release);
        let n = plan.connections;
        let trickle_ms = plan.trickle.as_millis() as u64;
        let header = plan.announce.to_be_bytes();
        let mut fds = [-1 as libc::c_int; ATTACK_CONNECTIONS_MAX];
        let mut since = [0u64; ATTACK_CONNECTIONS_MAX];
        let mut pfds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; ATTACK_CONNECTIONS_MAX];
        // What santad sent on each connection so far, classified once it closes.
        let mut answers = [[0u8; 256]; ATTACK_CONNECTIONS_MAX];
        let mut answered = [0usize; ATTACK_CONNECTIONS_MAX];
        let mut answered_at = [0u64; ATTACK_CONNECTIONS_MAX];
        let mut next_tick = 0u64;
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        loop {
            let now = now_ms();
            if now >= next_tick {
                for i in 0..n {
                    if fds[i] < 0 {
                        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                        if fd < 0 {
                            continue;
                        }
                        let sa = (addr as *const libc::sockaddr_un).cast::<libc::sockaddr>();
                        if libc::connect(fd, sa, addr_len) != 0 {
                            libc::close(fd);
                            continue;
                        }
                        stats.connects.fetch_add(1, Ordering::Relaxed);
                        // A partial frame: the header and the first body byte.
                        libc::send(fd, header.as_ptr().cast(), header.len(), flags);
                        libc::send(fd, b"{".as_ptr().cast(), 1, flags);
                        fds[i] = fd;
                        since[i] = now_ms();
                        answered[i] = 0;
                    } else {
                        libc::send(fds[i], b" ".as_ptr().cast(), 1, flags);
                    }
                }
                next_tick = now + trickle_ms;
            }
            for i in 0..n {
                pfds[i] = libc::pollfd {
                    fd: fds[i],
                    events: libc::POLLIN,
                    revents: 0,
                };
            }
            let timeout = next_tick.saturating_sub(now_ms()).min(1000) as libc::c_int;
            libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout);
            for i in 0..n {
                if fds[i] < 0 || pfds[i].revents == 0 {
                    continue;
                }
                let room = &mut answers[i][answered[i]..];
                let got = libc::recv(fds[i], room.as_mut_ptr().cast(), room.len(), flags);
                if got < 0 && *libc::__errno_location() == libc::EAGAIN {
                    continue;
                }
                if got > 0 {
                    if answered[i] == 0 {
                        answered_at[i] = now_ms();
                    }
                    answered[i] += got as usize;
                    if answered[i] < answers[i].len() {
                        continue; // read on until santad closes
                    }
                }
                let answer = &answers[i][..answered[i]];
                if contains(answer, b"\"timed_out\"") {
                    let held = answered_at[i] - since[i];
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                    stats.held_ms_min.fetch_min(held, Ordering::Relaxed);
                    stats.held_ms_max.fetch_max(held, Ordering::Relaxed);
                } else if contains(answer, b"\"busy\"") {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.other_closes.fetch_add(1, Ordering::Relaxed);
                }
                libc::close(fds[i]);
                fds[i] = -1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The attacks
// ---------------------------------------------------------------------------------------------

#[test]
fn slowloris_clients_of_unprivileged_users_cannot_keep_root_santactl_from_an_answer() {
    let _serial = serial();
    let s = start_reachable("MONITOR");
    let sock = &s.socket_path;

    let mut unloaded = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        ok(&ctl(sock, &["status", "--json"]));
        unloaded.push(t.elapsed());
    }

    // Three users, 32 stalled connections each: together they want every handler and the whole
    // queue, and each alone more than its share.
    let attackers: Vec<Attacker> = [NOBODY, 60001, 60002]
        .into_iter()
        .map(|uid| {
            Attacker::spawn(
                sock,
                Plan {
                    uid,
                    connections: 32,
                    trickle: Duration::from_millis(500),
                    announce: 1000,
                },
            )
        })
        .collect();
    // Every root request from here on is under attack, and each is held to the bound.
    let root = |args: &[&str]| {
        let t = Instant::now();
        let v = json(&ctl(sock, args));
        let took = t.elapsed();
        assert!(
            took <= ROOT_ANSWER_BOUND,
            "root's santactl {args:?} took {took:?} under attack (bound {ROOT_ANSWER_BOUND:?})"
        );
        (v, took)
    };
    wait_for("the attackers to hold every unprivileged handler", || {
        metric(
            &root(&["metrics", "--json"]).0,
            "control.unprivileged_serving",
        ) == UNPRIVILEGED_HANDLERS_MAX as u64
    });

    let mut took = Vec::new();
    let mut saturated = 0;
    let start = Instant::now();
    while start.elapsed() < ATTACK_OBSERVED {
        let (st, t) = root(&["status", "--json"]);
        took.push(t);
        assert_eq!(st["daemon"]["mode"], "Monitor");
        let (m, _) = root(&["metrics", "--json"]);
        if metric(&m, "control.unprivileged_serving") == UNPRIVILEGED_HANDLERS_MAX as u64 {
            saturated += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (m, _) = root(&["metrics", "--json"]);
    took.sort();
    unloaded.sort();
    eprintln!(
        "root santactl status, {} runs under attack: p50 {:?}, p90 {:?}, max {:?} (unloaded, 10 runs: p50 {:?}, max {:?})",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        took[took.len() - 1],
        percentile(&unloaded, 0.5),
        unloaded[unloaded.len() - 1],
    );
    for (i, a) in attackers.iter().enumerate() {
        let st = a.stats();
        eprintln!(
            "attacker {i}: {} connects, {} busy, {} cut off (held {}..{} ms), {} other",
            st.connects.load(Ordering::Relaxed),
            st.busy.load(Ordering::Relaxed),
            st.timed_out.load(Ordering::Relaxed),
            st.held_ms_min.load(Ordering::Relaxed),
            st.held_ms_max.load(Ordering::Relaxed),
            st.other_closes.load(Ordering::Relaxed),
        );
    }
    // The attack was real all along: the unprivileged handlers were held at (nearly) every
    // sample, santad turned connections away, and cut the trickling ones off.
    assert!(
        saturated * 10 >= took.len() * 8,
        "the attack held every unprivileged handler in only {saturated} of {} samples",
        took.len()
    );
    assert!(metric(&m, "control.uid_limited") > 0, "{m}");
    let cut_off: u64 = attackers
        .iter()
        .map(|a| a.stats().timed_out.load(Ordering::Relaxed))
        .sum();
    assert!(cut_off > 0, "no attacker connection reached its deadline");
}

#[test]
fn a_client_trickling_one_byte_at_a_time_is_cut_off_at_the_request_deadline() {
    let _serial = serial();
    let s = start_reachable("MONITOR");
    let trickle = Duration::from_millis(400);
    assert!(trickle < IDLE_TIMEOUT, "only the deadline can end it");
    let attacker = Attacker::spawn(
        &s.socket_path,
        Plan {
            uid: 60010,
            connections: 1,
            trickle,
            announce: 1000,
        },
    );
    let st = attacker.stats();
    wait_for("two trickling connections cut off", || {
        st.timed_out.load(Ordering::Relaxed) >= 2
    });
    let (min, max) = (
        Duration::from_millis(st.held_ms_min.load(Ordering::Relaxed)),
        Duration::from_millis(st.held_ms_max.load(Ordering::Relaxed)),
    );
    eprintln!(
        "trickling connections held {min:?}..{max:?} (deadline {REQUEST_DEADLINE_UNPRIVILEGED:?})"
    );
    assert!(
        min >= REQUEST_DEADLINE_UNPRIVILEGED - Duration::from_millis(50),
        "cut off after {min:?}: before the deadline, so not by it"
    );
    assert!(
        max <= REQUEST_DEADLINE_UNPRIVILEGED + Duration::from_millis(500),
        "held {max:?}: the trickle stretched the deadline"
    );
    assert_eq!(st.other_closes.load(Ordering::Relaxed), 0);
}

#[test]
fn one_user_flooding_connections_holds_a_bounded_share_and_other_users_still_get_answers() {
    let _serial = serial();
    let s = start_reachable("MONITOR");
    let sock = &s.socket_path;
    let sockets_held = || s.fds().iter().filter(|f| f.contains("-> socket:")).count();
    ok(&ctl_as(NOBODY, sock, &["status"]));
    let baseline = sockets_held();
    let attacker = Attacker::spawn(
        sock,
        Plan {
            uid: 60020,
            connections: ATTACK_CONNECTIONS_MAX,
            trickle: Duration::from_millis(300),
            announce: 1000,
        },
    );
    wait_for("the flood to fill the uid's share", || {
        let m = metrics(sock);
        metric(&m, "control.unprivileged_serving") + metric(&m, "control.unprivileged_waiting")
            == CONNECTIONS_PER_UID_MAX as u64
    });
    // santad holds no more of the flood than the uid's share (plus one or two it has just
    // accepted and is turning away).
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(sockets_held().saturating_sub(baseline));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        most <= CONNECTIONS_PER_UID_MAX + 2,
        "santad held {most} of one user's connections (share {CONNECTIONS_PER_UID_MAX})"
    );
    // Another user is answered meanwhile, promptly.
    for _ in 0..5 {
        let t = Instant::now();
        let st = json(&ctl_as(NOBODY, sock, &["status", "--json"]));
        assert_eq!(st["daemon"]["mode"], "Monitor");
        assert!(
            t.elapsed() <= ROOT_ANSWER_BOUND,
            "another user waited {:?}",
            t.elapsed()
        );
    }
    let m = metrics(sock);
    assert!(metric(&m, "control.uid_limited") > 0, "{m}");
    assert!(attacker.stats().busy.load(Ordering::Relaxed) > 0);
    assert!(
        metric(&m, "control.unprivileged_waiting") + metric(&m, "control.unprivileged_serving")
            <= CONNECTIONS_PER_UID_MAX as u64 + 1,
        "{m}"
    );
}

// ---------------------------------------------------------------------------------------------
// The socket file
// ---------------------------------------------------------------------------------------------

fn umask_of(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(v.trim(), 8).unwrap()
}

#[test]
fn the_control_socket_is_created_mode_0666_whatever_umask_santad_inherits_and_keeps_its_umask() {
    let _serial = serial();
    // santad inherits a strict umask (the tests of this binary run one at a time, so changing
    // the test process's own umask for the start is safe).
    // SAFETY: umask has no preconditions.
    let old = unsafe { libc::umask(0o077) };
    let s = start_reachable("MONITOR");
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let m = std::fs::symlink_metadata(&s.socket_path).unwrap();
    assert!(m.file_type().is_socket(), "{:?}", m.file_type());
    assert_eq!(
        m.mode() & 0o7777,
        SOCKET_MODE,
        "mode {:o}",
        m.mode() & 0o7777
    );
    assert_eq!(m.uid(), 0);
    assert_eq!(
        umask_of(&s.pid().to_string()),
        0o077,
        "santad's own umask is the one it inherited"
    );
    // Mode 0666: an unprivileged user reaches it.
    ok(&ctl_as(NOBODY, &s.socket_path, &["version"]));
}

#[test]
fn a_symlink_planted_at_the_socket_path_is_neither_followed_nor_removed() {
    let _serial = serial();
    let s = common::start_with("MONITOR", "", |dir| {
        let target = dir.join("precious");
        std::fs::write(&target, b"root's file").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("santad.sock")).unwrap();
    });
    let target = s.state.path().join("precious");
    let link = std::fs::symlink_metadata(&s.socket_path).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still there");
    assert_eq!(std::fs::read_link(&s.socket_path).unwrap(), target);
    let m = std::fs::metadata(&target).unwrap();
    assert!(m.is_file());
    assert_eq!(
        m.mode() & 0o7777,
        0o600,
        "the link's target was not chmod'ed"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"root's file");
    // santad runs (it still enforces) without its socket: santactl cannot reach it.
    let o = ctl(&s.socket_path, &["status"]);
    assert_eq!(o.code, 3, "{} {}", o.stdout, o.stderr);
    let bin = s.binary("still-enforcing", "sym");
    assert!(common::run(&bin).unwrap().success());
    // The exec was seen and logged without a control socket.
    s.wait_log(1, |l| common::field(l, "path") == bin.to_str());
}
