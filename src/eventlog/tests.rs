use super::*;
use crate::config::{ClientMode, LogDestination, LogFormat};
use santa_rules as rules;
use std::time::{Duration, UNIX_EPOCH};

/// A record of a decided exec, with nothing else set.
fn decided(action: rules::Action, reason: rules::Reason) -> Record {
    let mut r = Record::new();
    r.decision = Some(action);
    r.reason = reason;
    r
}

fn sample_exec() -> Record {
    let mut r = decided(rules::Action::Deny, rules::Reason::Binary);
    r.time = UNIX_EPOCH + Duration::from_millis(1_704_067_200_123); // 2024-01-01T00:00:00.123Z
    r.mode = ClientMode::Lockdown;
    r.explain.set(b"rule matched");
    r.sha256 = Some([0xab; 32]);
    r.pid = 1234;
    r.pidversion = 987;
    r.ppid = 1;
    r.uid = 1000;
    r.user.set(b"alice");
    r.gid = 1000;
    r.group.set(b"staff");
    r.path.set(b"/usr/bin/evil|tool");
    r.args.set(b"evil\0-l\nx\0a|b\0");
    r
}

fn line(rec: &Record, prefix: bool, machine_id: Option<&str>) -> String {
    let mut out = Vec::new();
    format_key_value(&mut out, rec, prefix, machine_id);
    String::from_utf8(out).expect("utf8")
}

#[test]
fn exec_line_matches_santa_field_order_and_escaping() {
    let want = format!(
        "action=EXEC|decision=DENY|reason=BINARY|explain=rule matched|sha256={}|pid=1234|pidversion=987|ppid=1|uid=1000|user=alice|gid=1000|group=staff|mode=L|path=/usr/bin/evil<pipe>tool|args=evil -l\\nx a<pipe>b\n",
        "ab".repeat(32)
    );
    assert_eq!(line(&sample_exec(), false, None), want);
}

#[test]
fn santa_golden_exec_line() {
    // The expected string of Santa's BasicStringTest testSerializeMessageExec, less the
    // quarantine_url field that has no Linux counterpart; our hashes are bytes, so they are
    // shown as hex where Santa's test used placeholder strings.
    let mut r = decided(rules::Action::Allow, rules::Reason::Binary);
    r.explain.set(b"extra!");
    r.sha256 = Some([0x12; 32]);
    r.cert_sha256 = Some([0x56; 32]);
    r.pid = 12;
    r.pidversion = 89;
    r.ppid = 56;
    r.uid = u32::MAX - 1;
    r.user.set(b"nobody");
    r.gid = u32::MAX;
    r.group.set(b"nogroup");
    r.mode = ClientMode::Lockdown;
    r.path.set(b"execpath|");
    r.args.set(b"exec|path\0-l\n-t\0-v\r--foo\0");
    let want = "action=EXEC|decision=ALLOW|reason=BINARY|explain=extra!|sha256=SHA|cert_sha256=CERT|cert_cn=|pid=12|pidversion=89|ppid=56|uid=4294967294|user=nobody|gid=4294967295|group=nogroup|mode=L|path=execpath<pipe>|args=exec<pipe>path -l\\n-t -v\\r--foo|machineid=my_id\n"
        .replace("SHA", &"12".repeat(32))
        .replace("CERT", &"56".repeat(32));
    assert_eq!(line(&r, false, Some("my_id")), want);
}

#[test]
fn optional_fields_are_left_out_and_missing_names_are_null() {
    let mut r = decided(rules::Action::Allow, rules::Reason::Unknown);
    r.path.set(b"/bin/true");
    r.team_id.set(b"EQHXZ8M8AV");
    assert_eq!(
        line(&r, false, None),
        "action=EXEC|decision=ALLOW|reason=UNKNOWN|teamid=EQHXZ8M8AV|pid=0|pidversion=0|ppid=0|uid=0|user=(null)|gid=0|group=(null)|mode=M|path=/bin/true\n"
    );
}

#[test]
fn timestamp_prefix_is_santa_format() {
    let l = line(&sample_exec(), true, None);
    assert!(
        l.starts_with("[2024-01-01T00:00:00.123Z] I santad: action=EXEC|"),
        "{l}"
    );
    assert_eq!(&iso8601_utc_millis(UNIX_EPOCH), b"1970-01-01T00:00:00.000Z");
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29 01:02:03
    assert_eq!(&iso8601_utc_millis(leap), b"2000-02-29T01:02:03.000Z");
    let end = UNIX_EPOCH + Duration::from_millis(4_102_444_799_999); // 2099-12-31T23:59:59.999
    assert_eq!(&iso8601_utc_millis(end), b"2099-12-31T23:59:59.999Z");
}

#[test]
fn bundle_line_matches_santa() {
    let mut r = Record::new();
    r.kind = RecordKind::Bundle;
    r.sha256 = Some([1; 32]);
    r.bundle_hash = Some([2; 32]);
    r.bundle_name.set(b"file_bundle_Name");
    r.bundle_path.set(b"file_bundle_path");
    r.path.set(b"file_path");
    let hashes = format!("sha256={}|bundlehash={}", "01".repeat(32), "02".repeat(32));
    assert_eq!(
        line(&r, false, Some("my_id")),
        format!(
            "action=BUNDLE|{hashes}|bundlename=file_bundle_Name|bundleid=|bundlepath=file_bundle_path|path=file_path|machineid=my_id\n"
        )
    );
}

#[test]
fn truncation_is_marked() {
    let mut r = sample_exec();
    r.path.set(&vec![b'a'; PATH_BYTES_MAX + 10]);
    assert!(r.path.is_truncated());
    assert_eq!(r.path.as_bytes().len(), PATH_BYTES_MAX);
    let l = line(&r, false, None);
    assert!(l.contains(&format!(
        "path={}{TRUNCATED_MARKER}|args=",
        "a".repeat(PATH_BYTES_MAX)
    )));
}

#[test]
fn json_line_parses_and_escapes() {
    let mut r = sample_exec();
    r.explain.set(b"quote \" backslash \\ ctl \x01 bad \xff");
    let mut out = Vec::new();
    format_json(&mut out, &r, Some("m1"));
    assert_eq!(out.last(), Some(&b'\n'));
    let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(v["action"], "EXEC");
    assert_eq!(v["decision"], "DENY");
    assert_eq!(v["mode"], "L");
    assert_eq!(v["path"], "/usr/bin/evil|tool");
    assert_eq!(v["args"], serde_json::json!(["evil", "-l\nx", "a|b"]));
    assert_eq!(v["explain"], "quote \" backslash \\ ctl \u{1} bad \u{fffd}");
    assert_eq!(v["time"], "2024-01-01T00:00:00.123Z");
    assert_eq!(v["machineid"], "m1");
    assert_eq!(v["sha256"], "ab".repeat(32));
}

#[test]
fn full_ring_drops_and_counts_without_blocking() {
    let log = EventLog::new(4);
    let slots: Vec<_> = (0..4)
        .map(|_| log.acquire().expect("free record"))
        .collect();
    assert!(log.acquire().is_none());
    assert!(log.acquire().is_none());
    assert_eq!(log.dropped(), 2);
    drop(slots); // uncommitted: back to the free list
    for _ in 0..4 {
        log.acquire().expect("free again").commit();
    }
    assert!(
        log.acquire().is_none(),
        "committed records wait for the logger"
    );
    assert_eq!(log.dropped(), 3);
}

#[test]
fn acquired_record_is_cleared() {
    let log = EventLog::new(1);
    let mut slot = log.acquire().expect("record");
    slot.path.set(b"/x");
    slot.pid = 5;
    drop(slot);
    let slot = log.acquire().expect("record");
    assert!(slot.path.is_empty());
    assert_eq!(slot.pid, 0);
}

#[test]
fn logger_writes_and_reopens_after_rename() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("santa.log");
    let writer = LogWriter::new(WriterConfig {
        format: LogFormat::KeyValue {
            timestamp_prefix: false,
        },
        destination: LogDestination::File(path.clone()),
        machine_id: None,
    })
    .expect("open");
    let log = EventLog::new(16);
    let handle = spawn_logger(log.clone(), writer).expect("spawn");
    let push = |pid: i32| {
        let mut slot = log.acquire().expect("free record");
        slot.decision = Some(rules::Action::Allow);
        slot.pid = pid;
        slot.path.set(b"/bin/true");
        slot.commit();
    };
    let reopened = |why: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "log not reopened {why}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let wait_for = |path: &std::path::Path, needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle} not in {}: {text:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    push(1);
    wait_for(&path, "|pid=1|");
    let rotated = dir.path().join("santa.log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    // The logger notices the rename at its next batch (or idle wake-up) and opens a new file.
    push(2);
    reopened("after rotation");
    push(3);
    let fresh = wait_for(&path, "|pid=3|");
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(old.contains("|pid=1|") && !old.contains("|pid=3|"), "{old}");
    assert!(!fresh.contains("|pid=1|"), "{fresh}");
    // pid=2 went to one of the two files, exactly once.
    assert_eq!(
        old.matches("|pid=2|").count() + fresh.matches("|pid=2|").count(),
        1
    );

    // Explicit reopen (SIGHUP) after a rename without new lines.
    std::fs::rename(&path, dir.path().join("santa.log.2")).expect("rotate");
    handle.request_reopen();
    reopened("on request");
    push(4);
    let writer = handle.stop().expect("logger returns its writer");
    drop(writer);
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .contains("|pid=4|"),
        "stop drains the ring"
    );
    assert_eq!(log.written(), 4);
    assert_eq!(log.dropped(), 0);
    assert_eq!(log.write_errors(), 0);
}

/// Counts the records it sees and remembers the last pid.
#[derive(Debug, Default)]
struct CountingTap {
    seen: std::sync::atomic::AtomicU64,
    last_pid: std::sync::atomic::AtomicI32,
}

impl RecordTap for CountingTap {
    fn offer(&self, rec: &Record) {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.last_pid
            .store(rec.pid, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn every_tap_sees_every_record_and_a_fifth_is_refused() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let log = EventLog::new(8);
    let taps: Vec<Arc<CountingTap>> = (0..TAPS_MAX).map(|_| Arc::default()).collect();
    for tap in &taps {
        assert!(log.add_tap(tap.clone()));
    }
    assert!(!log.add_tap(Arc::new(CountingTap::default())));
    let writer = LogWriter::new(WriterConfig {
        format: LogFormat::Json,
        destination: LogDestination::Null,
        machine_id: None,
    })
    .expect("null writer");
    let handle = spawn_logger(log.clone(), writer).expect("spawn");
    for pid in 1..=5 {
        let mut slot = log.acquire().expect("free record");
        slot.pid = pid;
        slot.commit();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while taps.iter().any(|t| t.seen.load(Ordering::SeqCst) < 5) {
        assert!(
            std::time::Instant::now() < deadline,
            "taps did not see 5 records"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for tap in &taps {
        assert_eq!(tap.seen.load(Ordering::SeqCst), 5);
        assert_eq!(tap.last_pid.load(Ordering::SeqCst), 5);
    }
    drop(handle);
}
