//! A kernel race santad must not open, shown with santad's own fanotify primitives: when one
//! of the group's inode marks on a file is destroyed while a permission event for that file is
//! queued, the kernel lets other execs of the file pass without asking
//! (`fsnotify_prepare_user_wait` fails on the detached mark and `fanotify_handle_event` lets
//! the operation pass), for as long as the held event keeps the detached mark referenced.
//! santad's kernel-cache flush used `FAN_MARK_FLUSH`, which destroys every inode mark: a rule
//! change while one exec of a user's file was held let the user's next exec of it run
//! unasked, after the file was blocked (a stale allow in `attacks.rs`'s flush storm, about one
//! run in four). Now every inode mark carries a real mask (`INODE_MARK_MASK`) and a flush only
//! takes ignore bits off (`unignore_inode`), so no mark is ever destroyed.
//!
//! Safety: only a private tmpfs this test mounted is marked; a held exec is answered (or the
//! group dropped, which releases it) on every path, also on a failed assertion.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use santa_testkit::{PrivateMount, TmpfsOptions};
use santad::linux::fanotify::{
    EVENT_BUFFER_BYTES_DEFAULT, EventBuffer, Fanotify, InitOptions, MASK_CLOSE_WRITE,
    MASK_OPEN_EXEC, MASK_OPEN_EXEC_PERM, MarkScope, WakeFd,
};

/// How long an expected permission event may take (an unasked exec finishes long before).
const EVENT_WAIT: Duration = Duration::from_secs(3);

/// Runs `path` on a thread of its own (the exec blocks while its event is held).
fn exec_in_background(path: &Path) -> JoinHandle<bool> {
    let path = path.to_path_buf();
    std::thread::spawn(move || Command::new(&path).status().is_ok_and(|s| s.success()))
}

struct Group {
    fan: Fanotify,
    wake: WakeFd,
    buf: EventBuffer,
}

impl Group {
    fn on(mount: &Path) -> Group {
        let fan = Fanotify::new(InitOptions::default()).expect("fanotify_init");
        fan.add_watch(
            mount,
            MarkScope::Mount,
            MASK_OPEN_EXEC_PERM | MASK_OPEN_EXEC | MASK_CLOSE_WRITE,
        )
        .expect("mark the private mount");
        Group {
            fan,
            wake: WakeFd::new().expect("eventfd"),
            buf: EventBuffer::new(EVENT_BUFFER_BYTES_DEFAULT).expect("buffer"),
        }
    }

    /// The next permission event's file, unanswered (notifications are read and dropped);
    /// `None` if `exec` finished first or none came within [`EVENT_WAIT`].
    fn next_permission(&mut self, exec: &JoinHandle<bool>) -> Option<File> {
        let start = Instant::now();
        while start.elapsed() < EVENT_WAIT {
            let ready = self.fan.wait(&self.wake, 20).expect("poll");
            if ready.events {
                let mut held = None;
                for event in self.fan.read(&mut self.buf).expect("read") {
                    let event = event.expect("well-formed event");
                    if event.mask & MASK_OPEN_EXEC_PERM != 0 && held.is_none() {
                        held = event.fd.map(|fd| File::from(fd.into_owned()));
                    }
                    // Any other permission event is answered allow when the iterator drops.
                }
                if held.is_some() {
                    return held;
                }
            } else if exec.is_finished() {
                return None;
            }
        }
        None
    }

    fn allow(&self, file: &File) {
        self.fan
            .respond(file.as_fd(), santa_rules::Action::Allow, false)
            .expect("answer");
    }
}

fn binary_on(mount: &PrivateMount) -> PathBuf {
    let path = mount.join("tool");
    std::fs::copy("/bin/true", &path).expect("copy /bin/true onto the private mount");
    path
}

/// Exec 1 of the file is held; `drop_marks` runs; exec 2 starts. Returns whether exec 2 was
/// asked (a permission event reached the group).
fn second_exec_asked(drop_marks: impl FnOnce(&Group, &File)) -> bool {
    let mount = PrivateMount::tmpfs(TmpfsOptions::default()).expect("private tmpfs");
    let bin = binary_on(&mount);
    let mut group = Group::on(mount.path());
    // An allowed exec leaves an inode mark of the group on the file, as santad's
    // notification-only ignore does for a file it always evaluates.
    let first = exec_in_background(&bin);
    let event = group
        .next_permission(&first)
        .expect("the first exec is asked");
    group
        .fan
        .ignore_inode(event.as_fd(), MASK_OPEN_EXEC)
        .expect("inode ignore mark");
    group.allow(&event);
    assert!(first.join().unwrap(), "the first exec runs");
    // Exec 1, held.
    let held_exec = exec_in_background(&bin);
    let held = group
        .next_permission(&held_exec)
        .expect("the held exec is asked");
    drop_marks(&group, &held);
    // Exec 2, while exec 1 is held.
    let second = exec_in_background(&bin);
    let asked = group.next_permission(&second);
    if let Some(file) = &asked {
        group.allow(file);
    }
    group.allow(&held);
    assert!(
        held_exec.join().unwrap(),
        "the held exec runs once answered"
    );
    assert!(second.join().unwrap(), "the second exec runs once answered");
    asked.is_some()
}

#[test]
fn taking_ignore_bits_off_while_an_exec_is_held_leaves_the_next_exec_asked() {
    santad_requires_root();
    // What santad's flush does now: the ignore bits off, the mark (with its real mask) kept.
    assert!(
        second_exec_asked(|group, file| {
            group
                .fan
                .unignore_inode(file.as_fd(), MASK_OPEN_EXEC)
                .expect("remove the ignore bits");
        }),
        "an exec started while another exec of the file was held ran without a permission \
         event after santad took the file's ignore bits off: its mark was destroyed"
    );
}

#[test]
fn a_whole_group_flush_while_an_exec_is_held_lets_the_next_exec_run_unasked() {
    santad_requires_root();
    // The kernel fact the design rests on: if this starts passing (a kernel that asks anyway),
    // FAN_MARK_FLUSH is safe again on that kernel; santad still does not use it.
    assert!(
        !second_exec_asked(|group, _| group.fan.flush_ignores().expect("FAN_MARK_FLUSH")),
        "with the file's inode mark destroyed by FAN_MARK_FLUSH while an exec of it was held, \
         the next exec was asked: this kernel no longer has the race"
    );
}

fn santad_requires_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "fanotify permission tests need root; run `make test` as root (CI does)"
    );
}
