//! The enums of `santa.sync.v1` (northpolesec/protos `sync/v1.proto`), with their proto numbers
//! and names.
//!
//! On the wire an enum is its name (protobuf JSON prints the first name declared for a number, so
//! `ALLOWLIST`, never its alias `WHITELIST`). Reading accepts a name — including the proto's
//! aliases, such as `WHITELIST` or `clean_all` — or a number, as protobuf's parser does. An
//! unrecognized name or number reads as the enum's zero value (`POLICY_UNKNOWN`, ...), which is
//! what Santa's parser does with unknown enum values when it ignores unknown fields: the caller
//! then treats the field as unset, and a rule with an unknown policy or type is dropped.

use super::lenient::{FromScalar, Lenient, Scalar, enum_from_scalar};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $(#[$zmeta:meta])* $zero:ident = 0 => $ztext:literal,
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal => $text:literal $(| $alias:literal)* ,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $(#[$zmeta])*
            #[default]
            $zero,
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[$name::$zero, $($name::$variant,)+];

            /// The proto number.
            pub fn number(self) -> i32 {
                match self {
                    $name::$zero => 0,
                    $( $name::$variant => $num, )+
                }
            }

            /// The proto name, as protobuf JSON prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $name::$zero => $ztext,
                    $( $name::$variant => $text, )+
                }
            }

            /// The value for a proto number, if the proto defines it.
            pub fn from_number(number: i64) -> Option<$name> {
                match number {
                    0 => Some($name::$zero),
                    $( $num => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The value for a proto name or one of its aliases (exact spelling, as protobuf).
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $ztext => Some($name::$zero),
                    $( $text $(| $alias)* => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl FromScalar for $name {
            const EXPECTED: &'static str = concat!("a ", stringify!($name), " name or number");

            fn from_scalar<E: de::Error>(scalar: Scalar) -> Result<Self, E> {
                enum_from_scalar(scalar, stringify!($name), $name::from_number, $name::from_name)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::deserialize_lenient(d)
            }
        }
    };
}

proto_enum! {
    /// `santa.sync.v1.ClientMode`: the host's operating mode.
    ClientMode {
        /// `UNKNOWN_CLIENT_MODE`: not set.
        Unknown = 0 => "UNKNOWN_CLIENT_MODE",
        /// Executions no rule decides are allowed.
        Monitor = 1 => "MONITOR",
        /// Executions no rule decides are blocked.
        Lockdown = 2 => "LOCKDOWN",
        /// Lockdown, but the user may approve an execution by authenticating (macOS Santa).
        Standalone = 3 => "STANDALONE",
    }
}

proto_enum! {
    /// `santa.sync.v1.SyncType`: how the downloaded rules replace the host's.
    SyncType {
        /// `SYNC_TYPE_UNSPECIFIED`: treated as `NORMAL`.
        Unspecified = 0 => "SYNC_TYPE_UNSPECIFIED",
        /// Apply the rules on top of the existing ones.
        Normal = 1 => "NORMAL" | "normal",
        /// Delete every non-transitive rule first.
        Clean = 2 => "CLEAN" | "clean",
        /// Delete every rule first.
        CleanAll = 3 => "CLEAN_ALL" | "clean_all",
        /// Delete the rules created in standalone mode first.
        CleanStandalone = 4 => "CLEAN_STANDALONE",
        /// Delete non-transitive execution rules first (file access rules stay).
        CleanRules = 5 => "CLEAN_RULES",
        /// Delete file access rules first (execution rules stay).
        CleanFileAccessRules = 6 => "CLEAN_FILE_ACCESS_RULES",
    }
}

proto_enum! {
    /// `santa.sync.v1.Policy`: what a rule does.
    Policy {
        /// `POLICY_UNKNOWN`: never valid; such a rule is dropped.
        Unknown = 0 => "POLICY_UNKNOWN",
        /// Allow.
        Allowlist = 1 => "ALLOWLIST" | "WHITELIST",
        /// Allow, and give the files this binary writes transitive allow rules.
        AllowlistCompiler = 2 => "ALLOWLIST_COMPILER" | "WHITELIST_COMPILER",
        /// Block.
        Blocklist = 3 => "BLOCKLIST" | "BLACKLIST",
        /// Block without GUI or TTY notification.
        SilentBlocklist = 4 => "SILENT_BLOCKLIST" | "SILENT_BLACKLIST",
        /// Remove the host's rule with this identifier and type.
        Remove = 5 => "REMOVE",
        /// A CEL expression decides.
        Cel = 6 => "CEL",
        /// Block without a GUI notification.
        SilentGuiBlocklist = 8 => "SILENT_GUI_BLOCKLIST",
        /// Block without a TTY message.
        SilentTtyBlocklist = 9 => "SILENT_TTY_BLOCKLIST",
    }
}

proto_enum! {
    /// `santa.sync.v1.RuleType`: what a rule's identifier is.
    RuleType {
        /// `RULETYPE_UNKNOWN`: never valid; such a rule is dropped.
        Unknown = 0 => "RULETYPE_UNKNOWN",
        /// The file's SHA-256.
        Binary = 1 => "BINARY",
        /// The leaf signing certificate's SHA-256.
        Certificate = 2 => "CERTIFICATE",
        /// The Apple Team ID.
        TeamId = 3 => "TEAMID",
        /// `TEAMID:signing-id` or `platform:signing-id`.
        SigningId = 4 => "SIGNINGID",
        /// The code directory hash.
        CdHash = 5 => "CDHASH",
    }
}

proto_enum! {
    /// `santa.sync.v1.Decision`: what Santa decided about an execution.
    Decision {
        /// `DECISION_UNKNOWN`.
        Unknown = 0 => "DECISION_UNKNOWN",
        /// Allowed: no rule matched, Monitor mode.
        AllowUnknown = 1 => "ALLOW_UNKNOWN",
        /// Allowed by a Binary rule.
        AllowBinary = 2 => "ALLOW_BINARY",
        /// Allowed by a Certificate rule.
        AllowCertificate = 3 => "ALLOW_CERTIFICATE",
        /// Allowed by a scope (`AllowedPathRegex`).
        AllowScope = 4 => "ALLOW_SCOPE",
        /// Allowed by a Team ID rule.
        AllowTeamId = 5 => "ALLOW_TEAMID",
        /// Allowed by a Signing ID rule.
        AllowSigningId = 6 => "ALLOW_SIGNINGID",
        /// Allowed by a CDHash rule.
        AllowCdHash = 7 => "ALLOW_CDHASH",
        /// Blocked: no rule matched, Lockdown mode.
        BlockUnknown = 8 => "BLOCK_UNKNOWN",
        /// Blocked by a Binary rule.
        BlockBinary = 9 => "BLOCK_BINARY",
        /// Blocked by a Certificate rule.
        BlockCertificate = 10 => "BLOCK_CERTIFICATE",
        /// Blocked by a scope (`BlockedPathRegex`).
        BlockScope = 11 => "BLOCK_SCOPE",
        /// Blocked by a Team ID rule.
        BlockTeamId = 12 => "BLOCK_TEAMID",
        /// Blocked by a Signing ID rule.
        BlockSigningId = 13 => "BLOCK_SIGNINGID",
        /// Blocked by a CDHash rule.
        BlockCdHash = 14 => "BLOCK_CDHASH",
        /// Not an execution: a binary of a bundle the server asked about.
        BundleBinary = 15 => "BUNDLE_BINARY",
        /// Blocked: the kernel's view of the binary disagreed with the one on disk.
        BlockBinaryMismatch = 18 => "BLOCK_BINARY_MISMATCH",
        /// Allowed as a platform binary with no rule matching.
        AllowPlatform = 19 => "ALLOW_PLATFORM",
    }
}

proto_enum! {
    /// `santa.sync.v1.SigningStatus`: the executing binary's code signature.
    SigningStatus {
        /// `SIGNING_STATUS_UNSPECIFIED`.
        Unspecified = 0 => "SIGNING_STATUS_UNSPECIFIED",
        /// Not signed.
        Unsigned = 1 => "SIGNING_STATUS_UNSIGNED",
        /// Signed, but the signature is invalid or could not be checked.
        Invalid = 2 => "SIGNING_STATUS_INVALID",
        /// Ad-hoc signed.
        Adhoc = 3 => "SIGNING_STATUS_ADHOC",
        /// Signed with a development certificate.
        Development = 4 => "SIGNING_STATUS_DEVELOPMENT",
        /// Signed with a production certificate.
        Production = 5 => "SIGNING_STATUS_PRODUCTION",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: for<'a> Deserialize<'a>>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn names_numbers_and_aliases_read_the_same_value() {
        assert_eq!(read::<Policy>(r#""BLOCKLIST""#), Policy::Blocklist);
        assert_eq!(read::<Policy>("3"), Policy::Blocklist);
        assert_eq!(read::<Policy>(r#""BLACKLIST""#), Policy::Blocklist);
        assert_eq!(read::<SyncType>(r#""clean_all""#), SyncType::CleanAll);
        assert_eq!(read::<ClientMode>("2.0"), ClientMode::Lockdown);
    }

    #[test]
    fn unknown_values_read_as_the_zero_value() {
        assert_eq!(read::<Policy>("7"), Policy::Unknown);
        assert_eq!(read::<Policy>(r#""SEATBELT""#), Policy::Unknown);
        assert_eq!(read::<RuleType>("-1"), RuleType::Unknown);
        assert_eq!(read::<RuleType>("18446744073709551615"), RuleType::Unknown);
        assert_eq!(read::<RuleType>("null"), RuleType::Unknown);
        // protobuf matches names exactly.
        assert_eq!(read::<ClientMode>(r#""lockdown""#), ClientMode::Unknown);
        assert!(serde_json::from_str::<ClientMode>("1.5").is_err());
        assert!(serde_json::from_str::<ClientMode>("true").is_err());
    }

    #[test]
    fn written_as_the_first_name_of_the_number() {
        let json = serde_json::to_string(&[Policy::Allowlist, Policy::SilentBlocklist]).unwrap();
        assert_eq!(json, r#"["ALLOWLIST","SILENT_BLOCKLIST"]"#);
    }

    #[test]
    fn numbers_and_names_round_trip() {
        for d in Decision::ALL {
            assert_eq!(Decision::from_number(d.number().into()), Some(*d));
            assert_eq!(Decision::from_name(d.name()), Some(*d));
        }
        assert_eq!(Decision::AllowPlatform.number(), 19);
        assert_eq!(Policy::SilentTtyBlocklist.number(), 9);
    }
}
