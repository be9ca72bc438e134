//! A file's identities as the pipeline sees them, and Santa's filtering of them by signing status.
//!
//! The daemon fills a [`FileIdentity`] from its signing crate; this crate never parses binaries,
//! it only takes the signing crate's [`SigningStatus`] as the word for how a file is signed.

use crate::model::{CdHash, Sha256, SigningIdPrefix, TeamId};

/// How (and whether) a file is code-signed: the signing crate's status, the one definition
/// (its order, least to most trusted, is the order the filtering below relies on).
pub use santa_signing::SigningStatus;

/// Everything the policy needs to know about one executable, borrowed from the daemon's buffers.
#[derive(Clone, Copy, Debug)]
pub struct FileIdentity<'a> {
    /// SHA-256 of the file's contents.
    pub sha256: Sha256,
    /// CDHash; the daemon sets it only when the kernel strictly enforces it (Santa's
    /// `CdhashStrictlyEnforced`), otherwise the page hashes are not guaranteed to match.
    pub cdhash: Option<CdHash>,
    /// The raw signing identifier from the code directory (without any `TEAMID:` prefix).
    pub signing_id: Option<&'a str>,
    /// The Team ID from the signature ([`TeamId::from_signature`]).
    pub team_id: Option<TeamId>,
    /// SHA-256 of the leaf signing certificate.
    pub cert_sha256: Option<Sha256>,
    /// The signature's status; decides which of the identities above may match rules.
    pub signing_status: SigningStatus,
    /// The kernel marks it a platform (Apple OS) binary.
    pub is_platform_binary: bool,
    /// The path being executed, as bytes (paths need not be UTF-8).
    pub path: &'a [u8],
    /// The signature's CMS signing time, seconds since the epoch (CEL's `target.signing_time`).
    pub signing_time: Option<i64>,
    /// The signature's timestamp-authority time (CEL's `target.secure_signing_time`).
    pub secure_signing_time: Option<i64>,
}

impl<'a> FileIdentity<'a> {
    /// An unsigned file known only by its hash and path.
    pub fn unsigned(sha256: Sha256, path: &'a [u8]) -> FileIdentity<'a> {
        FileIdentity {
            sha256,
            cdhash: None,
            signing_id: None,
            team_id: None,
            cert_sha256: None,
            signing_status: SigningStatus::Unsigned,
            is_platform_binary: false,
            path,
            signing_time: None,
            secure_signing_time: None,
        }
    }

    /// The identifiers that may match rules, filtered by signing status as Santa does
    /// (`SNTRuleIdentifiers filterIdentifiers:forSigningStatus:`):
    ///
    /// - production: CDHash, SHA-256, Signing ID, certificate, Team ID;
    /// - development: CDHash, SHA-256, certificate (Team and Signing IDs are too easy to mint
    ///   with a development certificate);
    /// - ad-hoc: CDHash, SHA-256;
    /// - invalid or unsigned: SHA-256 only.
    ///
    /// The Signing ID is `TEAMID:ident` when the signature has a Team ID, `platform:ident` for a
    /// platform binary without one, and absent otherwise.
    pub fn rule_identifiers(&self) -> RuleIdentifiers<'a> {
        let mut ids = RuleIdentifiers {
            binary: Some(self.sha256),
            ..RuleIdentifiers::default()
        };
        let status = self.signing_status;
        if status >= SigningStatus::AdHoc {
            ids.cdhash = self.cdhash;
        }
        if status >= SigningStatus::Development {
            ids.certificate = self.cert_sha256;
        }
        if status == SigningStatus::Production {
            ids.team_id = self.team_id;
            ids.signing_id = self.signing_id.and_then(|ident| {
                let prefix = match self.team_id {
                    Some(t) => SigningIdPrefix::Team(t),
                    None if self.is_platform_binary => SigningIdPrefix::Platform,
                    None => return None,
                };
                (!ident.is_empty()).then_some(SigningIdRef { prefix, ident })
            });
        }
        ids
    }
}

/// A Signing ID to look up, in parts, so the lookup needs no formatted string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningIdRef<'a> {
    /// `platform` or the Team ID.
    pub prefix: SigningIdPrefix,
    /// The raw signing identifier.
    pub ident: &'a str,
}

/// The identifiers to look up for one file (after filtering). `None` means "not probed".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleIdentifiers<'a> {
    /// CDHash.
    pub cdhash: Option<CdHash>,
    /// File SHA-256.
    pub binary: Option<Sha256>,
    /// Signing ID.
    pub signing_id: Option<SigningIdRef<'a>>,
    /// Leaf certificate SHA-256.
    pub certificate: Option<Sha256>,
    /// Team ID.
    pub team_id: Option<TeamId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(status: SigningStatus, platform: bool, team: bool) -> FileIdentity<'static> {
        FileIdentity {
            sha256: Sha256([1; 32]),
            cdhash: Some(CdHash([2; 20])),
            signing_id: Some("com.example.tool"),
            team_id: team.then(|| TeamId::from_signature(b"ABCDE12345").unwrap()),
            cert_sha256: Some(Sha256([3; 32])),
            signing_status: status,
            is_platform_binary: platform,
            path: b"/bin/tool",
            signing_time: None,
            secure_signing_time: None,
        }
    }

    #[test]
    fn filtering_follows_signing_status() {
        let p = file(SigningStatus::Production, false, true).rule_identifiers();
        assert!(p.cdhash.is_some() && p.binary.is_some() && p.certificate.is_some());
        assert!(p.team_id.is_some());
        assert_eq!(
            p.signing_id.map(|s| s.prefix.as_str().to_owned()),
            Some("ABCDE12345".to_owned())
        );

        let d = file(SigningStatus::Development, false, true).rule_identifiers();
        assert!(d.cdhash.is_some() && d.binary.is_some() && d.certificate.is_some());
        assert!(d.team_id.is_none() && d.signing_id.is_none());

        let a = file(SigningStatus::AdHoc, false, true).rule_identifiers();
        assert!(a.cdhash.is_some() && a.binary.is_some());
        assert!(a.certificate.is_none() && a.team_id.is_none() && a.signing_id.is_none());

        for s in [SigningStatus::Invalid, SigningStatus::Unsigned] {
            let i = file(s, true, true).rule_identifiers();
            assert_eq!(
                i,
                RuleIdentifiers {
                    binary: Some(Sha256([1; 32])),
                    ..Default::default()
                }
            );
        }
    }

    #[test]
    fn signing_id_needs_team_or_platform() {
        let none = file(SigningStatus::Production, false, false).rule_identifiers();
        assert!(none.signing_id.is_none());
        let plat = file(SigningStatus::Production, true, false).rule_identifiers();
        assert_eq!(plat.signing_id.unwrap().prefix, SigningIdPrefix::Platform);
        // A team ID wins over the platform prefix.
        let both = file(SigningStatus::Production, true, true).rule_identifiers();
        assert!(matches!(
            both.signing_id.unwrap().prefix,
            SigningIdPrefix::Team(_)
        ));
    }
}
