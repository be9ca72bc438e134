use super::*;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

fn limits(threshold: u64) -> HashLimits {
    HashLimits {
        hash_bytes_max: 1 << 30,
        mmap_threshold_bytes: threshold,
    }
}

#[test]
fn mmap_and_read_agree_with_ring() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 3) as u8).collect();
    f.write_all(&data).unwrap();
    let want = Sha256::digest(&data);
    let a = hash_path(f.path(), &limits(1)).unwrap();
    let b = hash_path(f.path(), &limits(u64::MAX)).unwrap();
    assert_eq!(a.method, ReadMethod::Mmap);
    assert_eq!(b.method, ReadMethod::Read);
    assert_eq!(a.sha256, want);
    assert_eq!(b.sha256, want);
    assert!(!a.changed && !b.changed);
    assert_eq!(a.stamp.size_bytes, 200_000);
}

#[test]
fn streaming_agrees_with_mapping_for_any_buffer_size() {
    let content = pattern(3 * 4096 + 17, 21);
    let f = file_with(&content);
    let want = Sha256::digest(&content);
    for buffer_bytes in [1usize, 4096, 5000, 1 << 20] {
        let mut buffer = vec![0u8; buffer_bytes];
        let h = hash_file_streaming(f.as_file(), &limits(1), &mut buffer).unwrap();
        assert_eq!(h.sha256, want, "buffer {buffer_bytes}");
        assert_eq!(h.method, ReadMethod::Read);
        assert!(!h.changed);
        assert_eq!(
            h,
            FileHash {
                method: ReadMethod::Read,
                ..hash_file(f.as_file(), &limits(1)).unwrap()
            }
        );
    }
    let mut buffer = vec![0u8; 4096];
    let empty = tempfile::NamedTempFile::new().unwrap();
    let h = hash_file_streaming(empty.as_file(), &limits(1), &mut buffer).unwrap();
    assert_eq!(h.sha256, Sha256::digest(b""));
    assert!(!h.changed);
    assert!(matches!(
        hash_file_streaming(&File::open("/dev/null").unwrap(), &limits(1), &mut buffer),
        Err(HashError::NotRegular { .. })
    ));
}

#[test]
fn borrowed_fd_gives_the_same_hash() {
    use std::os::fd::AsFd;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"abc").unwrap();
    let h = hash_fd(f.as_file().as_fd(), &HashLimits::default()).unwrap();
    assert_eq!(h.sha256, Sha256::digest(b"abc"));
    // The caller's fd is still usable afterwards.
    assert_eq!(hash_file(f.as_file(), &HashLimits::default()).unwrap(), h);
}

#[test]
fn the_read_buffer_is_reused() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&[7u8; 1000]).unwrap();
    let buffer = Vec::with_capacity(4096);
    let ptr = buffer.as_ptr();
    let bytes = FileBytes::load_reusing(f.as_file(), &HashLimits::default(), buffer).unwrap();
    assert_eq!(&bytes[..], &[7u8; 1000][..]);
    let back = bytes.into_buffer();
    assert_eq!(back.as_ptr(), ptr, "same allocation handed back");
    assert!(back.capacity() >= 4096);
}

#[test]
fn empty_file_hashes_to_empty_digest() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let h = hash_path(f.path(), &HashLimits::default()).unwrap();
    assert_eq!(
        h.sha256.to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(h.method, ReadMethod::Read);
}

#[test]
fn refuses_directories_and_fifos() {
    let d = tempfile::tempdir().unwrap();
    match hash_path(d.path(), &HashLimits::default()) {
        Err(HashError::AtPath { source, .. }) => assert!(matches!(
            *source,
            HashError::NotRegular {
                kind: NodeKind::Directory
            }
        )),
        other => panic!("expected NotRegular, got {other:?}"),
    }
    let dev_null = File::open("/dev/null").unwrap();
    assert!(matches!(
        hash_file(&dev_null, &HashLimits::default()),
        Err(HashError::NotRegular {
            kind: NodeKind::CharDevice
        })
    ));
}

#[test]
fn refuses_files_over_the_limit() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&[0u8; 100]).unwrap();
    let l = HashLimits {
        hash_bytes_max: 99,
        mmap_threshold_bytes: 1,
    };
    match hash_file(f.as_file(), &l) {
        Err(HashError::TooLarge {
            size_bytes: 100,
            limit_bytes: 99,
        }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn a_write_after_load_is_reported_as_changed() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&[1u8; 4096]).unwrap();
    for threshold in [1, u64::MAX] {
        let file = File::open(f.path()).unwrap();
        let bytes = FileBytes::load(&file, &limits(threshold)).unwrap();
        assert!(bytes.unchanged(&file).unwrap());
        // ctime has nanosecond resolution on tmpfs/ext4 but may not tick between two
        // quick writes on a coarse clock; a size change is always visible.
        f.write_all(&[2u8; 10]).unwrap();
        f.flush().unwrap();
        assert!(!bytes.unchanged(&file).unwrap(), "threshold {threshold}");
    }
}

/// Deterministic non-zero content (xorshift), so zeros from the handler are told apart.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // `| 0x01..01`: no byte is zero.
        let w = (x | 0x0101_0101_0101_0101).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    v
}

fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content).unwrap();
    f.flush().unwrap();
    f
}

/// SHA-256 of `content[..kept]` followed by zeros up to `content.len()`: what a mapping of
/// `content` reads after the file was cut to `kept` (page-aligned) bytes.
fn sha256_cut(content: &[u8], kept: usize) -> Sha256 {
    let mut v = content[..kept].to_vec();
    v.resize(content.len(), 0);
    Sha256::digest(&v)
}

const PAGE: usize = 4096;

#[test]
fn a_file_truncated_under_its_mapping_hashes_as_changed_instead_of_killing_the_process() {
    // 64 MiB: sparse, with non-zero bytes at the start of every MiB, so the zeros the
    // handler maps in are visible in the hash.
    const LEN: u64 = 64 << 20;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    for mib in 0..64u64 {
        f.as_file().write_at(&[0xa5; 16], mib << 20).unwrap();
    }
    let file = File::open(f.path()).unwrap();
    let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
    assert_eq!(bytes.method(), ReadMethod::Mmap);
    let intact = bytes.sha256();
    assert!(!bytes.faulted());
    // Every page is now past the end: the first read faults.
    f.as_file().set_len(0).unwrap();
    let after = bytes.sha256();
    assert!(bytes.faulted());
    assert!(!bytes.unchanged(&file).unwrap());
    assert_ne!(after, intact);
    assert_eq!(after, Sha256::digest(&vec![0u8; LEN as usize]));
    drop(bytes);

    // The same through `hash_file`, with the file cut to half: the first half is read as it
    // is, the rest as zeros, and the result says changed.
    let content = pattern(8 << 20, 7);
    let f = file_with(&content);
    let file = File::open(f.path()).unwrap();
    let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
    f.as_file().set_len(4 << 20).unwrap();
    assert_eq!(bytes.sha256(), sha256_cut(&content, 4 << 20));
    assert!(!bytes.unchanged(&file).unwrap());
    drop(bytes);
    // Now nothing faults (the file is 4 MiB and stays so): unchanged, the real hash.
    let h = hash_file(&file, &HashLimits::default()).unwrap();
    assert_eq!(h.method, ReadMethod::Mmap);
    assert!(!h.changed);
    assert_eq!(h.sha256, Sha256::digest(&content[..4 << 20]));
}

#[test]
fn a_fault_reports_changed_even_when_the_stamp_matches() {
    let content = pattern(3 << 20, 11);
    let f = file_with(&content);
    let file = File::open(f.path()).unwrap();
    let mut bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
    f.as_file().set_len(PAGE as u64).unwrap();
    // Pretend the stamp was taken after the truncation: only the fault can tell now.
    bytes.stamp = stat_file(&file).unwrap().1;
    let _ = bytes.sha256();
    assert!(bytes.faulted());
    assert!(!bytes.unchanged(&file).unwrap());

    // The control: same stamp substitution, no fault, reported unchanged.
    let g = file_with(&content);
    let file = File::open(g.path()).unwrap();
    let mut bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
    bytes.stamp = stat_file(&file).unwrap().1;
    assert_eq!(bytes.sha256(), Sha256::digest(&content));
    assert!(!bytes.faulted());
    assert!(bytes.unchanged(&file).unwrap());
}

#[test]
fn a_truncation_racing_the_hash_from_another_thread_is_survived_and_reported() {
    let content = pattern(16 << 20, 3);
    for round in 0..4 {
        let f = file_with(&content);
        let file = File::open(f.path()).unwrap();
        let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
        assert_eq!(bytes.method(), ReadMethod::Mmap);
        let go = std::sync::Barrier::new(2);
        let cut = (round * 4) << 20; // 0, 4, 8, 12 MiB
        std::thread::scope(|s| {
            s.spawn(|| {
                go.wait();
                f.as_file().set_len(cut as u64).unwrap();
            });
            go.wait();
            std::hint::black_box(bytes.sha256());
        });
        // The truncation happened (the thread was joined): whatever the interleaving, the
        // bytes are not reported unchanged.
        assert!(!bytes.unchanged(&file).unwrap(), "round {round}");
    }
}

#[test]
fn many_threads_mapping_and_faulting_at_once_keep_their_faults_apart() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 8;
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let start = &start;
            s.spawn(move || {
                // Once, not per round: a thread that fails an assertion must not leave the
                // others waiting for it.
                start.wait();
                for r in 0..ROUNDS {
                    let len = (2 << 20) + ((t * ROUNDS + r) % 5) * 256 * PAGE;
                    let content = pattern(len, (t * 1000 + r) as u64);
                    let f = file_with(&content);
                    let file = File::open(f.path()).unwrap();
                    let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
                    assert_eq!(bytes.method(), ReadMethod::Mmap);
                    // A third keep their file, a third lose all of it, a third half.
                    let kept = match (t + r) % 3 {
                        0 => len,
                        1 => 0,
                        _ => (len / 2) / PAGE * PAGE,
                    };
                    if kept < len {
                        f.as_file().set_len(kept as u64).unwrap();
                    }
                    let sha = bytes.sha256();
                    let ctx = format!("thread {t} round {r} len {len} kept {kept}");
                    assert_eq!(sha, sha256_cut(&content, kept), "{ctx}");
                    assert_eq!(bytes.faulted(), kept < len, "{ctx}");
                    assert_eq!(bytes.unchanged(&file).unwrap(), kept == len, "{ctx}");
                }
            });
        }
    });
}

// --- Cases whose expected outcome is the death of the process: run in a child. ---

/// Set in a child process re-running one test of this binary.
const CHILD_ENV: &str = "SANTA_SIGNING_FILE_TEST_CHILD";
/// Printed by a child right before the action whose outcome the parent checks.
const CHILD_MARK: &str = "child: reached the fault";

fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the test `name` of this module again, alone, in a child process.
fn run_in_child(name: &str) -> Output {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, m)| m);
    Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::{name}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap()
}

/// Runs the test `name` in a child (see [`run_in_child`]), which must reach [`CHILD_MARK`];
/// returns how the child ended.
fn child_past_the_mark(name: &str) -> Output {
    let out = run_in_child(name);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(CHILD_MARK),
        "{out:?}"
    );
    out
}

/// Maps and hashes a file truncated underneath, so the crate's handler is installed and has
/// handled a fault of its own, before the foreign fault.
fn survive_an_own_fault() {
    let content = pattern(2 << 20, 5);
    let f = file_with(&content);
    let file = File::open(f.path()).unwrap();
    let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
    assert_eq!(bytes.method(), ReadMethod::Mmap);
    f.as_file().set_len(0).unwrap();
    assert_eq!(bytes.sha256(), sha256_cut(&content, 0));
    assert!(!bytes.unchanged(&file).unwrap());
}

/// The child's side of the SIGBUS-outside-the-registry cases: no core dump, `prepare` (the
/// SIGBUS disposition the case starts from), a fault of the crate's own survived, then a fault
/// outside every registered mapping, which must end the process one way or another.
fn fault_outside_the_registry_after(prepare: impl FnOnce()) -> ! {
    map::test_support::forbid_core_dumps();
    prepare();
    survive_an_own_fault();
    println!("{CHILD_MARK}");
    let b = map::test_support::fault_outside_registry();
    panic!("survived a SIGBUS outside the registry (read {b})");
}

#[test]
fn a_sigbus_outside_any_registered_mapping_still_kills() {
    if in_child() {
        fault_outside_the_registry_after(|| {});
    }
    let out = child_past_the_mark("a_sigbus_outside_any_registered_mapping_still_kills");
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
}

#[test]
fn a_sigbus_outside_any_registered_mapping_kills_with_no_previous_handler() {
    if in_child() {
        // Rust's runtime installed its own SIGBUS handler at startup; take it away so ours
        // finds SIG_DFL.
        fault_outside_the_registry_after(map::test_support::set_sigbus_default);
    }
    let out = child_past_the_mark(
        "a_sigbus_outside_any_registered_mapping_kills_with_no_previous_handler",
    );
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
}

#[test]
fn a_sigbus_outside_any_registered_mapping_goes_to_the_previous_handler() {
    if in_child() {
        // Our own fault must not reach the previous handler (it would exit).
        fault_outside_the_registry_after(map::test_support::install_exiting_handler);
    }
    let out =
        child_past_the_mark("a_sigbus_outside_any_registered_mapping_goes_to_the_previous_handler");
    assert_eq!(
        out.status.code(),
        Some(map::test_support::EXITING_HANDLER_STATUS),
        "{out:?}"
    );
}
#[cfg(target_os = "linux")]
#[test]
fn a_sent_sigbus_naming_a_mapped_address_is_not_taken_for_a_fault() {
    if in_child() {
        map::test_support::forbid_core_dumps();
        map::test_support::set_sigbus_default();
        let content = pattern(2 << 20, 9);
        let f = file_with(&content);
        let file = File::open(f.path()).unwrap();
        let bytes = FileBytes::load(&file, &HashLimits::default()).unwrap();
        assert_eq!(bytes.method(), ReadMethod::Mmap);
        println!("{CHILD_MARK}");
        map::test_support::send_forged_sigbus(bytes.as_ptr() as usize + PAGE);
        panic!(
            "survived a sent SIGBUS (faulted: {}, hash intact: {})",
            bytes.faulted(),
            bytes.sha256() == Sha256::digest(&content)
        );
    }
    let out = child_past_the_mark("a_sent_sigbus_naming_a_mapped_address_is_not_taken_for_a_fault");
    assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
}

#[test]
fn a_full_registry_falls_back_to_reading_and_slots_come_back() {
    if in_child() {
        let content = pattern(2 << 20, 13);
        let f = file_with(&content);
        let file = File::open(f.path()).unwrap();
        let load = || FileBytes::load(&file, &HashLimits::default()).unwrap();
        for pass in 0..2 {
            assert_eq!(map::test_support::live_slots(), 0, "pass {pass}");
            let mut held: Vec<FileBytes> = (0..map::REGISTRY_SLOTS).map(|_| load()).collect();
            assert!(held.iter().all(|b| b.method() == ReadMethod::Mmap));
            assert_eq!(map::test_support::live_slots(), map::REGISTRY_SLOTS);
            let extra = load();
            assert_eq!(extra.method(), ReadMethod::Read, "pass {pass}");
            assert_eq!(extra.sha256(), Sha256::digest(&content));
            // One slot given back is usable again.
            held.swap_remove(17);
            let again = load();
            assert_eq!(again.method(), ReadMethod::Mmap, "pass {pass}");
            assert_eq!(again.sha256(), Sha256::digest(&content));
            held.push(again);
            // Every slot, the last claimed included, still catches its own fault.
            let g = file_with(&content);
            let gfile = File::open(g.path()).unwrap();
            held.swap_remove(map::REGISTRY_SLOTS - 1);
            let last = FileBytes::load(&gfile, &HashLimits::default()).unwrap();
            assert_eq!(last.method(), ReadMethod::Mmap);
            g.as_file().set_len(0).unwrap();
            assert_eq!(last.sha256(), sha256_cut(&content, 0));
            assert!(last.faulted());
            assert!(held.iter().all(|b| !b.faulted()));
        }
        assert_eq!(map::test_support::live_slots(), 0);
        println!("{CHILD_MARK}");
        return;
    }
    let out = child_past_the_mark("a_full_registry_falls_back_to_reading_and_slots_come_back");
    assert!(out.status.success(), "{out:?}");
}
