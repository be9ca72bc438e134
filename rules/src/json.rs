//! Santa's rule import/export format (`santactl rule --import` / `--export`):
//!
//! ```json
//! {"rules": [{"identifier": "…", "policy": "BLOCKLIST", "rule_type": "BINARY",
//!             "custom_msg": "…", "custom_url": "…", "comment": "…"}]}
//! ```
//!
//! Parsing follows Santa's `SNTRule initWithDictionary:`: keys are case-insensitive, `policy` and
//! `rule_type` values too; `sha256` stands in for a missing `identifier`; empty or non-string
//! optional fields count as absent. Every entry must be valid or the whole import is refused,
//! with the entry's index and identifier in the message.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{
    IdentifierError, Rule, RuleChange, RuleIdentifier, RulePolicy, RuleType, shorten,
};

/// Largest import accepted. 256 MiB holds over a million rules in Santa's pretty-printed export
/// format; anything bigger is a mistake, and parsing it would hold several times its size in
/// memory.
pub const IMPORT_BYTES_MAX: usize = 256 << 20;

/// Most rules in one import (the snapshot's own bound).
pub const IMPORT_RULES_MAX: usize = crate::snapshot::SNAPSHOT_RULES_MAX;

/// A rules file could not be imported.
#[derive(Debug)]
pub enum JsonError {
    /// The file could not be read or written.
    Io(io::Error),
    /// Larger than [`IMPORT_BYTES_MAX`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// Not valid JSON.
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        detail: String,
    },
    /// The top level is not an object with a `rules` array.
    NoRulesArray,
    /// More than [`IMPORT_RULES_MAX`] rules.
    TooManyRules {
        /// How many there were.
        count: usize,
    },
    /// A rule entry is incomplete or uses an unknown value.
    InvalidRule {
        /// Its 0-based position in `rules`.
        index: usize,
        /// Its identifier, when it had one.
        identifier: Option<String>,
        /// What is wrong.
        problem: String,
    },
    /// A rule's identifier is not valid for its type.
    BadIdentifier {
        /// Its 0-based position in `rules`.
        index: usize,
        /// The validation error (names the identifier and type).
        source: IdentifierError,
    },
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Io(e) => e.fmt(f),
            JsonError::TooLarge { bytes } => write!(
                f,
                "the rules file is {bytes} bytes; at most {IMPORT_BYTES_MAX} are accepted"
            ),
            JsonError::Syntax {
                line,
                column,
                detail,
            } => write!(f, "invalid JSON at line {line}, column {column}: {detail}"),
            JsonError::NoRulesArray => {
                f.write_str("expected a JSON object with a \"rules\" array at the top level")
            }
            JsonError::TooManyRules { count } => write!(
                f,
                "{count} rules; at most {IMPORT_RULES_MAX} are accepted in one import"
            ),
            JsonError::InvalidRule {
                index,
                identifier: Some(id),
                problem,
            } => write!(f, "rule #{index} ({id:?}): {problem}"),
            JsonError::InvalidRule {
                index,
                identifier: None,
                problem,
            } => write!(f, "rule #{index}: {problem}"),
            JsonError::BadIdentifier { index, source } => write!(f, "rule #{index}: {source}"),
        }
    }
}

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JsonError::Io(e) => Some(e),
            JsonError::BadIdentifier { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A rules file failed; names the file.
#[derive(Debug)]
pub struct JsonFileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub error: JsonError,
}

impl fmt::Display for JsonFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for JsonFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

fn optional_text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The keys Santa reads from a rule, found case-insensitively without copying the entry.
#[derive(Default)]
struct Fields<'a> {
    identifier: Option<&'a Value>,
    sha256: Option<&'a Value>,
    policy: Option<&'a Value>,
    rule_type: Option<&'a Value>,
    custom_msg: Option<&'a Value>,
    custom_url: Option<&'a Value>,
    button: Option<&'a Value>,
    comment: Option<&'a Value>,
    cel_expr: Option<&'a Value>,
}

impl<'a> Fields<'a> {
    fn of(obj: &'a Map<String, Value>) -> Fields<'a> {
        let mut f = Fields::default();
        for (k, v) in obj {
            let slot = match k.to_ascii_lowercase().as_str() {
                "identifier" => &mut f.identifier,
                "sha256" => &mut f.sha256,
                "policy" => &mut f.policy,
                "rule_type" => &mut f.rule_type,
                "custom_msg" => &mut f.custom_msg,
                "custom_url" => &mut f.custom_url,
                "event_detail_button_label" => &mut f.button,
                "comment" => &mut f.comment,
                "cel_expr" => &mut f.cel_expr,
                _ => continue,
            };
            *slot = Some(v);
        }
        f
    }
}

fn parse_entry(index: usize, entry: &Value) -> Result<RuleChange, JsonError> {
    let Value::Object(raw) = entry else {
        return Err(JsonError::InvalidRule {
            index,
            identifier: None,
            problem: "expected an object".into(),
        });
    };
    // Santa lower-cases keys before reading them.
    let fields = Fields::of(raw);
    let identifier = match (fields.identifier, fields.sha256) {
        (Some(Value::String(s)), _) if !s.is_empty() => s.as_str(),
        (_, Some(Value::String(s))) if !s.is_empty() => s.as_str(),
        _ => {
            return Err(JsonError::InvalidRule {
                index,
                identifier: None,
                problem: "missing or empty \"identifier\"".into(),
            });
        }
    };
    let invalid = |problem: String| JsonError::InvalidRule {
        index,
        identifier: Some(shorten(identifier)),
        problem,
    };
    let policy = match fields.policy {
        Some(Value::String(p)) => RulePolicy::from_santa_name(p)
            .ok_or_else(|| invalid(format!("unknown policy {:?}", shorten(p))))?,
        _ => return Err(invalid("missing \"policy\"".into())),
    };
    let rule_type = match fields.rule_type {
        Some(Value::String(t)) => RuleType::from_santa_name(t)
            .ok_or_else(|| invalid(format!("unknown rule_type {:?}", shorten(t))))?,
        _ => return Err(invalid("missing \"rule_type\"".into())),
    };
    let id = RuleIdentifier::parse(rule_type, identifier)
        .map_err(|source| JsonError::BadIdentifier { index, source })?;
    let state = match policy {
        RulePolicy::Remove => return Ok(RuleChange::Remove(id)),
        RulePolicy::Set(s) => s,
    };
    let cel_expr = optional_text(fields.cel_expr);
    if state == crate::model::RuleState::Cel && cel_expr.is_none() {
        return Err(invalid("policy CEL needs a non-empty \"cel_expr\"".into()));
    }
    let rule = Rule {
        identifier: id,
        state,
        custom_msg: optional_text(fields.custom_msg),
        custom_url: optional_text(fields.custom_url),
        event_detail_button_text: optional_text(fields.button),
        comment: optional_text(fields.comment),
        cel_expr,
        seatbelt_policy: None,
        rule_id: 0,
        timestamp: 0,
    };
    rule.check().map_err(|e| invalid(e.to_string()))?;
    Ok(RuleChange::Upsert(rule))
}

/// Parses one rule of Santa's shape (`identifier`, `policy`, `rule_type`, `custom_msg`,
/// `custom_url`, ...) that must be stored, not removed: a `StaticRules` entry in the
/// configuration. `index` names it in errors.
pub fn parse_rule_object(index: usize, entry: &Value) -> Result<Rule, JsonError> {
    match parse_entry(index, entry)? {
        RuleChange::Upsert(rule) => Ok(rule),
        RuleChange::Remove(id) => Err(JsonError::InvalidRule {
            index,
            identifier: Some(shorten(&id.to_string())),
            problem: "policy REMOVE is not a rule".into(),
        }),
    }
}

/// Parses Santa's JSON rules format into changes to apply.
pub fn parse_rules_json(bytes: &[u8]) -> Result<Vec<RuleChange>, JsonError> {
    if bytes.len() > IMPORT_BYTES_MAX {
        return Err(JsonError::TooLarge {
            bytes: bytes.len() as u64,
        });
    }
    let root: Value = serde_json::from_slice(bytes).map_err(|e| JsonError::Syntax {
        line: e.line(),
        column: e.column(),
        detail: e.to_string(),
    })?;
    let Some(Value::Array(entries)) = root.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("rules"))
            .map(|(_, v)| v)
    }) else {
        return Err(JsonError::NoRulesArray);
    };
    if entries.len() > IMPORT_RULES_MAX {
        return Err(JsonError::TooManyRules {
            count: entries.len(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| parse_entry(i, e))
        .collect()
}

/// Reads and parses a rules file, refusing files over [`IMPORT_BYTES_MAX`] before reading them.
pub fn read_rules_file(path: &Path) -> Result<Vec<RuleChange>, JsonFileError> {
    let fail = |error| JsonFileError {
        path: path.to_owned(),
        error,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(JsonError::Io(e)))?
        .len();
    if len > IMPORT_BYTES_MAX as u64 {
        return Err(fail(JsonError::TooLarge { bytes: len }));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(JsonError::Io(e)))?;
    parse_rules_json(&bytes).map_err(fail)
}

/// What an export wrote and what it left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Rules written.
    pub exported: usize,
    /// Transitive rules left out (Santa omits them: they are local, not policy).
    pub skipped_transitive: usize,
    /// Rules whose state has no importable policy string (CEL v2, seatbelt), left out.
    pub skipped_unexportable: usize,
}

#[derive(Serialize)]
struct ExportRule<'a> {
    identifier: String,
    policy: &'static str,
    rule_type: &'static str,
    custom_msg: &'a str,
    custom_url: &'a str,
    event_detail_button_label: &'a str,
    comment: &'a str,
    cel_expr: &'a str,
}

#[derive(Serialize)]
struct ExportFile<'a> {
    rules: Vec<ExportRule<'a>>,
}

/// Writes rules in Santa's export format (pretty-printed, absent texts as `""`).
pub fn export_rules_json(rules: &[Rule]) -> (String, ExportSummary) {
    let mut summary = ExportSummary::default();
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        if r.state == crate::model::RuleState::AllowTransitive {
            summary.skipped_transitive += 1;
            continue;
        }
        let Some(policy) = r.state.policy_name() else {
            summary.skipped_unexportable += 1;
            continue;
        };
        out.push(ExportRule {
            identifier: r.identifier.to_string(),
            policy,
            rule_type: r.rule_type().santa_name(),
            custom_msg: r.custom_msg.as_deref().unwrap_or(""),
            custom_url: r.custom_url.as_deref().unwrap_or(""),
            event_detail_button_label: r.event_detail_button_text.as_deref().unwrap_or(""),
            comment: r.comment.as_deref().unwrap_or(""),
            cel_expr: r.cel_expr.as_deref().unwrap_or(""),
        });
    }
    summary.exported = out.len();
    // Serialising plain strings and a Vec cannot fail; the fallback keeps this total.
    let text = serde_json::to_string_pretty(&ExportFile { rules: out })
        .unwrap_or_else(|_| String::from("{\"rules\":[]}"));
    (text, summary)
}

/// Exports to a file, written beside it and renamed into place so a crash never leaves half a file.
pub fn write_rules_file(path: &Path, rules: &[Rule]) -> Result<ExportSummary, JsonFileError> {
    let fail = |e| JsonFileError {
        path: path.to_owned(),
        error: JsonError::Io(e),
    };
    let (text, summary) = export_rules_json(rules);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text.as_bytes()).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RuleState;

    #[test]
    fn santas_help_example_parses() {
        let text = br#"{"rules": [{"policy": "BLOCKLIST",
            "identifier": "84de9c61777ca36b13228e2446d53e966096e78db7a72c632b5c185b2ffe68a6",
            "rule_type": "binary", "custom_url": "", "custom_msg": "/bin/ls block for demo"}]}"#;
        let changes = parse_rules_json(text).unwrap();
        let [RuleChange::Upsert(r)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(r.state, RuleState::Block);
        assert_eq!(r.custom_url, None, "empty strings are absent");
        assert_eq!(r.custom_msg.as_deref(), Some("/bin/ls block for demo"));
    }

    #[test]
    fn keys_and_values_are_case_insensitive_and_sha256_is_accepted() {
        let text = br#"{"rules":[{"SHA256":"AA00000000000000000000000000000000000000000000000000000000000000",
            "Policy":"silent_blacklist","RULE_TYPE":"Binary"}]}"#;
        let changes = parse_rules_json(text).unwrap();
        let [RuleChange::Upsert(r)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(r.state, RuleState::SilentBlock);
        assert!(r.identifier.to_string().starts_with("aa00"));
    }

    #[test]
    fn remove_becomes_a_removal() {
        let text =
            br#"{"rules":[{"identifier":"ABCDE12345","policy":"REMOVE","rule_type":"TEAMID"}]}"#;
        assert!(matches!(
            parse_rules_json(text).unwrap().as_slice(),
            [RuleChange::Remove(RuleIdentifier::TeamId(_))]
        ));
    }

    #[test]
    fn errors_name_the_entry() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"rules\": [", "invalid JSON at line 1"),
            (b"[]", "\"rules\" array"),
            (b"{\"rules\": {}}", "\"rules\" array"),
            (b"{\"rules\": [1]}", "rule #0: expected an object"),
            (b"{\"rules\": [{\"policy\":\"ALLOWLIST\",\"rule_type\":\"BINARY\"}]}", "missing or empty \"identifier\""),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"rule_type\":\"TEAMID\"}]}",
                "rule #0 (\"ABCDE12345\"): missing \"policy\"",
            ),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"policy\":\"ALLOW\",\"rule_type\":\"TEAMID\"}]}",
                "unknown policy \"ALLOW\"",
            ),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"policy\":\"ALLOWLIST\"}]}",
                "missing \"rule_type\"",
            ),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"policy\":\"ALLOWLIST\",\"rule_type\":\"TEAM\"}]}",
                "unknown rule_type \"TEAM\"",
            ),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"policy\":\"ALLOWLIST\",\"rule_type\":\"TEAMID\"},\
                   {\"identifier\":\"xyz\",\"policy\":\"ALLOWLIST\",\"rule_type\":\"BINARY\"}]}",
                "rule #1: invalid BINARY identifier \"xyz\"",
            ),
            (
                b"{\"rules\": [{\"identifier\":\"ABCDE12345\",\"policy\":\"CEL\",\"rule_type\":\"TEAMID\"}]}",
                "needs a non-empty \"cel_expr\"",
            ),
        ];
        for (input, expected) in cases {
            let e = parse_rules_json(input).unwrap_err().to_string();
            assert!(
                e.contains(expected),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn export_skips_transitive_and_writes_empty_strings() {
        let mut a = Rule::new(
            RuleIdentifier::parse(RuleType::CdHash, &"ab".repeat(20)).unwrap(),
            RuleState::Block,
        );
        a.comment = Some("c".into());
        let t = Rule::new(
            RuleIdentifier::parse(RuleType::Binary, &"cd".repeat(32)).unwrap(),
            RuleState::AllowTransitive,
        );
        let s = Rule::new(
            RuleIdentifier::parse(RuleType::Binary, &"ef".repeat(32)).unwrap(),
            RuleState::Seatbelt,
        );
        let (text, summary) = export_rules_json(&[a, t, s]);
        assert_eq!(
            summary,
            ExportSummary {
                exported: 1,
                skipped_transitive: 1,
                skipped_unexportable: 1
            }
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        let r = &v["rules"][0];
        assert_eq!(r["rule_type"], "CDHASH");
        assert_eq!(r["policy"], "BLOCKLIST");
        assert_eq!(r["custom_msg"], "");
        assert_eq!(r["comment"], "c");
    }
}
