//! Universal binaries as Santa judges them (`MOLCodesignChecker`, `SNTFileInfo`): assembled here
//! from the slices of the real fixtures, signed alike or not, with records whose CPU type no
//! parser knows. Expected values are Santa's: slices signed differently make the whole file
//! invalid ("Yes, but signing is not consistent for all architectures") with no signing
//! information to show or match; a record's unknown CPU type is no reason to call the file
//! anything but Mach-O.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use common::fixture;
use santa_signing::verify::{InvalidReason, SigningStatus};
use santa_signing::{FileInfo, file_info};
use santa_testkit::{FatSlice, slices_of, universal};

const DEVID: &str = "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector";
/// x86_64 unsigned, arm64 ad-hoc (linker-signed).
const MIXED_FAT: &str = "fat_exec_x86unsigned_arm64linker.get-windows_main";
/// A thin arm64 ad-hoc executable.
const ADHOC_ARM64: &str = "linker_signed_arm64_exec.node-pty_spawn-helper";
/// A thin x86_64 ad-hoc dylib.
const ADHOC_X86: &str = "adhoc_dualcd_x86_64.pillow950_libwebpdemux.2.dylib";
const CODE_SIGNED_INCONSISTENT: &str = "Yes, but signing is not consistent for all architectures";
/// A CPU type no Mach-O parser names (`CPU_ARCH_ABI64 | 15`).
const UNKNOWN_CPU: i32 = 0x0100_000f;

/// `fileinfo` of a universal file made of `slices`, written to a temporary file.
fn info_of(slices: &[FatSlice<'_>]) -> FileInfo {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("universal");
    std::fs::write(&path, universal(slices)).unwrap();
    file_info(&path, &Default::default()).unwrap()
}

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            (k.trim_end() == key).then_some(v)
        })
        .unwrap_or_else(|| panic!("no {key} line in\n{text}"))
}

/// Santa keeps no signing information for a file whose slices are not signed alike; `type_line`
/// is the Type line it must have, when the test says.
fn assert_inconsistent(info: &FileInfo, type_line: Option<&str>) {
    let text = info.to_string();
    if let Some(want) = type_line {
        assert_eq!(line(&text, "Type"), want, "{text}");
    }
    assert_eq!(
        line(&text, "Code-signed"),
        CODE_SIGNED_INCONSISTENT,
        "{text}"
    );
    let signing = info.signing.as_ref().unwrap();
    assert_eq!(signing.status, SigningStatus::Invalid);
    assert_eq!(
        signing.invalid_reason,
        Some(InvalidReason::InconsistentArchitectures)
    );
    assert_eq!(info.team_id(), None, "{text}");
    assert_eq!(info.signing_id(), None, "{text}");
    assert_eq!(info.cdhash(), None, "{text}");
    assert!(info.signing_chain().is_empty(), "{text}");
    for key in ["Team ID", "Signing ID", "CDHash"] {
        assert_eq!(line(&text, key), "", "{key} in\n{text}");
    }
    assert!(!text.contains("Signing Chain"), "{text}");
}

#[test]
fn a_developer_id_slice_beside_an_ad_hoc_one_is_not_consistent() {
    let devid = fixture(DEVID);
    let adhoc = fixture(ADHOC_ARM64);
    let info = info_of(&[slices_of(&devid)[0], slices_of(&adhoc)[0]]);
    assert_inconsistent(&info, Some("Executable (x86_64, arm64)"));
}

#[test]
fn an_unsigned_slice_beside_a_developer_id_one_is_not_consistent() {
    let devid = fixture(DEVID);
    let mixed = fixture(MIXED_FAT);
    let info = info_of(&[slices_of(&mixed)[0], slices_of(&devid)[1]]);
    assert_inconsistent(&info, None);
}

#[test]
fn the_fixture_with_an_unsigned_and_an_ad_hoc_slice_is_not_consistent() {
    let info = file_info(&common::fixture_path(MIXED_FAT), &Default::default()).unwrap();
    assert_inconsistent(&info, Some("Executable (x86_64, arm64)"));
}

#[test]
fn a_record_of_unknown_cpu_type_holding_no_mach_o_has_no_signature() {
    let devid = fixture(DEVID);
    let junk = vec![0x5a; 4096];
    let unknown = FatSlice {
        cpu_type: UNKNOWN_CPU,
        cpu_subtype: 0,
        bytes: &junk,
    };
    // After a signed slice, and first: either way the file is Mach-O, and not consistent.
    for slices in [
        [slices_of(&devid)[0], unknown],
        [unknown, slices_of(&devid)[0]],
    ] {
        let info = info_of(&slices);
        // Santa's Type line names only the slices that hold a Mach-O header.
        assert_inconsistent(&info, Some("Executable (x86_64)"));
        // The slices stay in header order, the unreadable one in its record's place.
        let order: Vec<bool> = info
            .signing
            .as_ref()
            .unwrap()
            .slices
            .iter()
            .map(|s| s.unreadable.is_some())
            .collect();
        let want: Vec<bool> = slices.iter().map(|s| s.cpu_type == UNKNOWN_CPU).collect();
        assert_eq!(order, want);
    }
}

#[test]
fn a_signed_slice_under_a_record_of_unknown_cpu_type_is_read_as_any_other() {
    // Security reads a slice at its record's offset whatever the record's CPU type, so a
    // record relabelled to an unknown type leaves the file signed alike; Santa names the
    // architecture `cputype:cpusubtype`.
    let devid = fixture(DEVID);
    let mut arm64 = slices_of(&devid)[1];
    arm64.cpu_type = UNKNOWN_CPU;
    let info = info_of(&[slices_of(&devid)[0], arm64]);
    let text = info.to_string();
    assert_eq!(line(&text, "Code-signed"), "Yes", "{text}");
    assert_eq!(line(&text, "Type"), "Executable (x86_64, 16777231:0)");
    assert_eq!(info.team_id().unwrap().as_str(), "S8XHQB96PW");
}

#[test]
fn slices_signed_alike_stay_valid() {
    // Both ad-hoc: Santa's signer is "-" for each.
    let (arm, x86) = (fixture(ADHOC_ARM64), fixture(ADHOC_X86));
    let info = info_of(&[slices_of(&x86)[0], slices_of(&arm)[0]]);
    assert_eq!(line(&info.to_string(), "Code-signed"), "Yes, but ad-hoc");
    assert_eq!(info.signing.as_ref().unwrap().status, SigningStatus::AdHoc);
    assert!(info.cdhash().is_some());
    // Both unsigned: the file is unsigned, not inconsistent.
    let mixed = fixture(MIXED_FAT);
    let unsigned = slices_of(&mixed)[0];
    let info = info_of(&[
        unsigned,
        FatSlice {
            cpu_type: 12 | 0x0100_0000,
            ..unsigned
        },
    ]);
    assert_eq!(line(&info.to_string(), "Code-signed"), "No");
}

#[test]
fn arm64e_and_x86_64h_slices_are_named_as_santa_names_them() {
    let devid = fixture(DEVID);
    let [mut x86, mut arm] = [slices_of(&devid)[0], slices_of(&devid)[1]];
    (x86.cpu_subtype, arm.cpu_subtype) = (8, 2);
    let info = info_of(&[x86, arm]);
    assert_eq!(
        line(&info.to_string(), "Type"),
        "Executable (x86_64h, arm64e)"
    );
}
