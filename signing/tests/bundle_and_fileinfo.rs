//! Bundle discovery, the bundle hash and the `fileinfo` call, on a bundle tree built in the test
//! from the fixtures. Expected hashes are the manifest's.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{fixtures_dir, manifest};
use santa_signing::bundle::{self, BundleError, BundleLimits};
use santa_signing::{
    FileInfoOptions, HashLimits, ReadMethod, Sha256, SigningStatus, file_info, identify_file,
};

fn manifest_sha256(file: &str) -> Sha256 {
    let m = manifest();
    let f = m["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == file)
        .unwrap();
    Sha256::from_hex(f["sha256"].as_str().unwrap()).unwrap()
}

const DEVID: &str = "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector";
const GET_WINDOWS: &str = "fat_exec_x86unsigned_arm64linker.get-windows_main";
const SPAWN_HELPER: &str = "linker_signed_arm64_exec.node-pty_spawn-helper";

fn copy(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(fixtures_dir().join(from), to).unwrap();
}

/// Outer.app holding the Developer ID executable, a helper tool, a nested framework with a
/// dylib and an executable, a Python extension (MH_BUNDLE), a script and a duplicate binary.
fn build_bundle(root: &Path) -> PathBuf {
    let app = root.join("Outer.app");
    let c = app.join("Contents");
    copy(
        "devid_app/Mitmproxy Redirector.app/Contents/Info.plist",
        &c.join("Info.plist"),
    );
    copy(DEVID, &c.join("MacOS/Outer"));
    copy(GET_WINDOWS, &c.join("Helpers/get-windows"));
    let fw = c.join("Frameworks/Inner.framework");
    std::fs::create_dir_all(fw.join("Resources")).unwrap();
    std::fs::write(
        fw.join("Resources/Info.plist"),
        "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>\
         <key>CFBundleIdentifier</key><string>com.example.inner</string></dict></plist>",
    )
    .unwrap();
    copy(
        "adhoc_codesign_arm64.pillow13_libwebpdemux.2.dylib",
        &fw.join("Inner"),
    );
    copy(SPAWN_HELPER, &fw.join("Helpers/spawn-helper"));
    copy(SPAWN_HELPER, &c.join("Resources/spawn-helper-copy"));
    copy(
        "linker_signed_arm64_bundle.markupsafe_speedups.so",
        &c.join("Resources/speedups.so"),
    );
    std::fs::write(c.join("Resources/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    app
}

#[test]
fn highest_ancestor_bundle_is_found_from_a_nested_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let app = build_bundle(tmp.path());
    let nested = app.join("Contents/Frameworks/Inner.framework/Helpers/spawn-helper");
    let b = bundle::find_ancestor_bundle(&nested).unwrap();
    assert_eq!(b.path, std::path::absolute(&app).unwrap());
    assert_eq!(b.identifier, "org.mitmproxy.macos-redirector");
    assert_eq!(b.name.as_deref(), Some("Mitmproxy Redirector"));
    assert_eq!(b.short_version.as_deref(), Some("2.0"));
    assert_eq!(b.version.as_deref(), Some("1"));
    // The framework alone is a bundle too, but not the highest one.
    let inner = bundle::read_bundle(&app.join("Contents/Frameworks/Inner.framework")).unwrap();
    assert_eq!(inner.identifier, "com.example.inner");
    // A file outside any bundle has none.
    assert_eq!(bundle::find_ancestor_bundle(&tmp.path().join("x")), None);
}

#[test]
fn bundle_hash_covers_each_distinct_executable_once() {
    let tmp = tempfile::tempdir().unwrap();
    let app = build_bundle(tmp.path());
    let calls = AtomicUsize::new(0);
    let limits = BundleLimits {
        threads: 2,
        ..BundleLimits::default()
    };
    let h = bundle::hash_bundle(&app, &limits, &|p| {
        assert!(p.files_done <= p.files_total);
        calls.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    let names: Vec<String> = h
        .binaries
        .iter()
        .map(|b| b.path.strip_prefix(&app).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            "Contents/Frameworks/Inner.framework/Helpers/spawn-helper",
            "Contents/Helpers/get-windows",
            "Contents/MacOS/Outer",
            "Contents/Resources/spawn-helper-copy",
        ]
    );
    assert_eq!(h.files_examined, 9);
    assert_eq!(calls.load(Ordering::Relaxed), 9);
    // Santa's formula over the manifest's hashes: sorted lowercase hex, concatenated.
    let mut hex: Vec<String> = [DEVID, GET_WINDOWS, SPAWN_HELPER]
        .iter()
        .map(|f| manifest_sha256(f).to_string())
        .collect();
    hex.sort();
    let want = Sha256::digest(hex.concat().as_bytes());
    assert_eq!(h.bundle_hash, Some(want));
}

#[test]
fn bundle_limits_are_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let app = build_bundle(tmp.path());
    let few = BundleLimits {
        file_count_max: 3,
        ..BundleLimits::default()
    };
    assert!(matches!(
        bundle::hash_bundle(&app, &few, &|_| {}),
        Err(BundleError::TooManyFiles { limit: 3 })
    ));
    let no_time = BundleLimits {
        time_budget: std::time::Duration::ZERO,
        ..BundleLimits::default()
    };
    assert!(matches!(
        bundle::hash_bundle(&app, &no_time, &|_| {}),
        Err(BundleError::TimedOut { .. })
    ));
    let empty = tmp.path().join("Empty.app");
    std::fs::create_dir_all(&empty).unwrap();
    let h = bundle::hash_bundle(&empty, &BundleLimits::default(), &|_| {}).unwrap();
    assert_eq!(h.bundle_hash, None);
}

#[test]
fn fileinfo_of_the_developer_id_app() {
    let path = fixtures_dir().join(DEVID);
    let info = file_info(&path, &FileInfoOptions::default()).unwrap();
    assert_eq!(info.sha256, manifest_sha256(DEVID));
    assert!(!info.changed);
    assert_eq!(info.type_description, "Executable (x86_64, arm64)");
    assert_eq!(info.code_signed(), "Yes");
    let signing = info.signing.as_ref().unwrap();
    assert_eq!(signing.status, SigningStatus::Production);
    assert_eq!(info.team_id().unwrap().as_str(), "S8XHQB96PW");
    assert_eq!(
        info.signing_id().unwrap().as_str(),
        "S8XHQB96PW:org.mitmproxy.macos-redirector"
    );
    // The primary slice is this machine's architecture when present.
    let want_cdhash = if cfg!(target_arch = "aarch64") {
        "1199e296327b3b09152edf4de0f41e9805d1273a"
    } else {
        "d594e3f6ce68cfaac8d08126a5d5123d5b35fc4a"
    };
    assert_eq!(info.cdhash().unwrap().to_string(), want_cdhash);
    let chain: Vec<String> = info
        .signing_chain()
        .iter()
        .map(|c| c.sha256.to_string())
        .collect();
    assert_eq!(
        chain,
        [
            "0a06c79b2e48d77e9f694fa3e4b71cc64b01d6ab2743b04ecf5364ee3e29c262",
            "7afc9d01a62f03a2de9637936d4afe68090d2de18d03f29c88cfb0b1ba63587f",
            "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024",
        ]
    );
    assert_eq!(
        info.bundle.as_ref().unwrap().identifier,
        "org.mitmproxy.macos-redirector"
    );
    let text = info.to_string();
    for line in [
        "SHA-256",
        "SHA-1",
        "Code-signed           : Yes",
        "Team ID               : S8XHQB96PW",
        "Bundle Name           : Mitmproxy Redirector",
        "Common Name         : Developer ID Application: Maximilian Hils (S8XHQB96PW)",
        "Valid Until         : 2027-02-01 22:12:15+00:00",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["sha256"], manifest_sha256(DEVID).to_string());
    assert_eq!(json["signing"]["status"], "production");
    assert_eq!(
        info.signing_chain()[0].subject.organization.as_deref(),
        Some("Maximilian Hils")
    );
}

#[test]
fn fileinfo_of_scripts_and_unsigned_files() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("s.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let info = file_info(&script, &FileInfoOptions::default()).unwrap();
    assert_eq!(info.type_description, "Script");
    assert_eq!(info.code_signed(), "No");
    assert!(info.signing.is_none());
    let fat = fixtures_dir().join(GET_WINDOWS);
    let info = file_info(&fat, &FileInfoOptions::default()).unwrap();
    assert_eq!(
        info.code_signed(),
        "Yes, but signing is not consistent for all architectures"
    );
    assert!(info.bundle.is_none());
}

#[test]
fn identify_file_hashes_and_verifies_in_one_read() {
    let mut scratch = Vec::new();
    let devid = std::fs::File::open(fixtures_dir().join(DEVID)).unwrap();
    let id = identify_file(&devid, &HashLimits::default(), &mut scratch).unwrap();
    assert_eq!(id.hash.sha256, manifest_sha256(DEVID));
    assert_eq!(id.hash.method, ReadMethod::Mmap);
    assert!(!id.hash.changed);
    let signing = id.signing.unwrap();
    assert_eq!(signing.status, SigningStatus::Production);
    assert_eq!(
        signing.leaf_certificate_sha256().unwrap().to_string(),
        "0a06c79b2e48d77e9f694fa3e4b71cc64b01d6ab2743b04ecf5364ee3e29c262"
    );
    // A small file goes through the reusable buffer, which comes back grown.
    let small = std::fs::File::open(fixtures_dir().join(SPAWN_HELPER)).unwrap();
    let id = identify_file(&small, &HashLimits::default(), &mut scratch).unwrap();
    assert_eq!(id.hash.sha256, manifest_sha256(SPAWN_HELPER));
    assert_eq!(id.hash.method, ReadMethod::Read);
    assert_eq!(id.signing.unwrap().status, SigningStatus::AdHoc);
    assert!(scratch.capacity() >= 50512);
}

#[test]
fn fileinfo_describes_a_binary_by_its_nearest_bundle() {
    // Santa's fileinfo (`findBundleWithAncestor:NO`) stops at the first bundle up the path:
    // the helper inside the framework is the framework's, not the app's.
    let tmp = tempfile::tempdir().unwrap();
    let app = build_bundle(tmp.path());
    let fw = app.join("Contents/Frameworks/Inner.framework");
    let nested = fw.join("Helpers/spawn-helper");
    assert_eq!(
        bundle::find_nearest_bundle(&nested).unwrap().path,
        std::path::absolute(&fw).unwrap()
    );
    let info = file_info(&nested, &FileInfoOptions::default()).unwrap();
    assert_eq!(
        info.bundle.as_ref().unwrap().identifier,
        "com.example.inner"
    );
    // The app's own executable is the app's.
    let main = file_info(&app.join("Contents/MacOS/Outer"), &Default::default());
    assert_eq!(main.unwrap().bundle_name(), Some("Mitmproxy Redirector"));
}

/// A minimal 64-bit executable whose only load command is a `__TEXT` segment holding an
/// `__info_plist` section with `plist`.
fn executable_with_embedded_plist(plist: &[u8]) -> Vec<u8> {
    let (header, segment, section) = (32usize, 72usize, 80usize);
    let plist_at = header + segment + section;
    let mut b = Vec::new();
    for v in [
        0xfeed_facf_u32,
        0x0100_000c,
        0,
        2,
        1,
        (segment + section) as u32,
        0,
        0,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let mut seg = Vec::new();
    seg.extend_from_slice(&0x19u32.to_le_bytes());
    seg.extend_from_slice(&((segment + section) as u32).to_le_bytes());
    seg.extend_from_slice(b"__TEXT\0\0\0\0\0\0\0\0\0\0");
    for v in [0u64, 0x4000, 0, (plist_at + plist.len()) as u64] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    for v in [5u32, 5, 1, 0] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    seg.extend_from_slice(b"__info_plist\0\0\0\0");
    seg.extend_from_slice(b"__TEXT\0\0\0\0\0\0\0\0\0\0");
    for v in [plist_at as u64, plist.len() as u64] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    for v in [plist_at as u32, 0, 0, 0, 0, 0, 0, 0] {
        seg.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&seg);
    b.extend_from_slice(plist);
    b
}

#[test]
fn fileinfo_reads_the_info_plist_embedded_in_an_executable() {
    let plist = br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
<key>CFBundleIdentifier</key><string>com.example.tool</string>
<key>CFBundleName</key><string>tool</string>
<key>CFBundleDisplayName</key><string>Example Tool</string>
<key>CFBundleVersion</key><string>42</string>
<key>CFBundleShortVersionString</key><string>4.2</string>
</dict></plist>"#;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tool");
    std::fs::write(&path, executable_with_embedded_plist(plist)).unwrap();
    let info = file_info(&path, &FileInfoOptions::default()).unwrap();
    // CFBundleDisplayName wins over CFBundleName, as in Santa's bundleName.
    assert_eq!(info.bundle_name(), Some("Example Tool"));
    assert_eq!(info.bundle_version(), Some("42"));
    assert_eq!(info.bundle_version_str(), Some("4.2"));
    assert!(info.bundle.is_none());
    let text = info.to_string();
    assert!(
        text.contains("Bundle Name           : Example Tool"),
        "{text}"
    );
    assert!(
        text.contains("Type                  : Executable (arm64)"),
        "{text}"
    );
}

/// A 32-bit i386 executable whose only load command is one segment named `segname` at
/// address 0 with no access (a proper `__PAGEZERO` when it is named so).
fn i386_executable(segname: &[u8; 16]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0xfeed_face_u32, 7, 3, 2, 1, 56, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1u32, 56] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(segname);
    // vmaddr, vmsize, fileoff, filesize, maxprot, initprot, nsects, flags
    for v in [0u32, 0x1000, 0, 0, 0, 0, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

#[test]
fn an_i386_executable_without_a_proper_page_zero_is_flagged_as_santa_flags_it() {
    let external = santa_signing::verify::ExternalFiles::default();
    let without = i386_executable(b"__TEXT\0\0\0\0\0\0\0\0\0\0");
    let s = santa_signing::FileSigning::from_bytes(&without, &external).unwrap();
    assert!(s.is_missing_page_zero());
    let with = i386_executable(b"__PAGEZERO\0\0\0\0\0\0");
    let s = santa_signing::FileSigning::from_bytes(&with, &external).unwrap();
    assert!(!s.is_missing_page_zero());
    // Only i386 is checked (the kernel enforces a page zero elsewhere).
    let spawn = std::fs::read(fixtures_dir().join(SPAWN_HELPER)).unwrap();
    let s = santa_signing::FileSigning::from_bytes(&spawn, &external).unwrap();
    assert!(!s.is_missing_page_zero());
}
