//! What the sync server last chose for this host, kept across restarts in `SyncStatePath`
//! (JSON, written atomically), and laid over the config file: as in Santa, where a value the
//! server set (its "sync state") wins over the configuration profile's.
//!
//! Santa keeps the same facts in its sync-state plist: the client mode, the path regexes, bundle
//! and transitive-rule switches, event upload switches, the event detail URL and text, the full
//! sync interval, and when the last full sync succeeded.

use crate::config::{ClientMode, Config};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// Largest sync-state file read: what the server sets is a few short strings; a larger file is
/// not ours.
const STATE_FILE_BYTES_MAX: u64 = 256 * 1024;

/// What the server set, field by field (`None`: the server never said; the config decides).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncState {
    /// The mode (Santa's `ClientMode` sync-state key).
    pub client_mode: Option<SyncedMode>,
    /// `AllowedPathRegex`; an empty string clears the config's.
    pub allowed_path_regex: Option<String>,
    /// `BlockedPathRegex`; an empty string clears the config's.
    pub blocked_path_regex: Option<String>,
    /// Bundle hashing and bundle events.
    pub enable_bundles: Option<bool>,
    /// Transitive rules.
    pub enable_transitive_rules: Option<bool>,
    /// `EnableAllEventUpload`.
    pub enable_all_event_upload: Option<bool>,
    /// `DisableUnknownEventUpload`.
    pub disable_unknown_event_upload: Option<bool>,
    /// `EventDetailURL`.
    pub event_detail_url: Option<String>,
    /// `EventDetailText`.
    pub event_detail_text: Option<String>,
    /// `FullSyncInterval`, seconds.
    pub full_sync_interval_secs: Option<u64>,
    /// When the last full sync succeeded (Unix seconds).
    pub last_full_sync_unix: Option<u64>,
    /// When the last sync that brought rules succeeded (Unix seconds).
    pub last_rule_sync_unix: Option<u64>,
    /// A clean sync asked for (`santactl sync --clean`/`--clean-all`) and not yet performed by a
    /// server: asked for again at every sync until one is (Santa's "Clean Sync Required").
    pub clean_sync_required: Option<CleanRequest>,
}

/// Which clean sync is asked for (CleanAll is the larger: it asks for more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CleanRequest {
    /// Every rule but transitive ones.
    Clean,
    /// Every rule.
    CleanAll,
}

impl SyncState {
    /// What a server set, forgotten: a clean sync starts its settings from nothing, as Santa's
    /// does; when and what the host asked for stay.
    pub fn forget_server_settings(&mut self) {
        *self = SyncState {
            last_full_sync_unix: self.last_full_sync_unix,
            last_rule_sync_unix: self.last_rule_sync_unix,
            clean_sync_required: self.clean_sync_required,
            ..SyncState::default()
        };
    }
}

/// The modes a server can set on santad (its Standalone is refused: santad has no such mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncedMode {
    /// Monitor.
    Monitor,
    /// Lockdown.
    Lockdown,
}

impl From<SyncedMode> for ClientMode {
    fn from(m: SyncedMode) -> ClientMode {
        match m {
            SyncedMode::Monitor => ClientMode::Monitor,
            SyncedMode::Lockdown => ClientMode::Lockdown,
        }
    }
}

/// Why the sync state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing the file.
    #[error("sync state {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a sync state.
    #[error("sync state {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl SyncState {
    /// Reads the state at `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<SyncState, StateError> {
        use std::io::Read;
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SyncState::default()),
            Err(e) => return Err(io(e)),
        };
        let mut text = Vec::new();
        file.take(STATE_FILE_BYTES_MAX + 1)
            .read_to_end(&mut text)
            .map_err(io)?;
        if text.len() as u64 > STATE_FILE_BYTES_MAX {
            return Err(StateError::Format {
                path: path.display().to_string(),
                message: format!("larger than {STATE_FILE_BYTES_MAX} bytes"),
            });
        }
        serde_json::from_slice(&text).map_err(|e| StateError::Format {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Writes the state to `path` atomically (a temporary file beside it, synced, renamed), mode
    /// 0644 like Santa's state, in a directory created if missing.
    pub fn store(&self, path: &Path) -> Result<(), StateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| StateError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let body = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        // A fresh file (never one someone else left there), then renamed over the old state.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// `config` with what the server set laid over it. A regex the server sent that does not
    /// compile was refused when it arrived ([`SyncState::accept_regex`]), so it is not here.
    pub fn overlay(&self, mut config: Config) -> Config {
        if let Some(mode) = self.client_mode {
            config.client_mode = mode.into();
        }
        let regex = |r: &Option<String>, base: &mut Option<String>| {
            if let Some(r) = r {
                *base = (!r.is_empty()).then(|| r.clone());
            }
        };
        regex(&self.allowed_path_regex, &mut config.allowed_path_regex);
        regex(&self.blocked_path_regex, &mut config.blocked_path_regex);
        for (value, slot) in [
            (self.enable_bundles, &mut config.enable_bundles),
            (
                self.enable_transitive_rules,
                &mut config.enable_transitive_rules,
            ),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        let sync = &mut config.sync;
        for (value, slot) in [
            (
                self.enable_all_event_upload,
                &mut sync.enable_all_event_upload,
            ),
            (
                self.disable_unknown_event_upload,
                &mut sync.disable_unknown_event_upload,
            ),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if let Some(secs) = self.full_sync_interval_secs {
            sync.full_sync_interval_secs = secs;
        }
        if let Some(url) = &self.event_detail_url {
            config.event_detail_url = (!url.is_empty()).then(|| url.clone());
        }
        if let Some(text) = &self.event_detail_text {
            config.event_detail_text = (!text.is_empty()).then(|| text.clone());
        }
        config
    }

    /// A path regex from the server, if it compiles and fits the config's bound; otherwise the
    /// current value stays, and why is logged.
    pub fn accept_regex(key: &str, value: &str) -> bool {
        if value.len() > crate::config::STRING_BYTES_MAX {
            log::warn!("sync: the server's {key} is longer than the config allows; ignored");
            return false;
        }
        match regex::Regex::new(value) {
            Ok(_) => true,
            Err(e) => {
                log::warn!("sync: the server's {key} does not compile ({e}); ignored");
                false
            }
        }
    }
}

/// The config file (or the embedded defaults) with the sync state at its `SyncStatePath` laid
/// over it: what santad runs on, at start and after each SIGHUP. A state that cannot be read is
/// logged and left out (the file's settings apply), never deleted.
pub fn effective(config: Config) -> Config {
    if config.sync.base_url.is_none() {
        return config;
    }
    match SyncState::load(&config.sync.sync_state_path) {
        Ok(state) => state.overlay(config),
        Err(e) => {
            log::error!("{e}; running on the configured settings");
            config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_settings_win_over_the_files_and_an_empty_regex_clears() {
        let config = Config {
            allowed_path_regex: Some("^/opt/".into()),
            blocked_path_regex: Some("^/tmp/".into()),
            ..Config::default()
        };
        let state = SyncState {
            client_mode: Some(SyncedMode::Lockdown),
            allowed_path_regex: Some(String::new()),
            enable_all_event_upload: Some(true),
            enable_bundles: Some(false),
            enable_transitive_rules: Some(true),
            full_sync_interval_secs: Some(120),
            ..SyncState::default()
        };
        let c = state.overlay(config);
        assert_eq!(c.client_mode, ClientMode::Lockdown);
        assert_eq!(c.allowed_path_regex, None);
        assert_eq!(c.blocked_path_regex.as_deref(), Some("^/tmp/"));
        assert!(c.sync.enable_all_event_upload);
        assert_eq!(c.sync.full_sync_interval_secs, 120);
        assert!(!c.enable_bundles && c.enable_transitive_rules);
    }

    #[test]
    fn the_state_survives_a_round_trip_and_a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sync-state.json");
        assert_eq!(SyncState::load(&path).unwrap(), SyncState::default());
        let state = SyncState {
            client_mode: Some(SyncedMode::Monitor),
            last_full_sync_unix: Some(1_700_000_000),
            ..SyncState::default()
        };
        state.store(&path).unwrap();
        assert_eq!(SyncState::load(&path).unwrap(), state);
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(matches!(
            SyncState::load(&path),
            Err(StateError::Format { .. })
        ));
        assert!(!SyncState::accept_regex("AllowedPathRegex", "(unclosed"));
        assert!(SyncState::accept_regex("AllowedPathRegex", "^/usr/"));
    }
}
