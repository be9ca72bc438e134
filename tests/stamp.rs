//! Which stamp detects modification on this kernel: every way a local user can change a file's
//! bytes moves its ctime, even right after santad read it (multigrain timestamps, Linux 6.13+) —
//! except a write through a page that a shared mapping already has writable, which is why an
//! evaluation holds a read lease (refused while such a mapping exists).
//!
//! Each case runs on a private tmpfs and a private ext2 image (the loop-mounted filesystem the
//! perf harness also uses), as root, and touches nothing else.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "common/mapping.rs"]
mod mapping;

use mapping::SharedMap;
use santa_testkit::{PrivateMount, TmpfsOptions};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

const SIZE: usize = 64 << 10;

fn ctime_ns(file: &File) -> (i64, u64) {
    let m = file.metadata().unwrap();
    (m.ctime() * 1_000_000_000 + m.ctime_nsec(), m.size())
}

fn mounts() -> Vec<(&'static str, PrivateMount)> {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "mounting needs root");
    vec![
        (
            "tmpfs",
            PrivateMount::tmpfs(TmpfsOptions {
                size_bytes: 64 << 20,
                exec: true,
            })
            .unwrap(),
        ),
        ("ext2", PrivateMount::ext2_image(64 << 20).unwrap()),
    ]
}

fn fresh(dir: &Path, name: &str) -> File {
    let path = dir.join(name);
    std::fs::write(&path, vec![7u8; SIZE]).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.sync_all().unwrap();
    file
}

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    d.as_nanos() as i64
}

/// Stat, modify at once (no sleep: a coarse clock would hide it), stat again. On a multigrain
/// filesystem (tmpfs here) ctime must move. On one without (ext2), it may keep the value of a
/// change in the same clock tick — then the stamp must still be too fresh for santad to cache
/// a decision under it (`STAMP_SETTLE_NS`), so the next exec is evaluated again either way.
fn assert_moves(fs: &str, what: &str, file: &File, modify: impl FnOnce(&File)) {
    let before = ctime_ns(file);
    modify(file);
    let after = ctime_ns(file);
    assert_eq!(after.1, before.1, "{fs}/{what}: the size must not change");
    if after.0 == before.0 {
        assert_ne!(
            fs, "tmpfs",
            "{fs}/{what}: ctime did not move on a multigrain filesystem"
        );
        assert!(
            !santad::identity::stamp_settled(after.0, now_ns()),
            "{fs}/{what}: ctime kept and old enough to be cached under"
        );
    }
}

#[test]
fn every_write_path_moves_ctime_even_right_after_a_stat() {
    for (fs, mount) in mounts() {
        let dir = mount.path();
        let f = fresh(dir, "write");
        // Let the creation's ctime age past a tick, as a cached decision's stamp would be.
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_moves(fs, "pwrite of the same size", &f, |f| {
            f.write_at(&[8u8; 16], 100).unwrap();
        });
        assert_moves(fs, "truncate + rewrite to the same size", &f, |f| {
            f.set_len(0).unwrap();
            f.write_at(&vec![9u8; SIZE], 0).unwrap();
        });
        assert_moves(fs, "first write through a shared mapping", &f, |f| {
            SharedMap::of(f).write(10, &[1]);
        });
        let src = fresh(dir, "source");
        src.write_at(&[3u8; 4096], 0).unwrap();
        assert_moves(fs, "copy_file_range", &f, |f| {
            let (mut off_in, mut off_out) = (0i64, 0i64);
            // SAFETY: both fds are open; the offsets are valid pointers to i64.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    f.as_raw_fd(),
                    &mut off_out,
                    4096,
                    0,
                )
            };
            assert_eq!(
                n,
                4096,
                "copy_file_range: {}",
                std::io::Error::last_os_error()
            );
        });
        // Punching a hole changes the bytes without changing the size.
        let mut supported = true;
        assert_moves(fs, "fallocate punch hole", &f, |f| {
            // SAFETY: fallocate on an open fd with integer arguments.
            let rc = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    0,
                    8192,
                )
            };
            if rc != 0 {
                assert_eq!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EOPNOTSUPP),
                    "{fs}: fallocate"
                );
                supported = false;
                // Nothing changed: make the stamp move so the check holds trivially.
                f.write_at(&[1], 0).unwrap();
            }
        });
        println!("{fs}: punch hole supported: {supported}");
    }
}

#[test]
fn a_write_through_an_already_writable_page_keeps_ctime_so_evaluations_hold_a_lease() {
    for (fs, mount) in mounts() {
        let f = fresh(mount.path(), "mapped");
        let mut map = SharedMap::of(&f);
        // The first fault makes the page writable (and moves ctime); the writer then closes
        // its fd but keeps the mapping, which keeps the file open for writing.
        map.write(1, &[1]);
        let reader = File::open(mount.join("mapped")).unwrap();
        let before = ctime_ns(&reader);
        map.write(2, &[2]);
        assert_eq!(
            ctime_ns(&reader).0,
            before.0,
            "{fs}: this kernel moves ctime on every mapped write: the lease would not be needed"
        );
        // So santad asks for a read lease, which the kernel refuses while a writer exists.
        // SAFETY: fcntl with integer arguments on an open fd.
        let leased = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        assert_eq!(
            leased, -1,
            "{fs}: a read lease granted beside a writable mapping"
        );
        drop(map);
        drop(f);
        // SAFETY: as above.
        let leased = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        assert_eq!(leased, 0, "{fs}: no writer left, the lease is granted");
        // SAFETY: as above.
        unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}
