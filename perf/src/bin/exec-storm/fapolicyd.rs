//! fapolicyd in exec-storm's three configurations: every file on the private image trusted
//! (size and SHA-256 in the trust file), anything else denied. The safe start (backup and
//! restore of its configuration, `watch_fs = ext2`, foreground under `timeout`) is
//! santa_perf::fapolicyd's.

use super::{Config, Listener};
use santa_perf::fapolicyd::{RULES_TRUSTED_ONLY, Setup};
use std::path::{Path, PathBuf};

/// Starts fapolicyd for `config`, trusting every file on `watched`.
pub fn start(config: Config, watched: &Path, scratch: &Path) -> Result<Listener, String> {
    let (permissive, integrity) = match config {
        Config::FapolicydPermissive => (true, "none"),
        Config::FapolicydEnforcing => (false, "none"),
        _ => (false, "sha256"),
    };
    let mut trust = Vec::new();
    for entry in std::fs::read_dir(watched).map_err(|e| e.to_string())? {
        let path: PathBuf = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            trust.push(path);
        }
    }
    let setup = Setup {
        permissive,
        integrity,
        rules: RULES_TRUSTED_ONLY.to_string(),
        trust,
        // The harness's watched mount is santa_testkit's ext2 image.
        watch_fs: "ext2",
    };
    santa_perf::fapolicyd::start(&setup, watched, scratch)
}
