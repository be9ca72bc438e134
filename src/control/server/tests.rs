use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The process umask, read without changing it (`/proc/self/status`).
fn process_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("a Umask line");
    u32::from_str_radix(line.trim(), 8).expect("octal")
}

#[test]
fn root_is_served_while_unprivileged_peers_hold_every_handler_they_may() {
    let d = Dispatcher::new();
    // Two users each take a handler: every unprivileged place is held.
    for uid in [1000, 1001] {
        d.admit(uid, uid).expect("admitted");
        let job = d.try_take().expect("a handler for a user");
        assert_eq!(job.uid, uid);
    }
    d.admit(1002, 1002).expect("a third user may wait");
    assert!(
        d.try_take().is_none(),
        "the last handler is kept for root: no third user"
    );
    assert_eq!(
        d.load(),
        DispatchLoad {
            root_waiting: 0,
            users_waiting: 1,
            users_serving: UNPRIVILEGED_HANDLERS_MAX
        }
    );
    // Root arrives after the waiting user and is served first, at once.
    d.admit(0, 0).expect("root admitted");
    let job = d.try_take().expect("root finds a handler");
    assert_eq!(job.uid, 0);
    d.release(0);
    assert!(
        d.try_take().is_none(),
        "root's handler is not lent to users"
    );
    // A user's handler freed: the waiting user gets it.
    d.release(1000);
    assert_eq!(d.try_take().map(|j| j.uid), Some(1002));
}

#[test]
fn one_user_holds_one_handler_and_a_few_connections_and_others_still_get_in() {
    let d = Dispatcher::new();
    for i in 0..CONNECTIONS_PER_UID_MAX {
        d.admit(1000, i).expect("within the uid's bound");
    }
    match d.admit(1000, 99) {
        Err((99, Refusal::UidLimit)) => {}
        other => panic!("the uid's fifth connection: {other:?}"),
    }
    assert_eq!(d.try_take().map(|j| j.uid), Some(1000));
    assert!(
        d.try_take().is_none(),
        "the uid's other connections wait for its one handler"
    );
    d.admit(2000, 2000).expect("another user gets in");
    assert_eq!(
        d.try_take().map(|j| (j.uid, j.conn)),
        Some((2000, 2000)),
        "and is served past the first user's waiting connections"
    );
    // The first user's connection done: its next one, and a fresh one fits again.
    d.release(1000);
    assert_eq!(d.try_take().map(|j| j.conn), Some(1));
    d.admit(1000, 100).expect("a place freed for the uid");
    assert!(matches!(d.admit(1000, 101), Err((101, Refusal::UidLimit))));
}

#[test]
fn the_queues_are_bounded_and_stop_wakes_every_waiting_handler() {
    let d = Arc::new(Dispatcher::new());
    for uid in 1..=PENDING_CONNECTIONS_MAX as u32 {
        d.admit(uid, uid).expect("admitted");
    }
    assert!(matches!(
        d.admit(9999, 9999),
        Err((9999, Refusal::QueueFull))
    ));
    for i in 0..ROOT_PENDING_CONNECTIONS_MAX as u32 {
        d.admit(0, i).expect("root admitted");
    }
    assert!(matches!(d.admit(0, 77), Err((77, Refusal::QueueFull))));
    // Drain everything a handler may take, then park handlers on the empty queue.
    while d.try_take().is_some() {}
    let waiters: Vec<_> = (0..HANDLER_THREADS)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || d.take().map(|j| j.uid))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    d.stop();
    for w in waiters {
        assert_eq!(w.join().expect("joined"), None, "woken by stop");
    }
    assert!(matches!(d.admit(0, 1), Err((1, Refusal::Stopping))));
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn the_socket_is_created_mode_0666_and_santads_umask_never_changes() {
    let dir = private_dir();
    let path = dir.path().join("run/santad/santad.sock");
    let before = process_umask();
    let bound = bind(&path).expect("bound");
    assert_eq!(process_umask(), before, "the process umask is untouched");
    let m = std::fs::symlink_metadata(&path).expect("socket exists");
    assert!(m.file_type().is_socket());
    assert_eq!(m.mode() & 0o7777, SOCKET_MODE, "{:o}", m.mode());
    assert_eq!(m.ino(), bound.entry.file.ino);
    for d in [dir.path().join("run"), dir.path().join("run/santad")] {
        let m = std::fs::symlink_metadata(&d).expect("created");
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o7777, SOCKET_DIR_MODE, "{}", d.display());
    }
    // It answers: a peer connects through the path.
    UnixStream::connect(&path).expect("connects");
    assert_eq!(bound.entry.name.as_bytes(), b"santad.sock");
}

#[test]
fn a_symlink_at_the_socket_path_is_neither_followed_nor_removed() {
    let dir = private_dir();
    let target = dir.path().join("precious");
    std::fs::write(&target, b"keep").expect("written");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = dir.path().join("santad.sock");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    assert!(matches!(bind(&path), Err(ServerError::NotASocket { .. })));
    let link = std::fs::symlink_metadata(&path).expect("still there");
    assert!(link.file_type().is_symlink(), "the link is not removed");
    let m = std::fs::metadata(&target).expect("target");
    assert_eq!(m.mode() & 0o7777, 0o600, "the target's mode is untouched");
    assert_eq!(std::fs::read(&target).expect("read"), b"keep");
    // A dangling link (a stale socket's name pointing elsewhere) is not followed either:
    // nothing is created where it points.
    let elsewhere = dir.path().join("elsewhere.sock");
    let dangling = dir.path().join("dangling.sock");
    std::os::unix::fs::symlink(&elsewhere, &dangling).expect("symlink");
    assert!(matches!(
        bind(&dangling),
        Err(ServerError::NotASocket { .. })
    ));
    assert!(!elsewhere.exists(), "nothing bound through the link");
}

#[test]
fn a_symlink_anywhere_on_the_directory_path_is_refused() {
    let dir = private_dir();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
    for path in [
        dir.path().join("link/santad.sock"),
        dir.path().join("link/sub/santad.sock"),
    ] {
        match bind(&path) {
            Err(ServerError::UnsafeDirectory { reason, .. }) => {
                assert!(reason.contains("symbolic link"), "{reason}")
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    assert_eq!(
        std::fs::read_dir(&real).expect("read").count(),
        0,
        "nothing created through the link"
    );
}

#[test]
fn a_socket_directory_others_can_write_is_refused() {
    for mode in [0o777, 0o1777, 0o775] {
        let dir = private_dir();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).expect("chmod");
        match bind(&open.join("santad.sock")) {
            Err(ServerError::UnsafeDirectory { reason, .. }) => {
                assert!(reason.contains("writable"), "{mode:o}: {reason}")
            }
            other => panic!("{mode:o}: {other:?}"),
        }
        assert!(!open.join("santad.sock").exists());
        // Below a sticky shared directory (as a private directory in /tmp is) is fine.
        if mode == 0o1777 {
            let inner = open.join("inner");
            std::fs::create_dir(&inner).expect("mkdir");
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            bind(&inner.join("santad.sock")).expect("a private directory in a sticky one");
        }
    }
}

#[test]
fn a_socket_directory_of_another_user_is_refused() {
    if euid() != 0 {
        eprintln!("needs root to give a directory away; CI runs as root");
        return;
    }
    let dir = private_dir();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    match bind(&theirs.join("santad.sock")) {
        Err(ServerError::UnsafeDirectory { reason, .. }) => {
            assert!(reason.contains("uid 65534"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stale_socket_is_replaced_a_live_one_is_in_use_and_shutdown_removes_only_ours() {
    let dir = private_dir();
    let path = dir.path().join("santad.sock");
    let first = bind(&path).expect("bound");
    assert!(matches!(bind(&path), Err(ServerError::InUse { .. })));
    drop(first.listener); // santad died: the socket file stays, nobody answers
    let second = bind(&path).expect("a stale socket is replaced");
    // Another santad's socket under the name (the second one's inode is still alive,
    // moved aside, so the third cannot reuse its number) is not ours to remove.
    std::fs::rename(&path, dir.path().join("moved.sock")).expect("renamed");
    let third = bind(&path).expect("bound again");
    second.entry.remove_if_ours();
    assert!(path.exists(), "not the socket the second bind made");
    third.entry.remove_if_ours();
    assert!(!path.exists(), "ours is removed");
}
