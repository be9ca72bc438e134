//! Newtypes for the digests that identify a file, each printed as lowercase hex.

use std::fmt;

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

/// A Team ID: the ten-character identifier Apple assigns to a developer account.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct TeamId(pub String);

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Santa Signing ID: `TEAMID:identifier`, or `platform:identifier` for Apple platform binaries.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct SigningId(pub String);

impl SigningId {
    /// Santa's format: the team prefix wins; platform binaries without a team get `platform:`;
    /// anything else has no Signing ID.
    pub fn format(identifier: &str, team_id: Option<&TeamId>, platform: u8) -> Option<Self> {
        match team_id {
            Some(team) => Some(Self(format!("{team}:{identifier}"))),
            None if platform != 0 => Some(Self(format!("platform:{identifier}"))),
            None => None,
        }
    }
}

impl fmt::Display for SigningId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        let team = TeamId("ABCDE12345".into());
        assert_eq!(
            SigningId::format("com.x", Some(&team), 0).map(|s| s.0),
            Some("ABCDE12345:com.x".to_string())
        );
        assert_eq!(
            SigningId::format("ls", None, 2).map(|s| s.0),
            Some("platform:ls".to_string())
        );
        assert_eq!(SigningId::format("x", None, 0), None);
    }
}
