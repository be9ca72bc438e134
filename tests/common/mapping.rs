//! A shared writable mapping of a test's own file, the way an attacker (or a writer the kernel
//! does not see) changes bytes without `write()`: used by the attack suites, the kernel-cache
//! test and the stamp test.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it; a failed unwrap is a failed test

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A `MAP_SHARED` writable mapping of a whole file. Made by [`SharedMap::new`], its fd is
/// closed as soon as the mapping exists: writes through it reach the file with no `write()` the
/// kernel could report. Unmapped when dropped.
#[derive(Debug)]
pub struct SharedMap {
    addr: *mut u8,
    len: usize,
}

// SAFETY: a mapping belongs to the process, not to a thread; `SharedMap` owns it alone (it is
// not Clone) and unmaps it once, so moving it to another thread is sound.
unsafe impl Send for SharedMap {}

impl SharedMap {
    /// Maps the file at `path` (opened read-write, closed again at once).
    pub fn new(path: &Path) -> SharedMap {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        // The mapping keeps the file open; no fd is left.
        SharedMap::of(&f)
    }

    /// Maps the whole of `file` (open read-write; the caller keeps its fd).
    pub fn of(file: &File) -> SharedMap {
        let len = usize::try_from(file.metadata().unwrap().len()).unwrap();
        assert!(len > 0, "cannot map an empty file");
        // SAFETY: a fresh shared mapping of a file open read-write; the kernel chooses the
        // address; the result is checked against MAP_FAILED.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        SharedMap {
            addr: addr.cast(),
            len,
        }
    }

    /// Keeps the mapping out of children forked from now on (`MADV_DONTFORK`), so the
    /// mapping's writer is only this process, not the program it execs.
    pub fn dont_fork(&mut self) {
        // SAFETY: advice on our own live mapping, its whole length.
        let rc = unsafe { libc::madvise(self.addr.cast(), self.len, libc::MADV_DONTFORK) };
        assert_eq!(rc, 0, "madvise: {}", std::io::Error::last_os_error());
    }

    /// Writes each page's first byte back to itself: every page is faulted in writable and
    /// dirty, so later writes through the map need no further page fault.
    pub fn prefault(&mut self) {
        let page = 4096;
        let mut off = 0;
        while off < self.len {
            // SAFETY: `off < len`, inside our live mapping; volatile so the write is not elided.
            unsafe {
                let p = self.addr.add(off);
                p.write_volatile(p.read_volatile());
            }
            off += page;
        }
    }

    /// Copies `bytes` into the mapping at `offset`.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len, "write past the mapping");
        // SAFETY: the range is inside our live mapping (checked above); `bytes` is a separate
        // allocation, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.addr.add(offset), bytes.len());
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping we created, exactly once.
        let rc = unsafe { libc::munmap(self.addr.cast(), self.len) };
        assert_eq!(rc, 0, "munmap");
    }
}
