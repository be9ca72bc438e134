//! [`ConfigError`]: every way a config can be refused, each naming the file, and the key where
//! there is one. Deserialization errors arrive with the key path that `serde_path_to_error`
//! tracked (`WatchPaths[1].Scope`); an unknown key also gets the nearest known key of its table.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A configuration error; its message names the file and the key.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (or is larger than [`crate::CONFIG_FILE_BYTES_MAX`]).
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file is not valid TOML.
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key santad does not know (a typo would otherwise be ignored silently).
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with its table (e.g. `WatchPaths[1].Paht`).
        key: String,
        /// The known key of the same table closest in spelling, if one is close (`Path`).
        did_you_mean: Option<String>,
    },
    /// A key has a value of the wrong type or out of bounds.
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            ConfigError::Syntax { path, message } => {
                write!(f, "{}: invalid TOML: {message}", path.display())
            }
            ConfigError::UnknownKey {
                path,
                key,
                did_you_mean,
            } => {
                write!(f, "{}: unknown key `{key}`", path.display())?;
                match did_you_mean {
                    Some(known) => write!(f, "; did you mean `{known}`?"),
                    None => Ok(()),
                }
            }
            ConfigError::Value { path, key, message } => {
                write!(f, "{}: key `{key}`: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ConfigError {
    /// A deserialization error of the file at `path`, at the key path serde tracked.
    pub(crate) fn from_keys(
        path: &Path,
        error: serde_path_to_error::Error<toml::de::Error>,
    ) -> ConfigError {
        let key = error.path().to_string();
        let error = error.into_inner();
        // No key at all: the document as a whole (cannot happen for a file that parsed as a
        // table, but the TOML parser's own message is then the best there is).
        if key == "." {
            return ConfigError::Syntax {
                path: path.to_path_buf(),
                message: error.to_string().trim().to_owned(),
            };
        }
        match unknown_field(error.message()) {
            Some((name, known)) => ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key,
                did_you_mean: nearest(name, &known).map(str::to_owned),
            },
            None => ConfigError::Value {
                path: path.to_path_buf(),
                key,
                message: error.message().to_owned(),
            },
        }
    }
}

/// The unknown key and its table's known keys, from serde's `deny_unknown_fields` message:
/// ``unknown field `Paht`, expected `Path` or `Scope` `` (serde_core's `Error::unknown_field`,
/// unchanged since serde 1.0; a test below pins it). `None` for any other message.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let (name, rest) = message.strip_prefix("unknown field `")?.split_once('`')?;
    // "expected `A`", "`A` or `B`", "one of `A`, `B`, ...", or "there are no fields".
    let known = rest.split('`').skip(1).step_by(2).collect();
    Some((name, known))
}

/// The known key closest to `name`, ignoring case, if it is within a third of the name's length
/// in edits (a transposition is one): `FailCosed` → `FailClosed`, `section` → none.
fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let name = name.to_ascii_lowercase();
    let limit = (name.len() / 3).max(1);
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&name, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_unknown_field_messages_are_read_in_each_form() {
        use serde::de::Error as _;
        for (expected, known) in [
            (&["Path", "Scope"][..], vec!["Path", "Scope"]),
            (&["Users"][..], vec!["Users"]),
            (&["A", "B", "C"][..], vec!["A", "B", "C"]),
            (&[][..], vec![]),
        ] {
            // The message serde itself writes, so a change of its wording fails here.
            let e = toml::de::Error::unknown_field("Paht", expected);
            assert_eq!(
                unknown_field(e.message()),
                Some(("Paht", known)),
                "{}",
                e.message()
            );
        }
        assert_eq!(unknown_field("invalid type: integer `1`"), None);
    }

    #[test]
    fn nearest_key_is_suggested_only_when_close() {
        let known = ["ClientMode", "FailClosed", "DeadlineMs", "Users"];
        assert_eq!(nearest("FailCosed", &known), Some("FailClosed"));
        assert_eq!(nearest("clientmode", &known), Some("ClientMode"));
        assert_eq!(nearest("Uesrs", &known), Some("Users"));
        assert_eq!(nearest("Deadline", &known), Some("DeadlineMs"));
        assert_eq!(nearest("section", &known), None);
        assert_eq!(nearest("X", &known), None);
    }
}
