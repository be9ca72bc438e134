use super::*;

const ORIGIN: &str = "/etc/santa/test.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    from_toml_str(text, Path::new(ORIGIN))
}

fn message(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// Each `(file text, words the message must hold)`: every message must also name the file.
fn assert_messages(cases: &[(&str, &[&str])]) {
    for (text, words) in cases {
        let m = message(text);
        assert!(m.starts_with(&format!("{ORIGIN}: ")), "{text}: {m}");
        for word in *words {
            assert!(m.contains(word), "{text}: `{word}` not in: {m}");
        }
    }
}

/// `c` written back as TOML, every key santad has spelled out (what has no TOML form, an empty
/// `WatchPaths` or no `LockdownScope`, is left out, which means the same).
fn to_toml(c: &Config) -> String {
    let text = |s: &Option<String>| format!("{:?}", s.as_deref().unwrap_or(""));
    let path = |p: &PathBuf| format!("{:?}", p.display().to_string());
    let paths = |ps: &[PathBuf]| ps.iter().map(path).collect::<Vec<_>>().join(", ");
    let numbers = |ns: &[u32]| ns.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let (log_type, log_path) = match (c.event_log_format, &c.event_log_destination) {
        (_, LogDestination::Null) => ("null", None),
        (
            LogFormat::KeyValue {
                timestamp_prefix: false,
            },
            LogDestination::Stdout,
        ) => ("syslog", None),
        (LogFormat::Json, LogDestination::File(p)) => ("json", Some(path(p))),
        (LogFormat::Json, LogDestination::Stdout) => ("json", Some("\"-\"".to_owned())),
        (LogFormat::KeyValue { .. }, LogDestination::File(p)) => ("file", Some(path(p))),
        (LogFormat::KeyValue { .. }, LogDestination::Stdout) => ("file", Some("\"-\"".to_owned())),
    };
    let mode = match c.client_mode {
        ClientMode::Monitor => "MONITOR",
        ClientMode::Lockdown => "LOCKDOWN",
    };
    let backstop = match c.backstop {
        BackstopMode::Auto => "auto",
        BackstopMode::Off => "off",
        BackstopMode::Required => "required",
    };
    let mut out = format!(
        "ClientMode = \"{mode}\"\nFailClosed = {}\nAllowedPathRegex = {}\nBlockedPathRegex = {}\n\
         EnableBadSignatureProtection = {}\nEventLogType = \"{log_type}\"\n\
         EventDetailURL = {}\nEventDetailText = {}\nUnknownBlockMessage = {}\n\
         BannedBlockMessage = {}\nEnableSilentMode = {}\nEnableSilentTTYMode = {}\n\
         MachineID = {}\nEnableMachineIDDecoration = {}\n\
         IgnoreMounts = [{}]\nBackstop = \"{backstop}\"\nMemfdNoexec = {}\nDeadlineMs = {}\n\
         MaxHashBytes = {}\nWorkerCount = {}\nCacheCapacity = {}\nDenyCacheTtlMs = {}\n\
         InFlightSlots = {}\nQueueDepth = {}\nEventLogRingSize = {}\nRulesDbPath = {}\n\
         ControlSocketPath = {}\nLogExecNotifications = {}\n\
         IgnoreOtherEndpointSecurityClients = {}\n",
        c.fail_closed,
        text(&c.allowed_path_regex),
        text(&c.blocked_path_regex),
        c.enable_bad_signature_protection,
        text(&c.event_detail_url),
        text(&c.event_detail_text),
        text(&c.unknown_block_message),
        text(&c.banned_block_message),
        c.enable_silent_mode,
        c.enable_silent_tty_mode,
        text(&c.machine_id),
        c.enable_machine_id_decoration,
        paths(&c.ignore_mounts),
        c.memfd_noexec,
        c.deadline_ms,
        c.max_hash_bytes,
        c.worker_count,
        c.cache_capacity,
        c.deny_cache_ttl_ms,
        c.in_flight_slots,
        c.queue_depth,
        c.event_log_ring_size,
        path(&c.rules_db_path),
        path(&c.control_socket_path),
        c.log_exec_notifications,
        c.ignore_other_endpoint_security_clients,
    );
    if let Some(p) = log_path {
        out += &format!("EventLogPath = {p}\n");
    }
    if !c.watch_paths.is_empty() {
        let entries: Vec<String> = c
            .watch_paths
            .iter()
            .map(|w| {
                let scope = match w.scope {
                    WatchScope::Mount => "mount",
                    WatchScope::Filesystem => "filesystem",
                };
                format!("{{ Path = {}, Scope = \"{scope}\" }}", path(&w.path))
            })
            .collect();
        out += &format!("WatchPaths = [{}]\n", entries.join(", "));
    }
    if let Some(s) = &c.lockdown_scope {
        out += &format!(
            "LockdownScope = {{ Users = [{}], Groups = [{}], Cgroups = [{}] }}\n",
            numbers(&s.users),
            numbers(&s.groups),
            paths(&s.cgroups)
        );
    }
    out
}

const FULL: &str = r#"
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
    IgnoreMounts = ["/mnt/nfs"]
    LockdownScope = { Users = [0, 1001], Cgroups = ["/user.slice"] }
    Backstop = "off"
    MemfdNoexec = true
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
    IgnoreOtherEndpointSecurityClients = true
"#;

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
    assert_messages(&[
        (
            "LockdownScope = { Users = [\"no-such-user-santad\"] }",
            &["`LockdownScope.Users[0]`", "no user named"],
        ),
        (
            "LockdownScope = { Groups = [\"no-such-group-santad\"] }",
            &["`LockdownScope.Groups[0]`", "no group named"],
        ),
        (
            "LockdownScope = { Users = [-1] }",
            &["`LockdownScope.Users[0]`", "not a valid id"],
        ),
        (
            "LockdownScope = { Users = [4294967295] }",
            &["`LockdownScope.Users[0]`", "not a valid id"],
        ),
        (
            "LockdownScope = { Users = [0, true] }",
            &["`LockdownScope.Users[1]`", "expected a name or a number"],
        ),
        ("LockdownScope = {}", &["`LockdownScope`", "names nobody"]),
        (
            "LockdownScope = { Cgroups = [\"relative\"] }",
            &["`LockdownScope.Cgroups[0]`", "not an absolute path"],
        ),
        (
            "LockdownScope = { Uesrs = [1] }",
            &["unknown key `LockdownScope.Uesrs`; did you mean `Users`?"],
        ),
        (
            "Backstop = \"maybe\"",
            &["`Backstop`", "expected \"auto\", \"off\" or \"required\""],
        ),
        (
            "IgnoreMounts = \"/mnt\"",
            &["`IgnoreMounts`", "expected an array"],
        ),
    ]);
}

#[test]
fn empty_file_gives_the_embedded_defaults() {
    let c = parse("").expect("empty is valid");
    assert_eq!(c, Config::default());
    assert_eq!(
        parse("# only a comment\n").expect("comment"),
        Config::default()
    );
}

/// Each default as README's table documents it, so that a changed default is a decision here
/// and there, not an accident of the Default impl.
#[test]
fn each_default_is_the_documented_one() {
    let d = Config::default();
    assert_eq!(d.client_mode, ClientMode::Monitor);
    assert!(!d.fail_closed);
    assert_eq!((d.allowed_path_regex, d.blocked_path_regex), (None, None));
    assert!(!d.enable_bad_signature_protection);
    assert_eq!(
        d.event_log_format,
        LogFormat::KeyValue {
            timestamp_prefix: false
        }
    );
    assert_eq!(d.event_log_destination, LogDestination::Stdout);
    assert_eq!(d.event_detail_url, None);
    assert_eq!(d.event_detail_text, None);
    assert_eq!(d.unknown_block_message, None);
    assert_eq!(d.banned_block_message, None);
    assert_eq!(d.machine_id, None);
    assert!(!d.enable_machine_id_decoration);
    assert!(d.watch_paths.is_empty(), "every filesystem by default");
    assert!(d.ignore_mounts.is_empty());
    assert_eq!(d.lockdown_scope, None, "Lockdown for everyone");
    assert_eq!(d.backstop, BackstopMode::Auto);
    assert!(!d.memfd_noexec);
    assert_eq!(d.deadline_ms, 5_000);
    assert_eq!(d.max_hash_bytes, 1 << 30);
    assert_eq!(d.worker_count, 0, "one per core");
    assert_eq!(d.cache_capacity, 16_384);
    assert_eq!(d.deny_cache_ttl_ms, 1_500);
    assert_eq!(d.in_flight_slots, 4_096);
    assert_eq!(d.queue_depth, 1_024);
    assert_eq!(d.event_log_ring_size, 256);
    assert_eq!(d.rules_db_path, PathBuf::from("/var/db/santa/rules.db"));
    assert_eq!(
        d.control_socket_path,
        PathBuf::from("/run/santad/santad.sock")
    );
    assert!(d.log_exec_notifications);
}

#[test]
fn embedded_defaults_round_trip_through_toml() {
    let d = Config::default();
    let text = to_toml(&d);
    assert_eq!(parse(&text).expect(&text), d, "{text}");
}

#[test]
fn full_file_round_trips_through_toml() {
    let c = parse(FULL).expect("valid");
    assert_ne!(c, Config::default());
    let text = to_toml(&c);
    assert_eq!(parse(&text).expect(&text), c, "{text}");
}

#[test]
fn shipped_macos_config_parses() {
    let c = parse(include_str!("../../dist/macos/santad.toml")).expect("dist/macos/santad.toml");
    assert_eq!(
        c.event_log_destination,
        LogDestination::File(SANTA_EVENT_LOG_PATH.into())
    );
}

#[test]
fn full_file_parses() {
    let c = parse(FULL).expect("valid");
    assert_eq!(c.client_mode, ClientMode::Lockdown);
    assert!(c.fail_closed && c.enable_bad_signature_protection && c.enable_machine_id_decoration);
    assert_eq!(c.event_log_format, LogFormat::Json);
    assert_eq!(
        c.event_log_destination,
        LogDestination::File("/var/log/santa.json".into())
    );
    assert_eq!(
        c.watch_paths,
        vec![
            WatchPath {
                path: "/".into(),
                scope: WatchScope::Mount
            },
            WatchPath {
                path: "/home".into(),
                scope: WatchScope::Filesystem
            }
        ]
    );
    assert_eq!(
        (
            c.deadline_ms,
            c.max_hash_bytes,
            c.worker_count,
            c.cache_capacity,
            c.deny_cache_ttl_ms,
            c.queue_depth,
            c.in_flight_slots,
            c.event_log_ring_size
        ),
        (2000, 104_857_600, 2, 4096, 0, 128, 256, 1024)
    );
    assert_eq!(c.worker_count_resolved(), 2);
    assert!(!c.log_exec_notifications);
    assert!(c.ignore_other_endpoint_security_clients);
    assert_eq!(c.backstop, BackstopMode::Off);
    assert_eq!(
        c.event_detail_url.as_deref(),
        Some("https://example.com/%file_sha%")
    );
    assert_eq!(c.machine_id.as_deref(), Some("host-1"));
    assert_eq!(c.rules_db_path, PathBuf::from("/tmp/rules.db"));
}

#[test]
fn client_mode_accepts_santa_numbers_and_any_case() {
    for (text, mode) in [
        ("ClientMode = 1", ClientMode::Monitor),
        ("ClientMode = 2", ClientMode::Lockdown),
        ("ClientMode = \"monitor\"", ClientMode::Monitor),
        ("ClientMode = \"Lockdown\"", ClientMode::Lockdown),
    ] {
        assert_eq!(parse(text).expect(text).client_mode, mode, "{text}");
    }
    assert_messages(&[
        ("ClientMode = 3", &["`ClientMode`", "Standalone"]),
        (
            "ClientMode = \"strict\"",
            &[
                "`ClientMode`",
                "\"strict\"",
                "expected \"MONITOR\", \"LOCKDOWN\", 1 or 2",
            ],
        ),
        ("ClientMode = 7", &["`ClientMode`", "integer `7`"]),
    ]);
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    for (text, expected) in [
        (
            "ClientMod = 1",
            "unknown key `ClientMod`; did you mean `ClientMode`?",
        ),
        (
            "deadlinems = 100",
            "unknown key `deadlinems`; did you mean `DeadlineMs`?",
        ),
        (
            "WatchPaths = [{ Paht = \"/\" }]",
            "unknown key `WatchPaths[0].Paht`; did you mean `Path`?",
        ),
        ("[section]\nDeadlineMs = 100", "unknown key `section`"),
        (
            "LockdownScope = { Users = [0], Everyone = true }",
            "unknown key `LockdownScope.Everyone`",
        ),
    ] {
        assert_eq!(message(text), format!("{ORIGIN}: {expected}"), "{text}");
    }
}

#[test]
fn wrong_types_name_the_key_and_what_it_takes() {
    assert_messages(&[
        (
            "FailClosed = \"yes\"",
            &["key `FailClosed`", "expected a boolean"],
        ),
        (
            "DeadlineMs = true",
            &["key `DeadlineMs`", "expected an integer"],
        ),
        (
            "DeadlineMs = 1.5",
            &["key `DeadlineMs`", "expected an integer"],
        ),
        ("MachineID = 1", &["key `MachineID`", "expected a string"]),
        (
            "IgnoreMounts = [1]",
            &["key `IgnoreMounts[0]`", "expected a string"],
        ),
        (
            "LockdownScope = \"root\"",
            &["key `LockdownScope`", "expected a table"],
        ),
        (
            "WatchPaths = [\"/\", 1]",
            &["key `WatchPaths[1]`", "a path string or a table"],
        ),
        (
            "WatchPaths = [{ Scope = \"mount\" }]",
            &["key `WatchPaths[0]`", "missing field `Path`"],
        ),
        (
            "Backstop = 1",
            &["key `Backstop`", "invalid type: integer `1`"],
        ),
        ("EventLogType = true", &["key `EventLogType`", "\"file\""]),
    ]);
}

#[test]
fn values_out_of_bounds_name_the_key_and_the_bound() {
    let bounds = [
        ("DeadlineMs", DEADLINE_MS_MIN, DEADLINE_MS_MAX),
        ("MaxHashBytes", MAX_HASH_BYTES_MIN, MAX_HASH_BYTES_MAX),
        ("WorkerCount", 0, WORKER_COUNT_MAX),
        ("CacheCapacity", CACHE_CAPACITY_MIN, CACHE_CAPACITY_MAX),
        ("DenyCacheTtlMs", 0, DENY_CACHE_TTL_MS_MAX),
        ("InFlightSlots", IN_FLIGHT_SLOTS_MIN, IN_FLIGHT_SLOTS_MAX),
        ("QueueDepth", QUEUE_DEPTH_MIN, QUEUE_DEPTH_MAX),
        ("EventLogRingSize", EVENT_LOG_RING_MIN, EVENT_LOG_RING_MAX),
    ];
    for (key, min, max) in bounds {
        let below = i64::try_from(min).expect("min") - 1;
        let above = max + 1;
        for n in [below.to_string(), above.to_string()] {
            assert_eq!(
                message(&format!("{key} = {n}")),
                format!("{ORIGIN}: key `{key}`: {n} is outside {min}..={max}")
            );
        }
        for n in [min, max] {
            // The other of QueueDepth and InFlightSlots where the cross-key check needs it.
            let text = if key == "QueueDepth" {
                format!("{key} = {n}\nInFlightSlots = {IN_FLIGHT_SLOTS_MAX}")
            } else {
                format!("{key} = {n}\nQueueDepth = {QUEUE_DEPTH_MIN}")
            };
            assert!(parse(&text).is_ok(), "{text}: the bound itself is inside");
        }
    }
    let long = "a".repeat(STRING_BYTES_MAX + 1);
    let many = |n: usize| vec!["\"/\""; n].join(", ");
    assert_messages(&[
        (
            &format!("MachineID = \"{long}\""),
            &[
                "key `MachineID`",
                &format!("longer than {STRING_BYTES_MAX} bytes"),
            ],
        ),
        (
            "UnknownBlockMessage = \"a\\u0000b\"",
            &["key `UnknownBlockMessage`", "NUL"],
        ),
        (
            &format!(
                "ControlSocketPath = \"/{}\"",
                "a".repeat(SOCKET_PATH_BYTES_MAX)
            ),
            &[
                "key `ControlSocketPath`",
                &format!("longer than {SOCKET_PATH_BYTES_MAX} bytes"),
            ],
        ),
        (
            &format!("WatchPaths = [{}]", many(WATCH_PATHS_MAX + 1)),
            &[
                "key `WatchPaths`",
                &format!("more than {WATCH_PATHS_MAX} entries"),
            ],
        ),
        (
            &format!("IgnoreMounts = [{}]", many(SCOPE_ENTRIES_MAX + 1)),
            &[
                "key `IgnoreMounts`",
                &format!("more than {SCOPE_ENTRIES_MAX} entries"),
            ],
        ),
        (
            &format!(
                "LockdownScope = {{ Cgroups = [{}] }}",
                many(SCOPE_CGROUPS_MAX + 1)
            ),
            &[
                "key `LockdownScope.Cgroups`",
                &format!("more than {SCOPE_CGROUPS_MAX} cgroups"),
            ],
        ),
        (
            "QueueDepth = 512\nInFlightSlots = 256",
            &["key `QueueDepth`", "exceeds InFlightSlots (256)"],
        ),
    ]);
    assert!(parse(&format!("WatchPaths = [{}]", many(WATCH_PATHS_MAX))).is_ok());
}

#[test]
fn bad_regexes_are_refused_by_key() {
    for key in ["AllowedPathRegex", "BlockedPathRegex"] {
        assert_messages(&[(
            &format!("{key} = \"([\""),
            &[&format!("key `{key}`"), "invalid regular expression"],
        )]);
        let c = parse(&format!("{key} = \"\"")).expect("empty is none");
        assert_eq!((c.allowed_path_regex, c.blocked_path_regex), (None, None));
    }
}

#[test]
fn other_values_name_the_key() {
    assert_messages(&[
        (
            "WatchPaths = [\"relative\"]",
            &["`WatchPaths[0]`", "not an absolute path"],
        ),
        (
            "WatchPaths = [{ Path = \"rel\" }]",
            &["`WatchPaths[0].Path`", "not an absolute path"],
        ),
        (
            "WatchPaths = [{ Path = \"/\", Scope = \"tree\" }]",
            &[
                "`WatchPaths[0].Scope`",
                "expected \"mount\" or \"filesystem\"",
            ],
        ),
        ("WatchPaths = []", &["`WatchPaths`", "at least one path"]),
        (
            "EventLogType = \"protobuf\"",
            &["`EventLogType`", "not supported"],
        ),
        ("EventLogType = \"xml\"", &["`EventLogType`", "\"xml\""]),
        (
            "RulesDbPath = \"rules.db\"",
            &["`RulesDbPath`", "not an absolute path"],
        ),
        (
            "EventLogPath = \"relative.log\"",
            &["`EventLogPath`", "nor \"-\""],
        ),
    ]);
}

#[test]
fn syntax_errors_name_the_file() {
    assert_messages(&[
        ("ClientMode = ", &["invalid TOML", "line 1"]),
        ("ControlSocketPath = \"/", &["invalid TOML"]),
        (
            "FailClosed = true\nFailClosed = false",
            &["invalid TOML", "duplicate key"],
        ),
    ]);
}

#[test]
fn event_log_types_map_to_format_and_destination() {
    let key_value = |timestamp_prefix| LogFormat::KeyValue { timestamp_prefix };
    let file = |p: &str| LogDestination::File(p.into());
    for (text, format, destination) in [
        (
            "EventLogType = \"file\"",
            key_value(true),
            file(SANTA_EVENT_LOG_PATH),
        ),
        (
            "EventLogType = \"FILE\"\nEventLogPath = \"-\"",
            key_value(true),
            LogDestination::Stdout,
        ),
        (
            "EventLogType = \"json\"",
            LogFormat::Json,
            file(SANTA_EVENT_LOG_PATH),
        ),
        (
            "EventLogType = \"syslog\"",
            key_value(false),
            LogDestination::Stdout,
        ),
        (
            "EventLogType = \"null\"",
            key_value(false),
            LogDestination::Null,
        ),
        (
            "EventLogPath = \"/var/log/x.log\"",
            key_value(true),
            file("/var/log/x.log"),
        ),
    ] {
        let c = parse(text).expect(text);
        assert_eq!(
            (c.event_log_format, c.event_log_destination),
            (format, destination),
            "{text}"
        );
    }
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

    let big = dir.path().join("big.toml");
    let size = usize::try_from(CONFIG_FILE_BYTES_MAX).expect("size") + 1;
    std::fs::write(&big, "#".repeat(size)).expect("write");
    let err = load_from(Some(&big), &default_file).expect_err("too big");
    assert!(
        err.to_string()
            .contains(&format!("larger than {CONFIG_FILE_BYTES_MAX} bytes")),
        "{err}"
    );
}

#[test]
fn sync_keys_take_santas_names_and_their_bounds() {
    let c = parse(
        r#"
SyncBaseURL = "https://sync.example.com/santa/"
MachineID = "A1B2"
MachineOwner = "alice"
FullSyncInterval = 120
SyncExtraHeaders = { "X-Fleet" = "blue", Authorization = "Bearer t" }
SyncClientContentEncoding = "GZIP"
ServerAuthRootsFile = "/etc/santa/ca.pem"
ClientAuthCertificateFile = "/etc/santa/client.pem"
ClientAuthKeyFile = "/etc/santa/client.key"
EnableAllEventUpload = true
DisableUnknownEventUpload = true
SyncEnableCleanSyncEventUpload = true
EventsDbPath = "/var/lib/santa/events.db"
EventSpoolMaxEvents = 500
SyncStatePath = "/var/lib/santa/state.json"
SyncRequestTries = 2
EnableBundles = false
EnableTransitiveRules = true
EnableSilentMode = true
EnableSilentTTYMode = true
"#,
    )
    .unwrap();
    let s = &c.sync;
    assert_eq!(
        s.base_url.as_deref(),
        Some("https://sync.example.com/santa/")
    );
    assert_eq!(s.machine_owner.as_deref(), Some("alice"));
    assert_eq!(s.full_sync_interval_secs, 120);
    assert_eq!(
        s.extra_headers,
        [
            ("Authorization".to_owned(), "Bearer t".to_owned()),
            ("X-Fleet".to_owned(), "blue".to_owned())
        ]
    );
    assert_eq!(s.content_encoding, SyncEncoding::Gzip);
    assert_eq!(
        s.client_auth_key_file.as_deref(),
        Some(Path::new("/etc/santa/client.key"))
    );
    assert!(s.enable_all_event_upload && s.disable_unknown_event_upload);
    assert!(s.enable_clean_sync_event_upload);
    assert_eq!(s.event_spool_max_events, 500);
    assert_eq!(s.request_tries, 2);
    assert!(!c.enable_bundles && c.enable_transitive_rules);
    assert!(c.enable_silent_mode && c.enable_silent_tty_mode);
    assert!(!Config::default().enable_silent_mode && !Config::default().enable_silent_tty_mode);
    assert!(Config::default().enable_bundles && !Config::default().enable_transitive_rules);
    let d = Config::default().sync;
    assert_eq!(d.full_sync_interval_secs, 600);
    assert_eq!(d.content_encoding, SyncEncoding::Deflate);
    assert_eq!(d.events_db_path, PathBuf::from("/var/db/santa/events.db"));
    assert_messages(&[
        ("FullSyncInterval = 30", &["FullSyncInterval", "60..="]),
        (
            "SyncClientContentEncoding = \"br\"",
            &["SyncClientContentEncoding", "deflate"],
        ),
        ("EventSpoolMaxEvents = 5", &["EventSpoolMaxEvents"]),
        (
            "EventsDbPath = \"events.db\"",
            &["EventsDbPath", "absolute"],
        ),
        (
            "ClientAuthCertificateFile = \"/c.pem\"",
            &["ClientAuthKeyFile", "both"],
        ),
        ("SyncExtraHeaders = [\"x\"]", &["SyncExtraHeaders"]),
        ("SyncRequestTries = 0", &["SyncRequestTries"]),
        ("SyncBaseUrl = \"https://x/\"", &["SyncBaseURL"]),
    ]);
}

#[test]
fn static_rules_are_read_in_santas_shape_and_checked() {
    let sha = "84de9c61777ca36b13228e2446d53e966096e78db7a72c632b5c185b2ffe68a6";
    let c = parse(&format!(
        r#"
[[StaticRules]]
identifier = "{sha}"
rule_type = "BINARY"
policy = "BLOCKLIST"
custom_msg = "never"
custom_url = "https://example.com/why"

[[StaticRules]]
identifier = "EQHXZ8M8AV"
rule_type = "TEAMID"
policy = "ALLOWLIST"
"#
    ))
    .unwrap();
    assert_eq!(c.static_rules.len(), 2);
    let r = &c.static_rules[0];
    assert_eq!(r.identifier.to_string(), sha);
    assert_eq!(r.state, santa_rules::RuleState::Block);
    assert_eq!(r.custom_msg.as_deref(), Some("never"));
    assert_eq!(r.custom_url.as_deref(), Some("https://example.com/why"));
    assert_eq!(c.static_rules[1].rule_type(), santa_rules::RuleType::TeamId);
    assert!(Config::default().static_rules.is_empty());
    assert_messages(&[
        (
            "[[StaticRules]]\nidentifier = \"x\"\nrule_type = \"BINARY\"\npolicy = \"BLOCKLIST\"",
            &["StaticRules[0]", "64 hexadecimal"],
        ),
        (
            &format!(
                "[[StaticRules]]\nidentifier = \"{sha}\"\nrule_type = \"BINARY\"\npolicy = \"REMOVE\""
            ),
            &["StaticRules[0]", "REMOVE"],
        ),
        (
            &format!(
                "[[StaticRules]]\nidentifier = \"{sha}\"\nrule_type = \"BINARY\"\npolicy = \"DENY\""
            ),
            &["StaticRules[0]", "unknown policy"],
        ),
        (
            &format!("[[StaticRules]]\nidentifier = \"{sha}\"\npolicy = \"BLOCKLIST\""),
            &["StaticRules[0]", "rule_type"],
        ),
        ("StaticRules = [\"x\"]", &["StaticRules[0]", "table"]),
        ("StaticRules = 3", &["StaticRules"]),
    ]);
}

#[test]
fn metric_keys_take_santas_names_defaults_and_bounds() {
    let c = parse(
        r#"
MetricURL = "https://metrics.example.com/santa?fleet=blue"
MetricFormat = "RawJSON"
MetricExportInterval = 5
MetricExportTimeout = 3
MetricExtraLabels = { site = "roam", host_name = "" }
MetricExportTextfile = "/var/lib/node_exporter/textfile_collector/santa.prom"
"#,
    )
    .unwrap();
    let m = &c.metrics;
    assert_eq!(
        m.url.as_deref(),
        Some("https://metrics.example.com/santa?fleet=blue")
    );
    assert_eq!(m.format, Some(MetricFormat::RawJson));
    assert_eq!((m.export_interval_secs, m.export_timeout_secs), (5, 3));
    assert_eq!(
        m.extra_labels,
        [
            ("host_name".to_owned(), String::new()),
            ("site".to_owned(), "roam".to_owned())
        ]
    );
    assert_eq!(
        m.textfile.as_deref(),
        Some(Path::new(
            "/var/lib/node_exporter/textfile_collector/santa.prom"
        ))
    );
    assert!(m.enabled());
    let d = Config::default().metrics;
    assert_eq!((d.export_interval_secs, d.export_timeout_secs), (30, 30));
    assert!(!d.enabled() && d.url.is_none() && d.format.is_none());
    assert!(
        parse("MetricFormat = \"rawjson\"").is_ok(),
        "a format alone exports nothing"
    );
    assert_messages(&[
        (
            "MetricURL = \"https://m.example.com/\"",
            &["MetricFormat", "rawjson"],
        ),
        (
            "MetricURL = \"http://m/\"\nMetricFormat = \"monarchjson\"",
            &["MetricFormat", "monarchjson", "not supported"],
        ),
        (
            "MetricFormat = \"proto\"",
            &["MetricFormat", "not supported"],
        ),
        ("MetricFormat = \"xml\"", &["MetricFormat", "rawjson"]),
        (
            "MetricURL = \"ftp://m/\"\nMetricFormat = \"rawjson\"",
            &["MetricURL", "http or https"],
        ),
        (
            "MetricURL = \"file:///tmp/m.json\"\nMetricFormat = \"rawjson\"",
            &["MetricURL", "MetricExportTextfile"],
        ),
        (
            "MetricURL = \"https:///path\"\nMetricFormat = \"rawjson\"",
            &["MetricURL", "no host"],
        ),
        (
            "MetricURL = \"https://a b/\"\nMetricFormat = \"rawjson\"",
            &["MetricURL", "whitespace"],
        ),
        (
            "MetricExportInterval = 0",
            &["MetricExportInterval", "1..=86400"],
        ),
        ("MetricExportInterval = 86401", &["MetricExportInterval"]),
        (
            "MetricExportTimeout = 0",
            &["MetricExportTimeout", "1..=300"],
        ),
        ("MetricExportTimeout = 301", &["MetricExportTimeout"]),
        (
            "MetricExtraLabels = { \"\" = \"x\" }",
            &["MetricExtraLabels", "empty name"],
        ),
        ("MetricExtraLabels = [\"x\"]", &["MetricExtraLabels"]),
        (
            "MetricExportTextfile = \"santa.prom\"",
            &["MetricExportTextfile", "absolute"],
        ),
        (
            "MetricExportTextfile = \"/var/lib/santa.txt\"",
            &["MetricExportTextfile", ".prom"],
        ),
        (
            "MetricExportTextfile = \"/var/lib/.prom\"",
            &["MetricExportTextfile", ".prom"],
        ),
        (
            "MetricExportTextfile = \"/var/lib/../etc/santa.prom\"",
            &["MetricExportTextfile", ".."],
        ),
        ("MetricUrl = \"https://x/\"", &["MetricURL"]),
    ]);
    let many: Vec<String> = (0..=METRIC_EXTRA_LABELS_MAX)
        .map(|i| format!("l{i} = \"v\""))
        .collect();
    assert_messages(&[(
        &format!("MetricExtraLabels = {{ {} }}", many.join(", ")),
        &["MetricExtraLabels", "more than 32"],
    )]);
}
