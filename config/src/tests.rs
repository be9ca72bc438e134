use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml_str(text, Path::new("/etc/santa/test.toml"))
}

fn message(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn lockdown_scope_takes_names_and_numbers_and_refuses_unknown_names_and_empty_scopes() {
    let c = parse(
        "LockdownScope = { Users = [\"root\", 1234, 1234], Groups = [0], Cgroups = [\"/user.slice\"] }\n\
         IgnoreMounts = [\"/mnt/nfs\"]\nBackstop = \"Required\"\nMemfdNoexec = true\n",
    )
    .expect("valid");
    let scope = c.lockdown_scope.expect("scope");
    assert_eq!(
        scope.users,
        vec![0, 1234],
        "names resolved, duplicates dropped"
    );
    assert_eq!(scope.groups, vec![0]);
    assert_eq!(scope.cgroups, vec![PathBuf::from("/user.slice")]);
    assert_eq!(c.ignore_mounts, vec![PathBuf::from("/mnt/nfs")]);
    assert_eq!(c.backstop, BackstopMode::Required);
    assert!(c.memfd_noexec);
    for (text, what) in [
        (
            "LockdownScope = { Users = [\"no-such-user-santad\"] }",
            "no user named",
        ),
        (
            "LockdownScope = { Groups = [\"no-such-group-santad\"] }",
            "no group named",
        ),
        ("LockdownScope = { Users = [-1] }", "not a valid id"),
        (
            "LockdownScope = { Users = [true] }",
            "expected a name or a number",
        ),
        ("LockdownScope = {}", "names nobody"),
        (
            "LockdownScope = { Cgroups = [\"relative\"] }",
            "not an absolute path",
        ),
        (
            "LockdownScope = { Uesrs = [1] }",
            "unknown key `LockdownScope.Uesrs`",
        ),
        ("Backstop = \"maybe\"", "expected \"auto\""),
        ("IgnoreMounts = \"/mnt\"", "expected an array"),
    ] {
        let m = parse(text).unwrap_err().to_string();
        assert!(m.contains(what), "{text}: {m}");
    }
}

#[test]
fn empty_file_gives_the_embedded_defaults() {
    let c = parse("").expect("empty is valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.client_mode, ClientMode::Monitor);
    assert!(c.watch_paths.is_empty(), "every filesystem by default");
    assert_eq!(c.lockdown_scope, None);
    assert_eq!(c.backstop, BackstopMode::Auto);
    assert_eq!(c.event_log_destination, LogDestination::Stdout);
    assert_eq!(c.deny_cache_ttl_ms, 1_500);
    assert!(c.log_exec_notifications);
}

#[test]
fn full_file_parses() {
    let c = parse(
        r#"
        ClientMode = "LOCKDOWN"
        FailClosed = true
        AllowedPathRegex = "^/opt/allowed/"
        BlockedPathRegex = "^/tmp/"
        EnableBadSignatureProtection = true
        EventLogType = "json"
        EventLogPath = "/var/log/santa.json"
        EventDetailURL = "https://example.com/%file_sha%"
        EventDetailText = "Open"
        UnknownBlockMessage = "Ask IT"
        BannedBlockMessage = "Banned"
        MachineID = "host-1"
        EnableMachineIDDecoration = true
        WatchPaths = ["/", { Path = "/home", Scope = "filesystem" }]
        DeadlineMs = 2000
        MaxHashBytes = 104857600
        WorkerCount = 2
        CacheCapacity = 4096
        DenyCacheTtlMs = 0
        InFlightSlots = 256
        QueueDepth = 128
        EventLogRingSize = 1024
        RulesDbPath = "/tmp/rules.db"
        ControlSocketPath = "/tmp/santad.sock"
        LogExecNotifications = false
        "#,
    )
    .expect("valid");
    assert_eq!(c.client_mode, ClientMode::Lockdown);
    assert!(c.fail_closed && c.enable_bad_signature_protection && c.enable_machine_id_decoration);
    assert_eq!(c.event_log_format, LogFormat::Json);
    assert_eq!(
        c.event_log_destination,
        LogDestination::File("/var/log/santa.json".into())
    );
    assert_eq!(
        c.watch_paths[1],
        WatchPath {
            path: "/home".into(),
            scope: WatchScope::Filesystem
        }
    );
    assert_eq!(
        (
            c.deadline_ms,
            c.worker_count,
            c.queue_depth,
            c.in_flight_slots
        ),
        (2000, 2, 128, 256)
    );
    assert_eq!(c.worker_count_resolved(), 2);
    assert!(!c.log_exec_notifications);
    assert_eq!(
        c.event_detail_url.as_deref(),
        Some("https://example.com/%file_sha%")
    );
}

#[test]
fn client_mode_accepts_santa_numbers_and_any_case() {
    assert_eq!(
        parse("ClientMode = 1").expect("1").client_mode,
        ClientMode::Monitor
    );
    assert_eq!(
        parse("ClientMode = 2").expect("2").client_mode,
        ClientMode::Lockdown
    );
    assert_eq!(
        parse("ClientMode = \"monitor\"").expect("s").client_mode,
        ClientMode::Monitor
    );
    let m = message("ClientMode = 3");
    assert!(
        m.contains("`ClientMode`") && m.contains("Standalone"),
        "{m}"
    );
    let m = message("ClientMode = \"strict\"");
    assert!(
        m.contains("/etc/santa/test.toml")
            && m.contains("`ClientMode`")
            && m.contains("\"strict\""),
        "{m}"
    );
}

#[test]
fn errors_name_the_key_and_file() {
    let m = message("DeadlineMs = 5");
    assert!(
        m.starts_with("/etc/santa/test.toml: key `DeadlineMs`") && m.contains("10..=60000"),
        "{m}"
    );
    let m = message("DeadlineMs = -1");
    assert!(m.contains("`DeadlineMs`"), "{m}");
    let m = message("FailClosed = \"yes\"");
    assert!(m.contains("`FailClosed`") && m.contains("boolean"), "{m}");
    let m = message("BlockedPathRegex = \"([\"");
    assert!(
        m.contains("`BlockedPathRegex`") && m.contains("regular expression"),
        "{m}"
    );
    let m = message("WatchPaths = [\"relative\"]");
    assert!(m.contains("`WatchPaths[0]`"), "{m}");
    let m = message("WatchPaths = [{ Path = \"/\", Scope = \"tree\" }]");
    assert!(m.contains("`WatchPaths[0].Scope`"), "{m}");
    let m = message("WatchPaths = []");
    assert!(m.contains("`WatchPaths`"), "{m}");
    let m = message("QueueDepth = 512\nInFlightSlots = 256");
    assert!(
        m.contains("`QueueDepth`") && m.contains("InFlightSlots"),
        "{m}"
    );
    let m = message("EventLogType = \"protobuf\"");
    assert!(
        m.contains("`EventLogType`") && m.contains("not supported"),
        "{m}"
    );
    let m = message("ControlSocketPath = \"/");
    assert!(m.contains("invalid TOML"), "{m}");
    let long = format!("ControlSocketPath = \"/{}\"", "a".repeat(200));
    assert!(message(&long).contains("`ControlSocketPath`"));
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let m = message("ClientMod = 1");
    assert_eq!(m, "/etc/santa/test.toml: unknown key `ClientMod`");
    let m = message("WatchPaths = [{ Paht = \"/\" }]");
    assert!(m.contains("unknown key `WatchPaths[0].Paht`"), "{m}");
    let m = message("[section]\nDeadlineMs = 100");
    assert!(m.contains("unknown key `section`"), "{m}");
}

#[test]
fn syntax_errors_name_the_file() {
    let m = message("ClientMode = ");
    assert!(m.starts_with("/etc/santa/test.toml: invalid TOML"), "{m}");
}

#[test]
fn event_log_types_map_to_format_and_destination() {
    let c = parse("EventLogType = \"file\"").expect("file");
    assert_eq!(
        c.event_log_format,
        LogFormat::KeyValue {
            timestamp_prefix: true
        }
    );
    assert_eq!(
        c.event_log_destination,
        LogDestination::File(SANTA_EVENT_LOG_PATH.into())
    );
    let c = parse("EventLogType = \"FILE\"\nEventLogPath = \"-\"").expect("stdout file");
    assert_eq!(c.event_log_destination, LogDestination::Stdout);
    let c = parse("EventLogType = \"syslog\"").expect("syslog");
    assert_eq!(
        c.event_log_format,
        LogFormat::KeyValue {
            timestamp_prefix: false
        }
    );
    assert_eq!(c.event_log_destination, LogDestination::Stdout);
    let c = parse("EventLogType = \"null\"").expect("null");
    assert_eq!(c.event_log_destination, LogDestination::Null);
    let c = parse("EventLogPath = \"/var/log/x.log\"").expect("path only");
    assert_eq!(
        c.event_log_destination,
        LogDestination::File("/var/log/x.log".into())
    );
    assert!(message("EventLogPath = \"relative.log\"").contains("`EventLogPath`"));
    let c = parse("EventDetailURL = \"null\"").expect("null url");
    assert_eq!(c.event_detail_url, None);
}

#[test]
fn load_prefers_cli_then_default_file_then_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.toml");
    let (c, source) = load_from(None, &missing).expect("embedded");
    assert_eq!((c, source), (Config::default(), ConfigSource::Embedded));

    let default_file = dir.path().join("santad.toml");
    std::fs::write(&default_file, "ClientMode = 2\n").expect("write");
    let (c, source) = load_from(None, &default_file).expect("default file");
    assert_eq!(c.client_mode, ClientMode::Lockdown);
    assert_eq!(source, ConfigSource::DefaultFile(default_file.clone()));

    let cli = dir.path().join("cli.toml");
    std::fs::write(&cli, "DeadlineMs = 100\n").expect("write");
    let (c, source) = load_from(Some(&cli), &default_file).expect("cli file");
    assert_eq!((c.deadline_ms, c.client_mode), (100, ClientMode::Monitor));
    assert_eq!(source, ConfigSource::Cli(cli));

    let err = load_from(Some(&missing), &default_file).expect_err("missing --config file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("missing.toml"));

    std::fs::write(&default_file, "DeadlineMs = true\n").expect("write");
    let err = load_from(None, &default_file).expect_err("bad default file");
    assert!(
        err.to_string().contains("santad.toml: key `DeadlineMs`"),
        "{err}"
    );
}
