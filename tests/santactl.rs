//! santactl against a running santad, end to end, as root, each test on its own private tmpfs
//! (see `common`: santad watches only that tmpfs).
//!
//! The santactl binary is another package's: it is found beside santad in the same target
//! directory. `cargo test -p santad -p santactl` and `cargo test --workspace` build both; a run
//! that did not build it fails with a message saying so.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ctl::{Out, ctl, ctl_as, json, ok};
use common::{is_eperm, run, sha256_hex};
use santa_testkit::Rng;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NOBODY: u32 = 65534;

/// Runs santactl as `nobody`.
fn ctl_nobody(socket: &Path, args: &[&str]) -> Out {
    ctl_as(NOBODY, socket, args)
}

fn metric(socket: &Path, name: &str) -> u64 {
    json(&ctl(socket, &["metrics", "--json"]))[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// A santad whose state directory (and so its socket) others may reach.
fn start_reachable(mode: &str) -> common::Santad {
    common::start_with(mode, "", |dir| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
}

#[test]
fn status_version_metrics_flushcache_and_checkcache() {
    let s = common::start("LOCKDOWN", "DeadlineMs = 1234\nFailClosed = true");
    let sock = &s.socket_path;
    let allowed = s.binary("allowed", "st");
    ok(&ctl(
        sock,
        &["rule", "--allow", "--sha256", &sha256_hex(&allowed)],
    ));
    assert!(run(&allowed).unwrap().success());

    let text = ctl(sock, &["status"]);
    let t = ok(&text);
    assert!(t.contains(">>> Daemon Info"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.starts_with("  Mode") && l.ends_with("| Lockdown")),
        "{t}"
    );
    assert!(t.contains(&s.mount.path().display().to_string()), "{t}");
    let st = json(&ctl(sock, &["status", "--json"]));
    assert_eq!(st["daemon"]["mode"], "Lockdown");
    assert_eq!(st["daemon"]["log_type"], "file");
    assert_eq!(st["daemon"]["file_logging"], true);
    assert_eq!(
        st["daemon"]["watch_paths"][0],
        s.mount.path().display().to_string()
    );
    assert_eq!(st["events"]["deadline_ms"], 1234);
    assert_eq!(
        st["events"]["default_decision"], "deny",
        "FailClosed in Lockdown"
    );
    assert_eq!(st["rule_types"]["binary_rules"], 1);
    assert!(st["events"]["events_handled"].as_u64().unwrap() >= 1);
    assert!(st["cache"]["entries"].as_u64().unwrap() >= 1);

    let v = json(&ctl(sock, &["version", "--json"]));
    assert_eq!(v["santad"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["santactl"], env!("CARGO_PKG_VERSION"));
    assert!(ok(&ctl(sock, &["version"])).starts_with("santad               | "));

    // The allowed binary is in the cache; flushcache empties it.
    let cc = ctl(sock, &["checkcache", allowed.to_str().unwrap()]);
    assert_eq!(ok(&cc).trim(), "File exists in [allowlist] cache");
    let before = metric(sock, "engine.flushes.operator");
    assert_eq!(
        ok(&ctl(sock, &["flushcache"])).trim(),
        "Cache flush requested"
    );
    assert_eq!(metric(sock, "engine.flushes.operator"), before + 1);
    let cc = ctl(sock, &["checkcache", allowed.to_str().unwrap()]);
    assert_eq!(ok(&cc).trim(), "File does not exist in cache");
    let unknown = s.binary("unknown", "st2");
    assert!(is_eperm(&run(&unknown)));
    let cc = ctl(sock, &["checkcache", unknown.to_str().unwrap()]);
    assert_eq!(ok(&cc).trim(), "File exists in [blocklist] cache");

    let m = json(&ctl(sock, &["metrics", "--json"]));
    assert!(m["fanotify.permission_events"].as_u64().unwrap() >= 2);
    assert!(m["log.written"].as_u64().is_some());
    assert!(ok(&ctl(sock, &["metrics"])).starts_with(">>> Metrics"));

    // Not running: exit 3, and version still prints santactl's.
    let gone = s.state.path().join("nothing.sock");
    assert_eq!(ctl(&gone, &["status"]).code, 3);
    assert!(ok(&ctl(&gone, &["version"])).contains("santactl"));
}

#[test]
fn status_shows_the_defaults_answered_and_why() {
    const DEADLINE_MS: u64 = 10;
    let s = common::start_with_deadline(DEADLINE_MS);
    let sock = &s.socket_path;
    let reasons = [
        "deadline",
        "evaluation_failed",
        "queue_full",
        "shutting_down",
        "slots_full",
        "stat_failed",
    ];
    let st = json(&ctl(sock, &["status", "--json"]));
    assert_eq!(st["events"]["defaults_answered"], 0, "{st}");
    let by = st["events"]["defaults_by_reason"].as_object().unwrap();
    let mut listed: Vec<&str> = by.keys().map(String::as_str).collect();
    listed.sort();
    assert_eq!(listed, reasons, "every reason listed, zero or not");
    assert!(by.values().all(|v| v == 0), "{st}");

    // 200 MiB: hashing takes ~100 ms, ten times the deadline, so the deadline answers.
    let big = s.binary("big", "defaults");
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
    }
    assert!(run(&big).unwrap().success(), "Monitor's default is allow");
    s.wait_log(1, |l| {
        common::field(l, "explain") == Some("default answer: deadline")
    });
    let st = json(&ctl(sock, &["status", "--json"]));
    let ev = &st["events"];
    let by = ev["defaults_by_reason"].as_object().unwrap();
    let deadline = by["deadline"].as_u64().unwrap();
    assert!(deadline >= 1, "{st}");
    assert_eq!(ev["deadline_defaults"], deadline, "the older field agrees");
    let sum: u64 = by.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(
        ev["defaults_answered"], sum,
        "the total is the sum of the reasons"
    );
    assert_eq!(by["queue_full"], ev["queue_full_defaults"]);

    let text = ctl(sock, &["status"]);
    let t = ok(&text);
    let value = |key: &str| -> String {
        t.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(" | ")?;
                (k.trim() == key).then(|| v.to_owned())
            })
            .unwrap_or_else(|| panic!("no {key:?} row in\n{t}"))
    };
    assert!(t.contains(">>> Default Answers"), "{t}");
    assert_eq!(value("Defaults Answered"), sum.to_string());
    assert_eq!(
        value("Deadline"),
        format!("{deadline} (no decision before the deadline)")
    );
    assert_eq!(
        value("Stat Failed"),
        format!("{} (the file could not be stat'ed)", by["stat_failed"])
    );
    for label in [
        "Queue Full",
        "Slots Full",
        "Shutting Down",
        "Evaluation Failed",
    ] {
        value(label);
    }
}

#[test]
fn a_rule_added_with_path_takes_effect_on_the_next_exec_and_can_be_checked_and_removed() {
    let s = common::start("MONITOR", "");
    let sock = &s.socket_path;
    let bin = s.binary("target", "rp");
    assert!(run(&bin).unwrap().success());
    assert!(run(&bin).unwrap().success(), "allowed from the caches");
    let added = ctl(sock, &["rule", "--block", "--path", bin.to_str().unwrap()]);
    assert_eq!(
        ok(&added).trim(),
        format!("Added rule for SHA-256: {}.", sha256_hex(&bin))
    );
    assert!(
        is_eperm(&run(&bin)),
        "the block applies at the very next exec"
    );

    let check = ctl(sock, &["rule", "--check", "--path", bin.to_str().unwrap()]);
    assert_eq!(
        ok(&check),
        "Blocked (Binary)\nExpected Decision: Denied by rule\n"
    );
    let check = ctl(sock, &["rule", "--check", "--sha256", &sha256_hex(&bin)]);
    assert_eq!(ok(&check).trim(), "Blocked (Binary)");
    let other = s.binary("other", "rp2");
    let check = ctl(
        sock,
        &["rule", "--check", "--identifier", &sha256_hex(&other)],
    );
    assert_eq!(ok(&check).trim(), "No matching rule exists");
    let check = json(&ctl(
        sock,
        &[
            "rule",
            "--check",
            "--json",
            "--path",
            other.to_str().unwrap(),
        ],
    ));
    assert_eq!(check["decision"], "Allowed (Unknown, Monitor mode)");
    assert_eq!(check["rule"], Value::Null);

    let fi = ctl(sock, &["fileinfo", "--key", "Rule", bin.to_str().unwrap()]);
    assert_eq!(ok(&fi), "Blocked (Binary)\n");

    // Bad input: a clear error and exit 2, nothing sent.
    let bad = ctl(sock, &["rule", "--block", "--identifier", "xyz"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("64 hexadecimal"), "{}", bad.stderr);
    let bad = ctl(
        sock,
        &[
            "rule",
            "--block",
            "--teamid",
            "--path",
            bin.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.code, 2, "an ELF has no Team ID: {}", bad.stderr);

    let removed = ctl(sock, &["rule", "--remove", "--path", bin.to_str().unwrap()]);
    assert!(ok(&removed).starts_with("Removed rule for SHA-256"));
    assert!(run(&bin).unwrap().success(), "allowed again once removed");
}

#[test]
fn export_clean_import_restores_the_same_decisions() {
    let s = common::start("LOCKDOWN", "");
    let sock = &s.socket_path;
    let a = s.binary("a", "ei-a");
    let b = s.binary("b", "ei-b");
    let c = s.binary("c", "ei-c");
    ok(&ctl(
        sock,
        &["rule", "--allow", "--path", a.to_str().unwrap()],
    ));
    ok(&ctl(
        sock,
        &[
            "rule",
            "--compiler",
            "--path",
            c.to_str().unwrap(),
            "--comment",
            "cc",
        ],
    ));
    ok(&ctl(
        sock,
        &[
            "rule",
            "--block",
            "--identifier",
            &sha256_hex(&b),
            "--message",
            "no b",
        ],
    ));
    ok(&ctl(
        sock,
        &["rule", "--allow", "--teamid", "--identifier", "S8XHQB96PW"],
    ));
    let decisions = || {
        [&a, &b, &c]
            .iter()
            .map(|p| run(p).map(|s| s.success()).unwrap_or(false))
            .collect::<Vec<bool>>()
    };
    assert_eq!(decisions(), [true, false, true]);

    let export = s.state.path().join("rules.json");
    let out = ctl(sock, &["rule", "--export", export.to_str().unwrap()]);
    assert!(ok(&out).contains("Exported 4 rules"), "{}", out.stdout);
    let exported: Value = serde_json::from_slice(&std::fs::read(&export).unwrap()).unwrap();
    let list = exported["rules"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter()
            .any(|r| r["policy"] == "BLOCKLIST" && r["custom_msg"] == "no b")
    );
    assert!(
        list.iter()
            .any(|r| r["rule_type"] == "TEAMID" && r["identifier"] == "S8XHQB96PW")
    );

    assert_eq!(
        ok(&ctl(sock, &["rule", "--clean-all"])).trim(),
        "Rules were successfully deleted."
    );
    assert_eq!(
        json(&ctl(sock, &["status", "--json"]))["rule_types"]["total_rules"],
        0
    );
    assert_eq!(decisions(), [false, false, false], "Lockdown without rules");
    let none = ctl(sock, &["rule", "--export", export.to_str().unwrap()]);
    assert_eq!(none.code, 1);
    assert!(none.stderr.contains("No rules to export."));

    let imported = ctl(sock, &["rule", "--import", export.to_str().unwrap()]);
    assert_eq!(
        ok(&imported).trim(),
        format!("Imported rules from {}.", export.display())
    );
    assert_eq!(decisions(), [true, false, true], "the same decisions again");
    let again = s.state.path().join("again.json");
    ok(&ctl(sock, &["rule", "--export", again.to_str().unwrap()]));
    let sorted = |p: &Path| {
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        let mut rules: Vec<String> = v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        rules.sort();
        rules
    };
    assert_eq!(
        sorted(&export),
        sorted(&again),
        "export → import → export is stable"
    );

    // A bad import changes nothing and says which entry is wrong.
    let bad = s.state.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"rules":[{"identifier":"S8XHQB96PW","policy":"BLOCKLIST","rule_type":"TEAMID"},{"identifier":"zz","policy":"BLOCKLIST","rule_type":"BINARY"}]}"#,
    )
    .unwrap();
    let out = ctl(sock, &["rule", "--import", bad.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Failed to import rules"),
        "{}",
        out.stderr
    );
    assert_eq!(
        json(&ctl(sock, &["status", "--json"]))["rule_types"]["total_rules"],
        4
    );
}

fn manifest() -> (PathBuf, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/macho");
    let m: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap())
        .expect("the shared Mach-O fixtures are beside the repo");
    (dir, m)
}

/// The slice Santa reports for a fat file: the host's architecture, else the first signed one.
fn host_slice(fixture: &Value) -> &Value {
    // Mach-O's name for the host architecture, as the manifest writes it.
    let host = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let slices = fixture["slices"].as_array().unwrap();
    slices
        .iter()
        .find(|s| s["arch"] == host)
        .or_else(|| slices.iter().find(|s| s["cdhash"].is_string()))
        .unwrap_or(&slices[0])
}

fn santa_file_type(mh: &str) -> &'static str {
    match mh {
        "MH_EXECUTE" => "Executable",
        "MH_DYLIB" => "Dynamic Library",
        "MH_BUNDLE" => "Bundle/Plugin",
        other => panic!("fixture file type {other} not mapped"),
    }
}

#[test]
fn fileinfo_prints_the_manifest_values_for_every_fixture() {
    let s = common::start("MONITOR", "");
    let sock = &s.socket_path;
    let (dir, m) = manifest();
    let fixtures = m["fixtures"].as_array().unwrap();
    assert!(fixtures.len() >= 7);
    let paths: Vec<String> = fixtures
        .iter()
        .map(|f| dir.join(f["file"].as_str().unwrap()).display().to_string())
        // Santa's Path line is the path with its links and `..` resolved.
        .map(|p| std::fs::canonicalize(&p).unwrap().display().to_string())
        .collect();
    let args = |extra: &[&str]| {
        let mut v: Vec<&str> = vec!["fileinfo"];
        v.extend_from_slice(extra);
        v.extend(paths.iter().map(String::as_str));
        v.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let run_args = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ctl(sock, &a)
    };
    let all = json(&run_args(args(&["--json"])));
    let text = run_args(args(&[]));
    let text = ok(&text);
    // Each file's block starts with its Path line (blank lines also separate certificates).
    let blocks: Vec<String> = text
        .split("\nPath ")
        .filter(|b| !b.trim().is_empty())
        .map(|b| format!("Path {}", b.strip_prefix("Path ").unwrap_or(b)))
        .collect();
    assert_eq!(all.as_array().unwrap().len(), fixtures.len());
    assert_eq!(
        blocks.len(),
        fixtures.len(),
        "one text block per file:\n{text}"
    );
    for (i, f) in fixtures.iter().enumerate() {
        let j = &all[i];
        let block = blocks[i].as_str();
        let field = |key: &str| -> Option<String> {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(": ")?;
                (k.trim_end() == key).then(|| v.to_owned())
            })
        };
        let name = f["file"].as_str().unwrap();
        let slice = host_slice(f);
        assert_eq!(j["Path"], paths[i].as_str(), "{name}");
        assert_eq!(field("Path").as_deref(), Some(paths[i].as_str()), "{name}");
        assert_eq!(j["SHA-256"], f["sha256"], "{name}");
        assert_eq!(field("SHA-256").as_deref(), f["sha256"].as_str(), "{name}");
        let archs: Vec<&str> = f["slices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["arch"].as_str().unwrap())
            .collect();
        let ty = format!(
            "{} ({})",
            santa_file_type(slice["filetype"].as_str().unwrap()),
            archs.join(", ")
        );
        assert_eq!(j["Type"], ty.as_str(), "{name}");
        assert_eq!(field("Type"), Some(ty), "{name}");
        // Each identity the file has, the same in the JSON and in the text (absent from both
        // when it has none).
        for (label, key) in [
            ("CDHash", "cdhash"),
            ("Team ID", "team_id"),
            ("Signing ID", "santa_signing_id"),
        ] {
            assert_eq!(
                j.get(label),
                slice.get(key).filter(|c| c.is_string()),
                "{name}: {label}"
            );
            assert_eq!(
                field(label).as_deref(),
                slice[key].as_str(),
                "{name}: {label}"
            );
        }
        let kind = slice["signature_kind"].as_str().unwrap_or("");
        let mixed = f["slices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["signature_kind"] == "unsigned");
        let signed = if mixed {
            "Yes, but signing is not consistent for all architectures"
        } else if kind.starts_with("ad-hoc") {
            "Yes, but ad-hoc"
        } else {
            "Yes"
        };
        assert_eq!(j["Code-signed"], signed, "{name}");
        assert_eq!(field("Code-signed").as_deref(), Some(signed), "{name}");
        assert_eq!(j["Rule"], "None", "{name}");
        assert_eq!(j["Expected Decision"], "Allowed (Unknown, Monitor mode)");
        assert_eq!(
            field("Expected Decision").as_deref(),
            Some("Allowed (Unknown, Monitor mode)")
        );
        match slice["cms"]["leaf_cert_sha256"].as_str() {
            Some(leaf) => {
                let chain = j["Signing Chain"].as_array().unwrap();
                let want = slice["cms"]["certificates"].as_array().unwrap();
                assert_eq!(chain.len(), want.len(), "{name}");
                assert_eq!(chain[0]["SHA-256"], leaf, "leaf first: {name}");
                for w in want {
                    assert!(chain.iter().any(|c| c["SHA-256"] == w["sha256"]), "{name}");
                }
                assert_eq!(chain.last().unwrap()["Common Name"], "Apple Root CA");
                assert!(block.contains("Signing Chain:\n    1. SHA-256             : "));
                assert!(block.contains(&format!("    1. SHA-256             : {leaf}")));
            }
            None => assert!(j.get("Signing Chain").is_none(), "{name}"),
        }
    }

    // A Team ID rule made from the signed fixture applies to it (production signature).
    let devid = paths
        .iter()
        .find(|p| p.contains("devid_app"))
        .unwrap()
        .clone();
    ok(&ctl(
        sock,
        &["rule", "--block", "--teamid", "--path", &devid],
    ));
    let rule = ctl(
        sock,
        &[
            "fileinfo",
            "--key",
            "Rule",
            "--key",
            "Expected Decision",
            &devid,
        ],
    );
    assert_eq!(
        ok(&rule),
        "Rule             : Blocked (TeamID)\nExpected Decision: Denied by rule\n\n"
    );
    // --cert-index and --key, --filter.
    let root = ctl(
        sock,
        &[
            "fileinfo",
            "--cert-index",
            "-1",
            "--key",
            "Common Name",
            &devid,
        ],
    );
    assert_eq!(ok(&root), "Apple Root CA\n");
    let leaf = ctl(
        sock,
        &[
            "fileinfo",
            "--cert-index",
            "0",
            "--json",
            "--key",
            "SHA-256",
            &devid,
        ],
    );
    assert_eq!(
        json(&leaf)[0]["SHA-256"],
        "0a06c79b2e48d77e9f694fa3e4b71cc64b01d6ab2743b04ecf5364ee3e29c262"
    );
    let filtered = run_args(args(&["--filter", "Type=dynamic library", "--key", "Path"]));
    let shown: Vec<&str> = ok(&filtered).lines().collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|p| p.contains("libwebpdemux")));
    // --bundleinfo: the bundle and its one executable.
    let b = json(&ctl(sock, &["fileinfo", "--bundleinfo", "--json", &devid]));
    let info = &b[0]["Bundle Info"];
    assert_eq!(info["Main Bundle ID"], "org.mitmproxy.macos-redirector");
    assert_eq!(
        info["Bundle Hashes"][0]["SHA-256"],
        fixtures
            .iter()
            .find(|f| f["file"].as_str().unwrap().contains("devid"))
            .unwrap()["sha256"]
    );
    // --recursive over the fixture directory finds every fixture.
    let r = ctl(
        sock,
        &["fileinfo", "-r", "--key", "SHA-256", dir.to_str().unwrap()],
    );
    for f in fixtures {
        assert!(ok(&r).contains(f["sha256"].as_str().unwrap()));
    }

    // A file signed with a development certificate (a root that is not Apple's): a Team ID
    // rule for its team is found, and Santa's fileinfo says why it does not apply.
    let selfsigned = std::path::absolute("signing/tests/fixtures/signed/selfsigned_root.macho")
        .unwrap()
        .display()
        .to_string();
    ok(&ctl(
        sock,
        &["rule", "--block", "--teamid", "--identifier", "ABCDE12345"],
    ));
    let j = json(&ctl(sock, &["fileinfo", "--json", &selfsigned]));
    let ignored = "None (TeamID rule ignored because code signed with a development certificate.)";
    assert_eq!(j[0]["Code-signed"], "Yes, but with development certificate");
    assert_eq!(j[0]["Rule"], ignored);
    assert_eq!(j[0]["Expected Decision"], ignored);

    // Without santad: Rule and Expected Decision say so, as Santa's do; the rest is the same.
    let gone = s.state.path().join("gone.sock");
    let o = ctl(&gone, &["fileinfo", "--json", &devid]);
    let j = json(&o);
    assert_eq!(j[0]["Rule"], "Could not communicate with daemon");
    assert_eq!(
        j[0]["Expected Decision"],
        "Could not communicate with daemon"
    );
    assert_eq!(j[0]["Team ID"], "S8XHQB96PW");
    // Errors: a missing file and a directory without -r; exit 1.
    let o = ctl(
        sock,
        &["fileinfo", "/nonexistent/file", dir.to_str().unwrap()],
    );
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("File does not exist: /nonexistent/file"));
    assert!(o.stderr.contains("is a directory.  Use the -r flag"));
}

#[test]
fn unprivileged_users_cannot_change_policy_but_can_read() {
    let s = start_reachable("LOCKDOWN");
    let sock = &s.socket_path;
    let allowed = s.binary("allowed", "np-a");
    let other = s.binary("other", "np-b");
    ok(&ctl(
        sock,
        &["rule", "--allow", "--path", allowed.to_str().unwrap()],
    ));
    let import = s.state.path().join("import.json");
    std::fs::write(
        &import,
        format!(
            r#"{{"rules":[{{"identifier":"{}","policy":"ALLOWLIST","rule_type":"BINARY"}}]}}"#,
            sha256_hex(&other)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&import, std::fs::Permissions::from_mode(0o644)).unwrap();
    let export = std::env::temp_dir().join(format!("santactl-nobody-{}.json", std::process::id()));
    let status_before = json(&ctl(sock, &["status", "--json"]));
    let flushes_before = metric(sock, "engine.flushes.operator");
    let refused_before = metric(sock, "control.refused");

    let a = sha256_hex(&allowed);
    let o = sha256_hex(&other);
    let attempts: Vec<Vec<&str>> = vec![
        vec!["rule", "--allow", "--identifier", &o],
        vec!["rule", "--block", "--identifier", &a],
        vec!["rule", "--remove", "--identifier", &a],
        vec!["rule", "--allow", "--path", other.to_str().unwrap()],
        vec!["rule", "--import", import.to_str().unwrap()],
        vec!["rule", "--clean-all"],
        vec!["rule", "--export", export.to_str().unwrap()],
        vec!["flushcache"],
    ];
    for args in &attempts {
        let out = ctl_nobody(sock, args);
        assert_eq!(
            out.code, 1,
            "{args:?} as nobody: {} {}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.contains("permission denied"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!export.exists(), "nothing exported");
    assert_eq!(
        metric(sock, "control.refused"),
        refused_before + attempts.len() as u64
    );
    assert_eq!(metric(sock, "engine.flushes.operator"), flushes_before);
    let status_after = json(&ctl(sock, &["status", "--json"]));
    assert_eq!(status_before["rule_types"], status_after["rule_types"]);
    assert!(
        run(&allowed).unwrap().success(),
        "the allow rule is still there"
    );
    assert!(is_eperm(&run(&other)), "no allow rule was added");

    // Reading is open to everyone.
    let st = json(&ctl_nobody(sock, &["status", "--json"]));
    assert_eq!(st["daemon"]["mode"], "Lockdown");
    ok(&ctl_nobody(sock, &["version"]));
    ok(&ctl_nobody(sock, &["metrics"]));
    let check = ctl_nobody(sock, &["rule", "--check", "--identifier", &a]);
    assert_eq!(ok(&check).trim(), "Allowed (Binary)");
    let cc = ctl_nobody(sock, &["checkcache", allowed.to_str().unwrap()]);
    assert_eq!(ok(&cc).trim(), "File exists in [allowlist] cache");
}

/// Sends one hostile message and reads whatever santad answers until it closes.
fn hostile(sock: &Path, rng: &mut Rng) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let msg: Vec<u8> = match rng.below(6) {
        // Random bytes, random length (often a huge announced length).
        0 => {
            let n = rng.below(64) as usize;
            rng.bytes(n)
        }
        // A short header.
        1 => {
            let n = rng.below(4) as usize;
            rng.bytes(n)
        }
        // A valid header with a truncated body.
        2 => {
            let mut m = 100u32.to_be_bytes().to_vec();
            let n = rng.below(100) as usize;
            m.extend(rng.bytes(n));
            m
        }
        // Oversized announced length.
        3 => {
            let len = 64u32 << 10 | rng.below(u32::MAX as u64 - (64 << 10)) as u32;
            let mut m = len.max((64 << 10) + 1).to_be_bytes().to_vec();
            m.extend(rng.bytes(16));
            m
        }
        // Well-framed garbage or wrong JSON.
        4 => {
            let bodies: [&[u8]; 5] = [
                b"{}",
                b"{\"command\":\"rm -rf\"}",
                b"[1,2,3]",
                b"{\"command\":\"rule_check\",\"target\":{\"kind\":\"file\"}}",
                b"\xff\xfe\x00",
            ];
            let body = bodies[rng.below(bodies.len() as u64) as usize];
            let mut m = (body.len() as u32).to_be_bytes().to_vec();
            m.extend_from_slice(body);
            m
        }
        // A well-framed valid request with hostile content.
        _ => {
            let body = format!(
                "{{\"command\":\"rule_check\",\"target\":{{\"kind\":\"identifier\",\"rule_type\":\"BINARY\",\"identifier\":\"{}\"}}}}",
                "a".repeat(rng.below(200) as usize)
            );
            let mut m = (body.len() as u32).to_be_bytes().to_vec();
            m.extend_from_slice(body.as_bytes());
            m
        }
    };
    let _ = s.write_all(&msg);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

#[test]
fn ten_thousand_hostile_messages_leave_santad_serving_with_no_fd_leak() {
    let s = start_reachable("MONITOR");
    let sock = &s.socket_path;
    ok(&ctl(sock, &["status"]));
    let fds_before = s.settled_fds();
    let seed = std::env::var("SANTACTL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (SANTACTL_FUZZ_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let mut answered_errors = 0;
    for i in 0..10_000 {
        let answer = hostile(sock, &mut rng);
        if answer.len() > 4 {
            let v: Value = serde_json::from_slice(&answer[4..])
                .unwrap_or_else(|e| panic!("seed {seed}, message {i}: unparsable answer {e}"));
            if v.get("Err").is_some() {
                answered_errors += 1;
            }
        }
    }
    assert!(
        answered_errors > 1_000,
        "seed {seed}: errors are answered ({answered_errors})"
    );
    // A slow client is dropped after the idle timeout, and others are served meanwhile.
    let mut slow = UnixStream::connect(sock).unwrap();
    slow.write_all(&[0, 0]).unwrap();
    ok(&ctl(sock, &["status"]));
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let v: Value = serde_json::from_slice(&answer[4..]).unwrap();
    assert_eq!(v["Err"]["kind"], "timed_out");

    let st = json(&ctl(sock, &["status", "--json"]));
    assert_eq!(
        st["daemon"]["mode"], "Monitor",
        "seed {seed}: still serving"
    );
    let m = json(&ctl(sock, &["metrics", "--json"]));
    assert!(m["control.malformed"].as_u64().unwrap() > 0);
    assert!(m["control.too_large"].as_u64().unwrap() > 0);
    let fds_after = s.settled_fds();
    assert_eq!(
        fds_before.len(),
        fds_after.len(),
        "seed {seed}: fd count changed\nbefore: {fds_before:#?}\nafter: {fds_after:#?}"
    );
    let bin = s.binary("still", "fz");
    assert!(run(&bin).unwrap().success(), "execs are still answered");
}

#[test]
fn a_closed_pipe_ends_santactl_quietly() {
    let (dir, _) = manifest();
    // About 250 KB of output: more than a pipe holds, so santactl is still writing when the
    // reader goes away.
    let mut child = Command::new(common::santactl_path())
        .args(["--socket", "/nonexistent", "fileinfo", "-r"])
        .args(std::iter::repeat_n(&dir, 50))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

/// Santa's fileinfo keys beyond the identities: signing times, entitlements (with
/// `--entitlements`), dates in the local zone (with `--localtz`), and the Universal Signing
/// Chain of a file whose slices are signed differently. santad need not run for any of them.
#[test]
fn fileinfo_shows_signing_times_entitlements_and_the_universal_chain() {
    let (dir, m) = manifest();
    let gone = std::env::temp_dir().join("santactl-no-santad.sock");
    let devid = dir.join("devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector");
    let devid = devid.to_str().unwrap();
    let fixtures = m["fixtures"].as_array().unwrap();
    let name = "devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector";
    let slice = host_slice(fixtures.iter().find(|f| f["file"] == name).unwrap());
    // The manifest's "2026-10-22 00:43:14+00:00", in Santa's ISO 8601.
    let want_time = slice["cms"]["signing_time"]
        .as_str()
        .unwrap()
        .replacen(' ', "T", 1)
        .replace("+00:00", "Z");
    let j = json(&ctl(&gone, &["fileinfo", "--json", devid]));
    assert_eq!(j[0]["Signing Time"], want_time.as_str());
    // The timestamp authority's time is the signing moment give or take the round trip.
    let secure = j[0]["Secure Signing Time"].as_str().unwrap();
    assert_eq!(&secure[..16], &want_time[..16], "{secure} vs {want_time}");
    assert!(
        j[0].get("Entitlements").is_none(),
        "only with --entitlements"
    );
    assert!(
        j[0].get("Universal Signing Chain").is_none(),
        "slices signed alike"
    );
    assert!(j[0].get("Page Zero").is_none(), "not an i386 executable");

    let j = json(&ctl(
        &gone,
        &["fileinfo", "--json", "--entitlements", devid],
    ));
    assert_eq!(
        j[0]["Entitlements"]["com.apple.developer.team-identifier"],
        "S8XHQB96PW"
    );
    let out = ctl(&gone, &["fileinfo", "--entitlements", devid]);
    let text = ok(&out);
    assert!(text.contains("\nEntitlements:\n"), "{text}");
    assert!(
        text.contains(". com.apple.developer.system-extension.install\n"),
        "{text}"
    );

    // --localtz: the signing chain's dates and the signing times in the local zone.
    let o = Command::new(common::santactl_path())
        .env("TZ", "America/New_York")
        .args(["--socket", gone.to_str().unwrap(), "fileinfo", "--localtz"])
        .args(["--key", "Signing Chain", devid])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Valid Until         : 2027-02-01T17:12:15-05:00"),
        "{text}"
    );

    // Slices signed differently: the chain of each, as Santa lists it.
    let mixed = dir.join("fat_exec_x86unsigned_arm64linker.get-windows_main");
    let j = json(&ctl(
        &gone,
        &["fileinfo", "--json", mixed.to_str().unwrap()],
    ));
    assert_eq!(
        j[0]["Universal Signing Chain"],
        serde_json::json!([{"arch": "x86_64"}, {"unsigned": true}, {"arch": "arm64"}, {"ad-hoc": true}])
    );
    let out = ctl(&gone, &["fileinfo", mixed.to_str().unwrap()]);
    let text = ok(&out);
    assert!(
        text.contains("Universal Signing Chain:\n  Architecture: x86_64\n     1. unsigned"),
        "{text}"
    );
    assert!(j[0].get("Validation").is_none(), "only with --verify");

    // --verify: each architecture's own verdict, and Santa's words where there is no spctl.
    let j = json(&ctl(
        &gone,
        &["fileinfo", "--json", "--verify", mixed.to_str().unwrap()],
    ));
    assert_eq!(
        j[0]["Validation"],
        serde_json::json!([
            {"arch": "x86_64", "status": "Unsigned"},
            {"arch": "arm64", "status": "Ad-hoc signed"}
        ])
    );
    assert_eq!(
        j[0]["Security Assessment"],
        "Unable to locate suitable spctl binary"
    );
    let out = ctl(&gone, &["fileinfo", "--verify", devid]);
    let text = ok(&out);
    assert!(
        text.contains("Validation:\n    1. x86_64          : Valid on disk\n"),
        "{text}"
    );
}
