//! The Code-signed line of `santactl fileinfo` in Santa's fixed strings (`SNTFileInfo
//! codesignStatus`), which scripts parse.

use santa_signing::{InvalidReason, SigningStatus};

#[test]
fn code_signed_lines_are_santas_fixed_strings() {
    use SigningStatus::*;
    let slot = |special_slot| InvalidReason::SpecialSlotMismatch {
        code_directory: 0,
        special_slot,
    };
    let changed = "Yes, but code/signature changed/unverifiable";
    let cases = [
        (Unsigned, None, false, "No"),
        (AdHoc, None, true, "Yes, but ad-hoc"),
        (Production, None, true, "Yes, platform binary"),
        (Development, None, true, "Yes, platform binary"),
        (
            Development,
            None,
            false,
            "Yes, but with development certificate",
        ),
        (Production, None, false, "Yes"),
        (Invalid, None, false, changed),
        (
            Invalid,
            Some(InvalidReason::CmsSignatureInvalid),
            false,
            changed,
        ),
        (
            Invalid,
            Some(InvalidReason::InconsistentArchitectures),
            false,
            "Yes, but signing is not consistent for all architectures",
        ),
        (
            Invalid,
            Some(slot(1)),
            false,
            "Yes, but can't validate as the Info.plist has been modified",
        ),
        (Invalid, Some(slot(3)), false, "Yes, but resources invalid"),
        (Invalid, Some(slot(2)), false, changed),
    ];
    for (status, reason, platform, want) in cases {
        assert_eq!(
            status.code_signed_text(reason.as_ref(), platform),
            want,
            "{status:?} {reason:?} platform={platform}"
        );
    }
}
