//! The identities of a file and its signature: digests (each printed as lowercase hex), the
//! Team ID and the Signing ID, as rules match them.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Writes `bytes` as lowercase hex.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Lowercase hex of `bytes`, for the few places that need an owned string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

macro_rules! digest_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length of the digest in bytes.
            pub const LEN: usize = $len;

            /// The raw digest bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses a hex string of exactly `2 * LEN` hex digits (either case).
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.as_bytes();
                if s.len() != 2 * $len {
                    return None;
                }
                let mut out = [0u8; $len];
                for (i, pair) in s.chunks_exact(2).enumerate() {
                    let hi = (pair[0] as char).to_digit(16)?;
                    let lo = (pair[1] as char).to_digit(16)?;
                    out[i] = u8::try_from(hi * 16 + lo).ok()?;
                }
                Some(Self(out))
            }

            /// Takes the first `LEN` bytes of a longer digest; `None` if it is shorter.
            pub fn from_prefix(bytes: &[u8]) -> Option<Self> {
                let head = bytes.get(..$len)?;
                let mut out = [0u8; $len];
                out.copy_from_slice(head);
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

digest_newtype!(
    /// SHA-256 of a file or certificate: the identity of Santa's BINARY and CERTIFICATE rules.
    Sha256,
    32
);
digest_newtype!(
    /// SHA-1 of a file or certificate (printed by `santactl fileinfo`, never used for decisions).
    Sha1,
    20
);
digest_newtype!(
    /// CDHash: the first 20 bytes of the digest of the best CodeDirectory (Santa's CDHASH rules).
    CdHash,
    20
);

/// `bytes` digested by ring (which uses the CPU's SHA extensions where present) as an array of
/// the algorithm's output length.
fn ring_digest<const N: usize>(
    algorithm: &'static ring::digest::Algorithm,
    bytes: &[u8],
) -> [u8; N] {
    let d = ring::digest::digest(algorithm, bytes);
    let mut out = [0u8; N];
    out.copy_from_slice(d.as_ref());
    out
}

impl Sha256 {
    /// SHA-256 of `bytes`.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(ring_digest(&ring::digest::SHA256, bytes))
    }
}

impl Sha1 {
    /// SHA-1 of `bytes`; only for display, never for a decision.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(ring_digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes))
    }
}

/// Longest Signing ID accepted (after the `TEAMID:` prefix). Santa sets no bound; real Signing IDs
/// are bundle-identifier-like strings well under 256 bytes, and each one is held in memory by the
/// snapshot, so a bound keeps a hostile rule file from inflating it.
pub const SIGNING_ID_BYTES_MAX: usize = 4096;

/// Length of an Apple Team ID (Santa: `kExpectedTeamIDLength`).
pub const TEAM_ID_LEN: usize = 10;

/// An Apple Team ID: exactly ten ASCII upper-case letters or digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TeamId([u8; TEAM_ID_LEN]);

impl TeamId {
    /// Fills empty slots of the rules snapshot's tables; never handed out (not a valid Team ID).
    #[doc(hidden)]
    pub const SLOT_FILLER: TeamId = TeamId([0; TEAM_ID_LEN]);

    /// Parses a Team ID written in a rule: ten ASCII alphanumerics, upper-cased (as Santa does).
    pub fn parse_rule(text: &str) -> Option<TeamId> {
        let bytes = text.as_bytes();
        if bytes.len() != TEAM_ID_LEN || !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut out = [0u8; TEAM_ID_LEN];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = b.to_ascii_uppercase();
        }
        Some(TeamId(out))
    }

    /// Takes a Team ID exactly as a code signature states it. No case folding: Santa compares the
    /// signature's Team ID byte for byte, so a lower-case one never matches an (upper-case) rule.
    /// `None` if it is not ten upper-case letters or digits; such a file has no usable Team ID.
    pub fn from_signature(bytes: &[u8]) -> Option<TeamId> {
        let arr: [u8; TEAM_ID_LEN] = bytes.try_into().ok()?;
        arr.iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            .then_some(TeamId(arr))
    }

    /// The ten bytes.
    pub fn as_bytes(&self) -> &[u8; TEAM_ID_LEN] {
        &self.0
    }

    /// The Team ID as text (always ASCII by construction).
    pub fn as_str(&self) -> &str {
        // Constructors admit only ASCII alphanumerics, so this cannot fail; the fallback keeps the
        // function total without a panic path.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeamId({})", self.as_str())
    }
}

/// Whose Signing ID it is: a developer team, or Apple's platform binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningIdPrefix {
    /// `platform:` — Apple platform binaries, which have no Team ID.
    Platform,
    /// `TEAMID:` — a developer team.
    Team(TeamId),
}

impl SigningIdPrefix {
    /// The prefix text without the colon.
    pub fn as_str(&self) -> &str {
        match self {
            SigningIdPrefix::Platform => "platform",
            SigningIdPrefix::Team(t) => t.as_str(),
        }
    }
}

/// A normalised Signing ID rule identifier: `TEAMID:ident` or `platform:ident`.
///
/// Held as one shared string so that decisions can carry the matched identifier by reference count
/// instead of by allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SigningId {
    text: Arc<str>,
    prefix: SigningIdPrefix,
}

impl SigningId {
    /// Parses and normalises as Santa does: the part before the first `:` is `platform` (any case,
    /// stored lower-case) or a Team ID (upper-cased); the rest, which may itself contain `:`, is
    /// the signing identifier, kept byte for byte and non-empty.
    pub fn parse(text: &str) -> Result<SigningId, &'static str> {
        let Some((team, ident)) = text.split_once(':') else {
            return Err("expected TEAMID:signing-id or platform:signing-id");
        };
        let prefix = if team.eq_ignore_ascii_case("platform") {
            SigningIdPrefix::Platform
        } else {
            match TeamId::parse_rule(team) {
                Some(t) => SigningIdPrefix::Team(t),
                None => {
                    return Err(
                        "the part before ':' must be \"platform\" or a Team ID of 10 letters or digits",
                    );
                }
            }
        };
        if ident.is_empty() {
            return Err("the signing identifier after ':' is empty");
        }
        if ident.len() > SIGNING_ID_BYTES_MAX {
            return Err("the signing identifier is longer than 4096 bytes");
        }
        Ok(SigningId::from_parts(prefix, ident))
    }

    /// Builds from an already-valid prefix and identifier.
    pub fn from_parts(prefix: SigningIdPrefix, ident: &str) -> SigningId {
        let mut s = String::with_capacity(prefix.as_str().len() + 1 + ident.len());
        s.push_str(prefix.as_str());
        s.push(':');
        s.push_str(ident);
        SigningId {
            text: Arc::from(s),
            prefix,
        }
    }

    /// Whose Signing ID.
    pub fn prefix(&self) -> SigningIdPrefix {
        self.prefix
    }

    /// The signing identifier after the prefix.
    pub fn ident(&self) -> &str {
        let skip = self.prefix.as_str().len() + 1;
        self.text.get(skip..).unwrap_or("")
    }

    /// The whole normalised identifier.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The shared string (cheap to clone into a decision).
    pub fn shared(&self) -> &Arc<str> {
        &self.text
    }
}

impl fmt::Display for SigningId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for SigningId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningId({})", self.text)
    }
}

impl Serialize for TeamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl SigningId {
    /// Santa's Signing ID of a signature (`SNTFileInfo`/`MOLCodesignChecker`): the Team ID
    /// prefix wins; a platform binary (CodeDirectory platform field set) without a team gets
    /// `platform:`; anything else has none.
    pub fn format(identifier: &str, team_id: Option<&TeamId>, platform: u8) -> Option<Self> {
        let prefix = match team_id {
            Some(team) => SigningIdPrefix::Team(*team),
            None if platform != 0 => SigningIdPrefix::Platform,
            None => return None,
        };
        Some(SigningId::from_parts(prefix, identifier))
    }
}

impl Serialize for SigningId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case() {
        let h = Sha256::digest(b"abc");
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256::from_hex(&h.to_string().to_uppercase()), Some(h));
        assert_eq!(Sha256::from_hex("zz"), None);
        assert_eq!(CdHash::from_prefix(&[1u8; 19]), None);
    }

    #[test]
    fn signing_id_format() {
        let team = TeamId::from_signature(b"ABCDE12345").unwrap();
        assert_eq!(
            SigningId::format("com.x", Some(&team), 0).map(|s| s.to_string()),
            Some("ABCDE12345:com.x".to_string())
        );
        assert_eq!(
            SigningId::format("ls", None, 2).map(|s| s.to_string()),
            Some("platform:ls".to_string())
        );
        assert_eq!(SigningId::format("x", None, 0), None);
    }
}
