//! The rule model: types, states, identifiers and their validation.
//!
//! Values and spellings follow Santa (`SNTCommonEnums.h`, `SNTRule.mm`) because they are stored in
//! its database and written in its JSON exports: a rule written by Santa must mean the same here.

use std::fmt;

/// Longest identifier echoed back inside an error message. Identifiers come from operators' files
/// and sync servers; an error must not carry megabytes of them into a log line.
const ERROR_IDENTIFIER_CHARS_MAX: usize = 96;

/// Declares a field-less enum whose discriminants are the values Santa stores, each with Santa's
/// spelling, and gives it `ALL` (every variant, in declaration order), `from_repr` (a stored value
/// back to its variant) and the spelling function named in the header, so that the list of
/// variants is written once.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ident, $(#[$nmeta:meta])* fn $spelling:ident -> $sty:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:expr, )+
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $value, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// The variant whose discriminant is `value`, if any.
            #[inline]
            pub fn from_repr(value: $repr) -> Option<$name> {
                match value {
                    $( $value => Some($name::$variant), )+
                    _ => None,
                }
            }

            $(#[$nmeta])*
            pub fn $spelling(self) -> $sty {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }
    };
}

stored_enum! {
/// The identifier kind a rule matches on. The discriminants are Santa's database values, which are
/// also its precedence: a lower value wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleType: u16,
    /// The spelling in Santa's JSON (`rule_type`) and on `santactl`'s command line.
    fn santa_name -> &'static str {
    /// The code directory hash of a signed Mach-O (20 bytes).
    CdHash = 500 => "CDHASH",
    /// The SHA-256 of the file's contents.
    Binary = 1000 => "BINARY",
    /// `TEAMID:signing-id` or `platform:signing-id`.
    SigningId = 2000 => "SIGNINGID",
    /// The SHA-256 of the leaf signing certificate.
    Certificate = 3000 => "CERTIFICATE",
    /// The Apple developer Team ID (10 upper-case alphanumerics).
    TeamId = 4000 => "TEAMID",
}
}

impl RuleType {
    /// The value stored in the `type` column.
    pub fn db_value(self) -> i64 {
        self as u16 as i64
    }

    /// The rule type for a `type` column value, if it is one Santa defines.
    pub fn from_db_value(value: i64) -> Option<RuleType> {
        u16::try_from(value).ok().and_then(RuleType::from_repr)
    }

    /// Parses Santa's spelling, ignoring ASCII case (Santa upper-cases the value before comparing).
    pub fn from_santa_name(name: &str) -> Option<RuleType> {
        RuleType::ALL
            .into_iter()
            .find(|t| t.santa_name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for RuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.santa_name())
    }
}

stored_enum! {
/// What a stored rule says. Discriminants are Santa's `SNTRuleState` database values.
///
/// Removal (Santa's state 4) is not a stored state; it is [`RuleChange::Remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleState: u8,
    /// Santa's JSON `policy` spelling, for states that `santactl rule --import` accepts.
    /// `None` for states Santa never exports in importable form (transitive, CEL v2, seatbelt).
    fn policy_name -> Option<&'static str> {
    /// Allow execution.
    Allow = 1 => Some("ALLOWLIST"),
    /// Deny execution and tell the user.
    Block = 2 => Some("BLOCKLIST"),
    /// Deny execution without telling the user (neither GUI nor TTY).
    SilentBlock = 3 => Some("SILENT_BLOCKLIST"),
    /// Allow, and treat the process as a compiler whose outputs get transitive rules (when
    /// transitive rules are enabled; otherwise a plain allow).
    AllowCompiler = 5 => Some("ALLOWLIST_COMPILER"),
    /// Allow: a rule written locally for a file a compiler produced. Ranks below every configured
    /// rule type and only counts while transitive rules are enabled.
    AllowTransitive = 6 => None,
    /// Allow, approved locally by the user for this binary (Binary rules only).
    AllowLocalBinary = 7 => Some("ALLOWLIST_LOCAL_BINARY"),
    /// Allow, approved locally by the user for this Signing ID (Signing ID rules only).
    AllowLocalSigningId = 8 => Some("ALLOWLIST_LOCAL_SIGNINGID"),
    /// A CEL expression decides (Santa v1 CEL). Kept so Santa databases carry over; this crate
    /// cannot evaluate CEL, see the pipeline for what such a match does.
    Cel = 9 => Some("CEL"),
    /// A CEL v2 expression decides. Kept for fidelity; not evaluated here.
    CelV2 = 10 => None,
    /// Allowed only inside a seatbelt sandbox (macOS). Not enforceable here: denies, uncached.
    Seatbelt = 11 => None,
    /// Deny without a GUI notification (TTY message still shown).
    SilentBlockGui = 12 => Some("SILENT_GUI_BLOCKLIST"),
    /// Deny without a TTY message (GUI notification still shown).
    SilentBlockTty = 13 => Some("SILENT_TTY_BLOCKLIST"),
}
}

impl RuleState {
    /// Santa's database value for "remove" (never stored; appears only in change lists).
    pub const REMOVE_DB_VALUE: i64 = 4;

    /// The value stored in the `state` column.
    pub fn db_value(self) -> i64 {
        self as u8 as i64
    }

    /// The state for a `state` column value, if it is a storable Santa state.
    pub fn from_db_value(value: i64) -> Option<RuleState> {
        u8::try_from(value).ok().and_then(RuleState::from_repr)
    }

    /// True for the plain allow state: the only state whose addition never needs a cache flush.
    pub fn is_plain_allow(self) -> bool {
        self == RuleState::Allow
    }

    /// True for every deny state.
    pub fn is_block(self) -> bool {
        matches!(
            self,
            RuleState::Block
                | RuleState::SilentBlock
                | RuleState::SilentBlockGui
                | RuleState::SilentBlockTty
        )
    }
}

/// A policy string from Santa's JSON: a storable state, or a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulePolicy {
    /// Store a rule with this state.
    Set(RuleState),
    /// Delete the rule with this identifier and type.
    Remove,
}

impl RulePolicy {
    /// Parses a `policy` value, ignoring ASCII case and accepting Santa's deprecated spellings
    /// (`WHITELIST`, `BLACKLIST`, ...).
    pub fn from_santa_name(name: &str) -> Option<RulePolicy> {
        let upper = name.to_ascii_uppercase();
        Some(match upper.as_str() {
            "ALLOWLIST" | "WHITELIST" => RulePolicy::Set(RuleState::Allow),
            "ALLOWLIST_COMPILER" | "WHITELIST_COMPILER" => {
                RulePolicy::Set(RuleState::AllowCompiler)
            }
            "ALLOWLIST_LOCAL_BINARY" => RulePolicy::Set(RuleState::AllowLocalBinary),
            "ALLOWLIST_LOCAL_SIGNINGID" => RulePolicy::Set(RuleState::AllowLocalSigningId),
            "BLOCKLIST" | "BLACKLIST" => RulePolicy::Set(RuleState::Block),
            "SILENT_BLOCKLIST" | "SILENT_BLACKLIST" => RulePolicy::Set(RuleState::SilentBlock),
            "SILENT_GUI_BLOCKLIST" => RulePolicy::Set(RuleState::SilentBlockGui),
            "SILENT_TTY_BLOCKLIST" => RulePolicy::Set(RuleState::SilentBlockTty),
            "CEL" => RulePolicy::Set(RuleState::Cel),
            "REMOVE" => RulePolicy::Remove,
            _ => return None,
        })
    }
}

/// The identities rules match on are the signing crate's: a file's or leaf certificate's SHA-256
/// (Binary and Certificate rules), the CDHash (20 bytes, as the kernel reports it), the Team ID
/// and the Signing ID.
pub use santa_signing::{
    CdHash, SIGNING_ID_BYTES_MAX, Sha256, SigningId, SigningIdPrefix, TEAM_ID_LEN, TeamId,
};

/// A validated, normalised rule identifier; its variant is the rule's type.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RuleIdentifier {
    /// A CDHash rule.
    CdHash(CdHash),
    /// A Binary (file SHA-256) rule.
    Binary(Sha256),
    /// A Signing ID rule.
    SigningId(SigningId),
    /// A Certificate (leaf certificate SHA-256) rule.
    Certificate(Sha256),
    /// A Team ID rule.
    TeamId(TeamId),
}

/// A rule identifier that is not valid for its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierError {
    /// The type the identifier was given for.
    pub rule_type: RuleType,
    /// The identifier as given (shortened if very long).
    pub identifier: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} identifier {:?}: {}",
            self.rule_type, self.identifier, self.problem
        )
    }
}

impl std::error::Error for IdentifierError {}

/// Shortens text for an error message, on a character boundary.
pub(crate) fn shorten(text: &str) -> String {
    if text.chars().count() <= ERROR_IDENTIFIER_CHARS_MAX {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(ERROR_IDENTIFIER_CHARS_MAX).collect();
    s.push('…');
    s
}

impl RuleIdentifier {
    /// Validates and normalises `text` as an identifier of `rule_type`, as Santa's `SNTRule` does:
    /// SHA-256 and certificate 64 hex (lower-cased), CDHash 40 hex (lower-cased), Team ID ten
    /// alphanumerics (upper-cased), Signing ID `TEAMID:ident` or `platform:ident`.
    pub fn parse(rule_type: RuleType, text: &str) -> Result<RuleIdentifier, IdentifierError> {
        let err = |problem| IdentifierError {
            rule_type,
            identifier: shorten(text),
            problem,
        };
        if text.is_empty() {
            return Err(err("the identifier is empty"));
        }
        let sha256 = || Sha256::from_hex(text).ok_or("expected 64 hexadecimal characters");
        match rule_type {
            RuleType::CdHash => CdHash::from_hex(text)
                .map(RuleIdentifier::CdHash)
                .ok_or("expected 40 hexadecimal characters"),
            RuleType::Binary => sha256().map(RuleIdentifier::Binary),
            RuleType::Certificate => sha256().map(RuleIdentifier::Certificate),
            RuleType::TeamId => TeamId::parse_rule(text)
                .map(RuleIdentifier::TeamId)
                .ok_or("expected 10 letters or digits"),
            RuleType::SigningId => SigningId::parse(text).map(RuleIdentifier::SigningId),
        }
        .map_err(err)
    }

    /// The rule type this identifier belongs to.
    pub fn rule_type(&self) -> RuleType {
        match self {
            RuleIdentifier::CdHash(_) => RuleType::CdHash,
            RuleIdentifier::Binary(_) => RuleType::Binary,
            RuleIdentifier::SigningId(_) => RuleType::SigningId,
            RuleIdentifier::Certificate(_) => RuleType::Certificate,
            RuleIdentifier::TeamId(_) => RuleType::TeamId,
        }
    }
}

impl fmt::Display for RuleIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleIdentifier::CdHash(h) => h.fmt(f),
            RuleIdentifier::Binary(h) | RuleIdentifier::Certificate(h) => h.fmt(f),
            RuleIdentifier::SigningId(s) => s.fmt(f),
            RuleIdentifier::TeamId(t) => t.fmt(f),
        }
    }
}

impl fmt::Debug for RuleIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rule_type(), self)
    }
}

/// A stored execution rule with every column Santa keeps, so that a database or export written by
/// Santa round-trips without loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the rule matches (its variant is the rule type).
    pub identifier: RuleIdentifier,
    /// What the rule says.
    pub state: RuleState,
    /// Message shown to the user when this rule blocks.
    pub custom_msg: Option<String>,
    /// URL offered to the user when this rule blocks.
    pub custom_url: Option<String>,
    /// Label of the button in the block dialog (Santa's `event_detail_button_text`).
    pub event_detail_button_text: Option<String>,
    /// Free text for operators; not used in decisions.
    pub comment: Option<String>,
    /// The CEL expression of a CEL rule.
    pub cel_expr: Option<String>,
    /// The seatbelt policy of a Seatbelt rule.
    pub seatbelt_policy: Option<String>,
    /// The sync server's rule id (0 when none).
    pub rule_id: i64,
    /// Seconds since 2001-01-01 (Apple's reference date) when a transitive rule was last used; 0
    /// for other rules. Santa culls old transitive rules by it.
    pub timestamp: i64,
}

impl Rule {
    /// A rule with no custom text.
    pub fn new(identifier: RuleIdentifier, state: RuleState) -> Rule {
        Rule {
            identifier,
            state,
            custom_msg: None,
            custom_url: None,
            event_detail_button_text: None,
            comment: None,
            cel_expr: None,
            seatbelt_policy: None,
            rule_id: 0,
            timestamp: 0,
        }
    }

    /// The rule type.
    pub fn rule_type(&self) -> RuleType {
        self.identifier.rule_type()
    }

    /// What every way in (santactl, an import, a sync, `StaticRules`) checks beyond the
    /// identifier: a CEL rule has an expression, and it compiles (Santa refuses such a rule when
    /// it is added).
    pub fn check(&self) -> Result<(), crate::cel::CelError> {
        match (self.state, self.cel_expr.as_deref()) {
            (RuleState::Cel, Some(expr)) => crate::cel::check(expr),
            (RuleState::Cel, None) => Err(crate::cel::CelError(
                "policy CEL needs a non-empty cel_expr".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// One change to the rule set, as `santactl rule` or an import sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleChange {
    /// Insert the rule, replacing any with the same identifier and type.
    Upsert(Rule),
    /// Delete the rule with this identifier (and its type).
    Remove(RuleIdentifier),
}

impl RuleChange {
    /// The identifier the change is about.
    pub fn identifier(&self) -> &RuleIdentifier {
        match self {
            RuleChange::Upsert(r) => &r.identifier,
            RuleChange::Remove(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_values_are_santas_and_ordered_by_precedence() {
        let values: Vec<i64> = RuleType::ALL.iter().map(|t| t.db_value()).collect();
        assert_eq!(values, [500, 1000, 2000, 3000, 4000]);
        for t in RuleType::ALL {
            assert_eq!(RuleType::from_db_value(t.db_value()), Some(t));
            assert_eq!(
                RuleType::from_santa_name(&t.santa_name().to_lowercase()),
                Some(t)
            );
        }
        assert_eq!(RuleType::from_db_value(1), None);
    }

    #[test]
    fn state_values_round_trip_and_remove_is_not_stored() {
        for s in RuleState::ALL {
            assert_eq!(RuleState::from_db_value(s.db_value()), Some(s));
            assert_eq!(RuleState::from_repr(s as u8), Some(s));
        }
        assert_eq!(RuleState::from_repr(4), None);
        assert_eq!(RuleState::from_db_value(RuleState::REMOVE_DB_VALUE), None);
        assert_eq!(RuleState::from_db_value(0), None);
        assert_eq!(
            RulePolicy::from_santa_name("whitelist"),
            Some(RulePolicy::Set(RuleState::Allow))
        );
        assert_eq!(
            RulePolicy::from_santa_name("REMOVE"),
            Some(RulePolicy::Remove)
        );
        assert_eq!(RulePolicy::from_santa_name("ALLOW"), None);
        for s in RuleState::ALL {
            if let Some(name) = s.policy_name() {
                assert_eq!(RulePolicy::from_santa_name(name), Some(RulePolicy::Set(s)));
            }
        }
    }

    #[test]
    fn hashes_are_lowercased_and_length_checked() {
        let upper = "84DE9C61777CA36B13228E2446D53E966096E78DB7A72C632B5C185B2FFE68A6";
        let id = RuleIdentifier::parse(RuleType::Binary, upper).unwrap();
        assert_eq!(id.to_string(), upper.to_lowercase());
        let cert = RuleIdentifier::parse(RuleType::Certificate, upper).unwrap();
        assert_eq!(cert.rule_type(), RuleType::Certificate);
        assert!(RuleIdentifier::parse(RuleType::Binary, &upper[1..]).is_err());
        let bad = upper.replace('8', "g");
        let e = RuleIdentifier::parse(RuleType::Binary, &bad).unwrap_err();
        assert!(e.to_string().contains(&bad), "{e}");
        assert!(e.to_string().contains("64 hexadecimal"), "{e}");
        let cd = "DEADBEEFDEADBEEFDEADBEEFDEADBEEFDEADBEEF";
        assert_eq!(
            RuleIdentifier::parse(RuleType::CdHash, cd)
                .unwrap()
                .to_string(),
            cd.to_lowercase()
        );
        assert!(RuleIdentifier::parse(RuleType::CdHash, upper).is_err());
        // A multi-byte character must not be taken for two hex digits.
        let uni = format!("é{}", &upper[2..]);
        assert!(RuleIdentifier::parse(RuleType::Binary, &uni).is_err());
    }

    #[test]
    fn team_ids_are_uppercased_in_rules_but_exact_in_signatures() {
        let t = RuleIdentifier::parse(RuleType::TeamId, "eqhxz8m8av").unwrap();
        assert_eq!(t.to_string(), "EQHXZ8M8AV");
        assert!(RuleIdentifier::parse(RuleType::TeamId, "EQHXZ8M8A").is_err());
        assert!(RuleIdentifier::parse(RuleType::TeamId, "EQHXZ8M8A-").is_err());
        assert!(TeamId::from_signature(b"EQHXZ8M8AV").is_some());
        assert!(TeamId::from_signature(b"eqhxz8m8av").is_none());
        assert!(TeamId::from_signature(b"EQHXZ8M8AVX").is_none());
    }

    #[test]
    fn signing_ids_normalise_prefix_and_keep_ident() {
        let s = RuleIdentifier::parse(RuleType::SigningId, "eqhxz8m8av:com.Google.Chrome").unwrap();
        assert_eq!(s.to_string(), "EQHXZ8M8AV:com.Google.Chrome");
        let p = RuleIdentifier::parse(RuleType::SigningId, "PLATFORM:com.apple.ls").unwrap();
        assert_eq!(p.to_string(), "platform:com.apple.ls");
        let c = RuleIdentifier::parse(RuleType::SigningId, "platform:a:b:c").unwrap();
        let RuleIdentifier::SigningId(c) = c else {
            panic!("wrong variant")
        };
        assert_eq!(c.ident(), "a:b:c");
        assert_eq!(c.prefix(), SigningIdPrefix::Platform);
        for bad in ["com.apple.ls", "platform:", "SHORT:x", ":x", "ABCDEFGHI!:x"] {
            let e = RuleIdentifier::parse(RuleType::SigningId, bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let long = format!("platform:{}", "x".repeat(SIGNING_ID_BYTES_MAX + 1));
        let e = RuleIdentifier::parse(RuleType::SigningId, &long).unwrap_err();
        assert!(e.identifier.len() < 200, "error must not echo megabytes");
    }
}
