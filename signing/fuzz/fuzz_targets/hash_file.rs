//! Hashing through both paths (mmap and read) agrees with a one-shot digest for any content.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use santa_signing::{HashLimits, Sha256, hash_file};

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile_in_tmp() else { return };
    if f.write_all(data).is_err() {
        return;
    }
    let want = Sha256::digest(data);
    for threshold in [1, u64::MAX] {
        let limits = HashLimits {
            hash_bytes_max: 1 << 20,
            mmap_threshold_bytes: threshold,
        };
        let h = hash_file(&f, &limits).expect("regular file under the limit");
        assert_eq!(h.sha256, want);
        assert!(!h.changed);
    }
});

fn tempfile_in_tmp() -> std::io::Result<std::fs::File> {
    let path = std::env::temp_dir().join(format!("santa-hash-fuzz-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    Ok(f)
}
