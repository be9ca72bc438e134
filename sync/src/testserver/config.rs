//! The test server's configuration, in Moroz's TOML shape (`moroz/configs/global.toml`,
//! `santa/santa.go` `Config`): a `global.toml` for every machine, and `<machine_id>.toml` for one
//! machine, which replaces the global file entirely (as in Moroz). Moroz's keys, plus every other
//! key of a preflight answer (`sync_type`, `event_detail_url`, ...) and
//! `event_upload_bundle_binaries`, which Moroz lacks.

use crate::proto::{self, Policy, RuleType};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a valid configuration.
    #[error("{name}: {source}")]
    Parse {
        /// The file or the machine it is for.
        name: String,
        /// What the TOML parser said.
        #[source]
        source: toml::de::Error,
    },
}

/// One rule, as Moroz writes it.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `identifier`.
    pub identifier: String,
    /// `policy` (`ALLOWLIST`, `BLOCKLIST`, `REMOVE`, ... or a number).
    pub policy: Policy,
    /// `rule_type` (`BINARY`, `TEAMID`, ... or a number).
    pub rule_type: RuleType,
    /// `custom_msg`.
    #[serde(default)]
    pub custom_msg: String,
    /// `custom_url`.
    #[serde(default)]
    pub custom_url: String,
}

/// What the server tells one machine: the preflight answer, read from the file's top-level keys,
/// and the rules.
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MachineConfig {
    /// `machine_id` (Moroz keeps it in the file; unused).
    pub machine_id: Option<String>,
    /// The preflight answer, as it goes on the wire. Its keys are Moroz's (`client_mode`,
    /// `batch_size`, `full_sync_interval`, `enable_bundles`, `enable_transitive_rules`,
    /// `enable_all_event_upload`, `clean_sync`, `allowed_path_regex`, `blocked_path_regex`), and
    /// any other name [`proto::PreflightResponse`] reads (`sync_type`, `event_detail_url`,
    /// `disable_unknown_event_upload`, the deprecated keys, ...), with its leniency.
    #[serde(flatten)]
    pub preflight: proto::PreflightResponse,
    /// Bundle hashes every EventUpload answer asks binaries for.
    pub event_upload_bundle_binaries: Vec<String>,
    /// `[[rules]]`.
    pub rules: Vec<RuleConfig>,
}

impl MachineConfig {
    /// Parses one TOML file's text.
    pub fn from_toml(name: &str, text: &str) -> Result<MachineConfig, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            name: name.to_owned(),
            source,
        })
    }

    /// A copy of the preflight answer (the `preflight` field).
    pub fn preflight(&self) -> proto::PreflightResponse {
        self.preflight.clone()
    }

    /// The rules as they go on the wire.
    pub fn wire_rules(&self) -> Vec<proto::Rule> {
        self.rules
            .iter()
            .map(|r| proto::Rule {
                identifier: r.identifier.clone(),
                policy: r.policy,
                rule_type: r.rule_type,
                custom_msg: r.custom_msg.clone(),
                custom_url: r.custom_url.clone(),
                ..Default::default()
            })
            .collect()
    }
}

/// The global configuration and the per-machine ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerConfig {
    /// `global.toml`.
    pub global: MachineConfig,
    /// `<machine_id>.toml`, by machine ID.
    pub machines: HashMap<String, MachineConfig>,
}

impl ServerConfig {
    /// A configuration from the text of `global.toml`.
    pub fn from_global_toml(text: &str) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            global: MachineConfig::from_toml("global.toml", text)?,
            machines: HashMap::new(),
        })
    }

    /// Adds (or replaces) one machine's configuration.
    pub fn with_machine(mut self, machine_id: &str, text: &str) -> Result<Self, ConfigError> {
        let config = MachineConfig::from_toml(machine_id, text)?;
        self.machines.insert(machine_id.to_owned(), config);
        Ok(self)
    }

    /// Reads a Moroz config folder: `global.toml` (optional) and every other `*.toml` as the
    /// machine named by its file stem.
    pub fn from_dir(dir: &Path) -> Result<ServerConfig, ConfigError> {
        let read_error = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Read { path, source }
        };
        let mut config = ServerConfig::default();
        for entry in std::fs::read_dir(dir).map_err(read_error(dir))? {
            let path = entry.map_err(read_error(dir))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(read_error(&path))?;
            let machine = MachineConfig::from_toml(&path.display().to_string(), &text)?;
            if stem == "global" {
                config.global = machine;
            } else {
                config.machines.insert(stem.to_owned(), machine);
            }
        }
        Ok(config)
    }

    /// What one machine is told: its own file if it has one, else the global one.
    pub fn for_machine(&self, machine_id: &str) -> &MachineConfig {
        self.machines.get(machine_id).unwrap_or(&self.global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn morozs_own_example_config_reads() {
        // The keys of moroz/configs/global.toml.
        let config = ServerConfig::from_global_toml(
            r#"
client_mode = "MONITOR"
batch_size = 100
enable_all_event_upload = true
enable_bundles = false
enable_transitive_rules = true
clean_sync = true
full_sync_interval = 600

[[rules]]
rule_type = "BINARY"
policy = "BLOCKLIST"
identifier = "2dc104631939b4bdf5d6bccab76e166e37fe5e1605340cf68dab919df58b8eda"
custom_msg = "blocklist firefox"
"#,
        )
        .unwrap()
        .with_machine("m1", "client_mode = \"LOCKDOWN\"")
        .unwrap();
        assert_eq!(config.global.rules[0].policy, Policy::Blocklist);
        assert_eq!(
            config.for_machine("m1").preflight.client_mode,
            proto::ClientMode::Lockdown
        );
        assert!(config.for_machine("m1").rules.is_empty(), "replaces global");
        assert_eq!(config.for_machine("other").preflight.batch_size, 100);
        assert!(ServerConfig::from_global_toml("clinet_mode = 1").is_err());
    }
}
