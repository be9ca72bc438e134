//! What identifies a file to the caches: `(dev, ino)`, checked against `(ctime, size)`.
//!
//! The one definition of both: the signing crate returns them with every hash (the stamp taken
//! before reading, re-checked after), the platforms fill them from the kernel's event.

use std::fs::Metadata;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::MetadataExt;

/// The identity of a file on this host while it exists: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FileKey {
    /// `st_dev` of the file.
    pub dev: u64,
    /// `st_ino` of the file.
    pub ino: u64,
}

/// What must still hold for a cached decision about a [`FileKey`] to apply: a write to the file
/// changes its ctime (and usually its size), so a stale entry is never used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FileStamp {
    /// `st_ctime` in nanoseconds since the epoch: any write or metadata change moves it.
    pub ctime_ns: i64,
    /// `st_size` in bytes.
    pub size_bytes: u64,
}

impl FileKey {
    /// The key of the file `meta` describes (`fstat`).
    pub fn of_metadata(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

impl FileStamp {
    /// The stamp of the file `meta` describes (`fstat`).
    pub fn of_metadata(meta: &Metadata) -> Self {
        Self {
            ctime_ns: meta
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.ctime_nsec()),
            size_bytes: meta.size(),
        }
    }
}

/// Builds [`KeyHasher`]s with a per-process random seed, so an attacker who controls inode
/// numbers (by creating files) cannot aim collisions at one shard or bucket chain.
#[derive(Debug, Clone, Copy)]
pub struct KeyHashBuilder {
    seed: u64,
}

impl KeyHashBuilder {
    /// A builder seeded from the standard library's per-process random keys.
    pub fn random() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5a17_u64);
        Self { seed }
    }

    /// A builder with a fixed seed (tests, reproducible benchmarks).
    pub fn with_seed(seed: u64) -> Self {
        Self { seed }
    }

    /// The 64-bit hash of a key, as the caches and shard selection use it.
    #[inline]
    pub fn hash_key(&self, key: &FileKey) -> u64 {
        let mut h = self.build_hasher();
        h.write_u64(key.dev);
        h.write_u64(key.ino);
        h.finish()
    }
}

impl BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;
    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed }
    }
}

/// A folded-multiply hasher for fixed-size integer keys: two multiplications per key, where
/// SipHash (the std default) costs ~20 ns on the hit path.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    state: u64,
}

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX: u64 = 0xa076_1d64_78bd_642f;

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.state = folded_multiply(self.state ^ value, MULTIPLIER);
    }

    #[inline]
    fn finish(&self) -> u64 {
        folded_multiply(self.state, MIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn neighbouring_inodes_spread_over_shards() {
        let builder = KeyHashBuilder::with_seed(7);
        let shards = 64u64;
        let mut counts = vec![0u32; shards as usize];
        for ino in 0..64_000u64 {
            let h = builder.hash_key(&FileKey { dev: 2049, ino });
            counts[((h >> 20) % shards) as usize] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            *min > 800 && *max < 1_200,
            "shard spread too uneven: {min}..{max}"
        );
    }

    #[test]
    fn distinct_keys_rarely_collide() {
        let builder = KeyHashBuilder::random();
        let hashes: HashSet<u64> = (0..100_000u64)
            .map(|i| builder.hash_key(&FileKey { dev: i % 7, ino: i }))
            .collect();
        assert_eq!(hashes.len(), 100_000);
    }
}
