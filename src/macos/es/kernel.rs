//! What the kernel vouches for: the code-signing flags of a process and Santa's rules turning
//! them (and the process's identifiers) into a signing status and the identities rules may match.

use super::ProcessView;
use santa_rules as rules;

/// Code-signing flags of `es_process_t.codesigning_flags` (XNU `kern/cs_blobs.h`).
pub mod cs {
    /// The signature is valid (no invalid page has been loaded).
    pub const CS_VALID: u32 = 0x0000_0001;
    /// Ad-hoc signed (no certificate).
    pub const CS_ADHOC: u32 = 0x0000_0002;
    /// The kernel refuses to load invalid pages.
    pub const CS_HARD: u32 = 0x0000_0100;
    /// The kernel kills the process if it goes invalid.
    pub const CS_KILL: u32 = 0x0000_0200;
    /// The kernel killed the process for invalidity.
    pub const CS_KILLED: u32 = 0x0100_0000;
    /// The process has a signature (it may have gone invalid).
    pub const CS_SIGNED: u32 = 0x2000_0000;
    /// Signed with a development certificate.
    pub const CS_DEV_CODE: u32 = 0x4000_0000;
}

/// `CPU_TYPE_ARM64` (`mach/machine.h`: `CPU_TYPE_ARM | CPU_ARCH_ABI64`).
pub const CPU_TYPE_ARM64: i32 = 0x0100_000c;

/// Santa's `CdhashStrictlyEnforced`: the kernel refuses or kills on any page that does not
/// match its code directory slot, so the reported CDHash binds to what actually runs.
pub fn cdhash_strictly_enforced(flags: u32) -> bool {
    flags & cs::CS_VALID != 0 && flags & (cs::CS_HARD | cs::CS_KILL) != 0
}

/// Santa's `KernelWillKillForCodeSigning`: already killed, or native arm64 code with `CS_KILL`
/// that is not valid (arm64 code must be signed; x86_64 may run unsigned, also under Rosetta).
pub fn kernel_will_kill(flags: u32, image_cputype: Option<i32>) -> bool {
    flags & cs::CS_KILLED != 0
        || (image_cputype == Some(CPU_TYPE_ARM64)
            && flags & cs::CS_KILL != 0
            && flags & cs::CS_VALID == 0)
}

/// Santa's signing status from the kernel's flags (SNTPolicyProcessor's status callback).
pub fn signing_status(flags: u32, image_cputype: Option<i32>) -> rules::SigningStatus {
    if kernel_will_kill(flags, image_cputype) {
        rules::SigningStatus::Invalid
    } else if flags & cs::CS_SIGNED == 0 {
        rules::SigningStatus::Unsigned
    } else if flags & cs::CS_VALID == 0 {
        rules::SigningStatus::Invalid
    } else if flags & cs::CS_ADHOC != 0 {
        rules::SigningStatus::AdHoc
    } else if flags & cs::CS_DEV_CODE != 0 {
        rules::SigningStatus::Development
    } else {
        rules::SigningStatus::Production
    }
}

/// The identities the kernel vouches for, by Santa's rules (`decisionForFileInfo:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelIdentity<'a> {
    /// Signing status from the flags.
    pub status: rules::SigningStatus,
    /// Team ID: signed, valid, with a signing identifier and a Team ID.
    pub team_id: Option<rules::TeamId>,
    /// The raw signing identifier, when a Signing ID can be formed (`TEAMID:` or `platform:`).
    pub signing_ident: Option<&'a str>,
    /// CDHash, only when the kernel strictly enforces it.
    pub cdhash: Option<[u8; 20]>,
}

impl KernelIdentity<'_> {
    /// Santa's Signing ID text: `TEAMID:ident` or `platform:ident`.
    pub fn signing_id_text(&self) -> Option<String> {
        let ident = self.signing_ident?;
        Some(match &self.team_id {
            Some(team) => format!("{}:{ident}", String::from_utf8_lossy(team.as_bytes())),
            None => format!("platform:{ident}"),
        })
    }
}

/// The kernel's identities of `target`: Team and Signing IDs only for a signed, valid process
/// with a signing identifier (the Signing ID needs a Team ID or a platform binary); the CDHash
/// only when [`cdhash_strictly_enforced`].
pub fn kernel_identity<'a>(
    target: &ProcessView<'a>,
    image_cputype: Option<i32>,
) -> KernelIdentity<'a> {
    let flags = target.codesigning_flags;
    let mut id = KernelIdentity {
        status: signing_status(flags, image_cputype),
        team_id: None,
        signing_ident: None,
        cdhash: None,
    };
    let signed_valid = flags & cs::CS_SIGNED != 0 && flags & cs::CS_VALID != 0;
    if !signed_valid {
        return id;
    }
    let ident = std::str::from_utf8(target.signing_id)
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(ident) = ident {
        if !target.team_id.is_empty() {
            // A Team ID the kernel reports but that is not ten upper-case alphanumerics is no
            // Team ID any rule could name: leave both IDs out rather than guess.
            if let Some(team) = rules::TeamId::from_signature(target.team_id) {
                id.team_id = Some(team);
                id.signing_ident = Some(ident);
            }
        } else if target.is_platform_binary {
            id.signing_ident = Some(ident);
        }
    }
    if cdhash_strictly_enforced(flags) {
        id.cdhash = Some(target.cdhash);
    }
    id
}
