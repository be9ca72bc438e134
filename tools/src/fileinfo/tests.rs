use super::*;

fn shared_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/macho")
        .join(name)
}

#[test]
fn a_bundle_directory_stands_for_its_executable_and_links_are_resolved() {
    let app = shared_fixture("devid_app/Mitmproxy Redirector.app");
    let info = load(&app).unwrap();
    let exe = std::fs::canonicalize(app.join("Contents/MacOS/Mitmproxy Redirector")).unwrap();
    assert_eq!(info.path, exe);
    assert_eq!(info.bundle_name(), Some("Mitmproxy Redirector"));
    // A path through a symbolic link and `..` is described under its resolved path.
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&exe, &link).unwrap();
    let via = tmp.path().join("sub/../link");
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    assert_eq!(load(&via).unwrap().path, exe);
    // An executable named through `..` in the Info.plist is described under its real path.
    let odd = tmp.path().join("Odd.app");
    std::fs::create_dir_all(odd.join("Contents/MacOS")).unwrap();
    std::fs::write(
        odd.join("Contents/Info.plist"),
        "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>\
         <key>CFBundleIdentifier</key><string>com.example.odd</string>\
         <key>CFBundleExecutable</key><string>../../../link</string></dict></plist>",
    )
    .unwrap();
    assert_eq!(load(&odd).unwrap().path, exe);
    // A directory that is no bundle is still refused.
    assert!(load(tmp.path()).unwrap_err().contains("not a plain file"));
}

#[test]
fn a_file_over_a_gibibyte_is_described() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: no disk is used for it.
    let len = (1 << 30) + 4096;
    f.set_len(len).unwrap();
    // The signing crate's default bound (santad's MaxHashBytes default) refuses it...
    let refused = signing::file_info(&path, &Default::default()).unwrap_err();
    assert!(
        refused.to_string().contains("exceeds the hashing limit"),
        "{refused}"
    );
    // ...fileinfo reads with no bound (hashing a GiB is left out of the unit tests).
    assert!(fileinfo_options().limits.hash_bytes_max >= len);
}

fn opts(keys: &[&str], filters: &[&str], cert: Option<i64>) -> Result<Options, Failure> {
    parse_options(&FileInfoArgs {
        paths: vec![PathBuf::from("/x")],
        recursive: false,
        json: false,
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        cert_index: cert,
        filters: filters.iter().map(|k| (*k).to_owned()).collect(),
        filter_inclusive: false,
        bundleinfo: false,
        entitlements: false,
        verify: false,
        localtz: false,
    })
}

#[test]
fn keys_and_filters_are_validated_as_santa_does() {
    assert!(matches!(opts(&["Nope"], &[], None), Err(Failure::Usage(_))));
    assert!(matches!(
        opts(&["Rule"], &[], Some(0)),
        Err(Failure::Usage(_))
    ));
    assert!(opts(&["Common Name"], &[], Some(-1)).is_ok());
    assert!(matches!(opts(&[], &["Type"], None), Err(Failure::Usage(_))));
    assert!(matches!(opts(&[], &["=x"], None), Err(Failure::Usage(_))));
    assert!(matches!(
        opts(&[], &["Signing Chain=x"], None),
        Err(Failure::Usage(_))
    ));
    assert!(matches!(
        opts(&[], &["Type=("], None),
        Err(Failure::Usage(_))
    ));
    let o = opts(&[], &["type=x"], None);
    assert!(
        matches!(o, Err(Failure::Usage(_))),
        "keys are case-sensitive, as in Santa"
    );
    let o = opts(&[], &["Type=script"], None)
        .map_err(|_| ())
        .expect("valid");
    assert_eq!(o.keys.len(), FILE_INFO_KEYS.len());
    assert!(o.filters[0].1.is_match("Script"), "case-insensitive regex");
    assert_eq!(o.width, "Universal Signing Chain".len());
}

#[test]
fn certificate_dates_are_iso8601() {
    // 2027-02-01 22:12:15 UTC, and a date before the epoch.
    assert_eq!(iso8601(1_801_519_935, false), "2027-02-01T22:12:15Z");
    assert_eq!(iso8601(-1, false), "1969-12-31T23:59:59Z");
}
