use super::*;
use santa_testkit::Rng;

#[test]
fn rule_specs_round_trip_every_stored_state_and_removal() {
    let id = rules::RuleIdentifier::parse(rules::RuleType::TeamId, "abcde12345")
        .expect("a valid Team ID");
    for state in rules::RuleState::ALL {
        let mut rule = rules::Rule::new(id.clone(), state);
        rule.comment = Some("c".into());
        if state == rules::RuleState::Cel {
            rule.cel_expr = Some("euid == 0".into());
        }
        let change = rules::RuleChange::Upsert(rule);
        let wire = RuleSpec::from_change(&change);
        assert_eq!(wire.identifier, "ABCDE12345", "normalised");
        assert_eq!(wire.to_change(), Ok(change));
    }
    let remove = rules::RuleChange::Remove(id);
    assert_eq!(RuleSpec::from_change(&remove).to_change(), Ok(remove));
}

#[test]
fn rule_specs_with_bad_fields_are_refused_with_the_reason() {
    let spec = |t: &str, id: &str, state: i64| RuleSpec::new(id.into(), t.into(), state);
    assert!(matches!(
        spec("BINARY", "xyz", 1).to_change(),
        Err(RuleSpecError::Identifier(_))
    ));
    assert!(matches!(
        spec("NOPE", "xyz", 1).to_change(),
        Err(RuleSpecError::UnknownType(_))
    ));
    assert_eq!(
        spec("TEAMID", "ABCDE12345", 99).to_change(),
        Err(RuleSpecError::UnknownState(99))
    );
    let cel = rules::RuleState::Cel.db_value();
    for bad in [None, Some("this is not CEL"), Some("nosuchvar == 1")] {
        let mut s = spec("TEAMID", "ABCDE12345", cel);
        s.cel_expr = bad.map(str::to_owned);
        assert!(
            matches!(s.to_change(), Err(RuleSpecError::Cel(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn santa_rule_text() {
    assert_eq!(rule_text("BINARY", 2), "Blocked (Binary)");
    assert_eq!(rule_text("TEAMID", 1), "Allowed (TeamID)");
    assert_eq!(rule_text("SIGNINGID", 3), "Blocked (SigningID, Silent)");
    assert_eq!(
        rule_text("CERTIFICATE", 5),
        "Allowed (Certificate, Compiler)"
    );
    assert_eq!(rule_text("CDHASH", 13), "Blocked (CDHash, Silent TTY)");
    let view = |state, is_static| RuleView {
        identifier: "x".into(),
        rule_type: "BINARY".into(),
        state,
        is_static,
    };
    assert_eq!(
        view(3, true).santa_text(),
        "Blocked (Binary, Silent, Static)"
    );
    assert_eq!(view(1, true).santa_text(), "Allowed (Binary, Static)");
    assert_eq!(view(1, false).santa_text(), "Allowed (Binary)");
    assert_eq!(view(99, true).santa_text(), "None");
}

#[test]
fn requests_serialise_with_a_command_tag() {
    let text = serde_json::to_string(&Request::Status).expect("serialises");
    assert_eq!(text, r#"{"command":"status"}"#);
    let back: Request = serde_json::from_str(r#"{"command":"flush_cache"}"#).expect("parses");
    assert_eq!(back, Request::FlushCache);
    assert!(back.needs_root());
    assert!(!Request::Status.needs_root());
    assert!(serde_json::from_str::<Request>(r#"{"command":"format_disk"}"#).is_err());
}

/// Reads one frame of at most 16 bytes, giving up after `idle` without a byte (and after
/// [`IDLE_TIMEOUT`] in all).
fn read_small(stream: &mut UnixStream, idle: Duration) -> Result<Vec<u8>, FrameError> {
    read_frame(stream, 16, idle, Instant::now() + IDLE_TIMEOUT, &|| false)
}

#[test]
fn frames_are_length_prefixed_and_capped() {
    let (mut a, mut b) = UnixStream::pair().expect("socketpair");
    write_frame(&mut a, b"{}").expect("written");
    let got = read_small(&mut b, IDLE_TIMEOUT).expect("read");
    assert_eq!(got, b"{}");
    a.write_all(&1000u32.to_be_bytes()).expect("written");
    let err = read_small(&mut b, IDLE_TIMEOUT);
    assert!(
        matches!(err, Err(FrameError::TooLarge { len: 1000, .. })),
        "{err:?}"
    );
    a.write_all(&[0, 0, 0, 9, b'x']).expect("written");
    let start = Instant::now();
    let err = read_small(&mut b, Duration::from_millis(300));
    assert!(matches!(err, Err(FrameError::TimedOut)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the idle timeout applies"
    );
    drop(a);
    let err = read_small(&mut b, IDLE_TIMEOUT);
    assert!(matches!(err, Err(FrameError::Truncated { .. })), "{err:?}");
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut m = (body.len() as u32).to_be_bytes().to_vec();
    m.extend_from_slice(body);
    m
}

#[test]
fn a_huge_length_prefix_is_refused_before_any_body_byte_is_kept() {
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[b'x'; 64]);
    let mut d = FrameDecoder::new(REQUEST_BYTES_MAX_UNPRIVILEGED);
    let err = d.feed(&bytes);
    assert!(
        matches!(err, Err(FrameError::TooLarge { len, max })
            if len == u64::from(u32::MAX) && max == REQUEST_BYTES_MAX_UNPRIVILEGED),
        "{err:?}"
    );
    assert_eq!(d.buffer_bytes(), 0, "nothing allocated for the body");
    assert!(d.feed(&bytes[4..]).is_err(), "and it keeps failing");
    // Just over the cap fails; at the cap is accepted.
    let cap = REQUEST_BYTES_MAX_UNPRIVILEGED as u32;
    let over = (cap + 1).to_be_bytes();
    assert!(matches!(
        decode_frame(&over, REQUEST_BYTES_MAX_UNPRIVILEGED),
        Err(FrameError::TooLarge { .. })
    ));
    let at = cap.to_be_bytes();
    assert!(matches!(
        decode_frame(&at, REQUEST_BYTES_MAX_UNPRIVILEGED),
        Err(FrameError::Truncated { received: 4 })
    ));
    // Root's cap is 256 MiB: announcing all of it and sending a little costs a little.
    let mut d = FrameDecoder::new(REQUEST_BYTES_MAX_ROOT);
    let mut big = (REQUEST_BYTES_MAX_ROOT as u32).to_be_bytes().to_vec();
    big.extend_from_slice(b"{\"command\"");
    assert_eq!(d.feed(&big).expect("within the cap"), big.len());
    assert!(
        d.buffer_bytes() <= BODY_GROWTH_MIN_BYTES,
        "{} bytes held for 10 received",
        d.buffer_bytes()
    );
}

#[test]
fn a_truncated_frame_says_how_much_arrived() {
    for (bytes, received) in [
        (&b""[..], 0),
        (&b"\x00\x00"[..], 2),
        (&b"\x00\x00\x00\x0a12345"[..], 9),
    ] {
        let err = decode_frame(bytes, 64);
        assert!(
            matches!(err, Err(FrameError::Truncated { received: r }) if r == received),
            "{bytes:?}: {err:?}"
        );
    }
    // An empty body is a whole message (and not a request).
    assert_eq!(decode_frame(&[0, 0, 0, 0], 64).expect("whole").0, b"");
    assert!(matches!(
        decode_request(&[0, 0, 0, 0], 64),
        Err(DecodeError::Request(ControlError {
            kind: ErrorKind::Malformed,
            ..
        }))
    ));
}

#[test]
fn one_request_is_read_and_what_follows_it_is_not() {
    let mut bytes = frame(br#"{"command":"status"}"#);
    bytes.extend_from_slice(b"\xff\xff\xff\xffgarbage");
    let (body, used) = decode_frame(&bytes, 64).expect("whole");
    assert_eq!(used, 4 + body.len());
    assert_eq!(
        decode_request(&bytes, 64).expect("a request"),
        Request::Status
    );
    // Trailing bytes inside the body are not a request.
    assert!(parse_request(br#"{"command":"status"} x"#).is_err());
}

#[test]
fn non_utf8_bodies_are_malformed_requests() {
    let bodies: [&[u8]; 4] = [
        b"\xff\xfe\x00",
        b"{\"command\":\"stat\xffus\"}",
        b"{\"command\":\"rule_check\",\"target\":{\"kind\":\"identifier\",\"rule_type\":\"BINARY\",\"identifier\":\"\xc3\x28\"}}",
        // A lone surrogate escape is not UTF-8 either.
        br#"{"command":"rule_check","target":{"kind":"identifier","rule_type":"BINARY","identifier":"\ud800"}}"#,
    ];
    for body in bodies {
        let err = decode_request(&frame(body), REQUEST_BYTES_MAX_UNPRIVILEGED);
        assert!(
            matches!(&err, Err(DecodeError::Request(e)) if e.kind == ErrorKind::Malformed),
            "{body:?}: {err:?}"
        );
    }
}

#[test]
fn deeply_nested_json_is_refused_without_deep_recursion() {
    // A million levels inside a field (the internally tagged enum buffers unknown fields)
    // and at the top; parsed on a thread with a small stack, so a parser that recursed per
    // level would overflow it instead of refusing.
    const DEPTH: usize = 1_000_000;
    let nested = |open: &str, close: &str| {
        let mut s = String::with_capacity(DEPTH * 2 + 64);
        s.push_str(r#"{"command":"status","x":"#);
        s.push_str(&open.repeat(DEPTH));
        s.push_str(&close.repeat(DEPTH));
        s.push('}');
        s.into_bytes()
    };
    let mut bodies = vec![
        nested("[", "]"),
        nested(r#"{"a":"#, "}"),
        "[".repeat(DEPTH).into_bytes(),
    ];
    // Just under the limit is still parsed (and refused for the field's type, not the depth).
    let mut shallow = br#"{"command":"rule_check","target":"#.to_vec();
    shallow.extend_from_slice(&b"[".repeat(100));
    shallow.extend_from_slice(&b"]".repeat(100));
    shallow.push(b'}');
    bodies.push(shallow);
    let results = std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || {
            bodies
                .iter()
                .map(|b| parse_request(b).map_err(|e| e.message))
                .collect::<Vec<_>>()
        })
        .expect("spawned")
        .join()
        .expect("no stack overflow, no panic");
    for (i, r) in results.iter().enumerate() {
        let message = r.as_ref().expect_err("not a request");
        match i {
            0 | 1 => assert!(message.contains("recursion limit"), "{i}: {message}"),
            // A top-level array is refused at its first element, before any depth.
            2 => assert!(message.starts_with("not a request"), "{i}: {message}"),
            _ => assert!(!message.contains("recursion limit"), "{i}: {message}"),
        }
    }
}

#[test]
fn frames_decode_the_same_fed_whole_or_in_random_pieces_and_hold_at_most_twice_what_arrived() {
    let seed = std::env::var("CONTROL_FRAMING_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c0de_f00d_u64);
    let mut rng = Rng::new(seed | 1);
    const MAX: usize = 100_000;
    for case in 0..2_000 {
        let announced = match rng.below(4) {
            0 => rng.below(64) as u32,
            1 => rng.below(MAX as u64 + 1) as u32,
            2 => MAX as u32 + 1 + rng.below(1000) as u32,
            _ => rng.next_u64() as u32,
        };
        let sent = (rng.below(u64::from(announced.min(200_000)) + 8)) as usize;
        let mut bytes = announced.to_be_bytes().to_vec();
        bytes.extend((0..sent).map(|i| (i as u8).wrapping_mul(31)));
        let cut = rng.below(bytes.len() as u64 + 1) as usize;
        let bytes = &bytes[..cut];
        let whole = decode_frame(bytes, MAX);
        let mut d = FrameDecoder::new(MAX);
        let mut at = 0;
        let mut failed = None;
        while at < bytes.len() {
            let piece = 1 + rng.below(5000) as usize;
            let end = (at + piece).min(bytes.len());
            match d.feed(&bytes[at..end]) {
                Ok(0) => break,
                Ok(n) => at += n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            let body_got = d.received().saturating_sub(FRAME_HEADER_BYTES);
            assert!(
                d.buffer_bytes() <= (2 * body_got).clamp(BODY_GROWTH_MIN_BYTES, MAX),
                "seed {seed} case {case}: {} bytes held for {body_got} received",
                d.buffer_bytes()
            );
        }
        match (whole, failed) {
            (Err(FrameError::TooLarge { len, .. }), Some(FrameError::TooLarge { len: l, .. })) => {
                assert_eq!(len, l, "seed {seed} case {case}")
            }
            (Ok((body, used)), None) => {
                assert_eq!(used, at, "seed {seed} case {case}");
                assert_eq!(d.finish().expect("whole"), body, "seed {seed} case {case}");
            }
            (Err(FrameError::Truncated { received }), None) => {
                assert_eq!(d.received(), received, "seed {seed} case {case}");
                assert!(d.finish().is_err(), "seed {seed} case {case}");
            }
            (w, f) => panic!("seed {seed} case {case}: whole {w:?}, pieces {f:?}"),
        }
    }
}

#[test]
fn what_santactl_encodes_santad_decodes() {
    let requests = [
        Request::Status,
        Request::FlushCache,
        Request::RuleCheck {
            target: CheckTarget::Identifier {
                rule_type: "TEAMID".into(),
                identifier: "ABCDE12345 \u{1F600} \"quoted\"".into(),
            },
        },
        Request::CheckCache {
            file: CacheKey {
                dev: u64::MAX,
                ino: 1,
                ctime_ns: i64::MIN,
                size: 0,
            },
        },
    ];
    for r in requests {
        let bytes = encode_request(&r).expect("encoded");
        assert_eq!(
            decode_request(&bytes, REQUEST_BYTES_MAX_UNPRIVILEGED).expect("decoded"),
            r
        );
    }
}

#[test]
fn default_reasons_are_the_engines_names() {
    use santa_hotpath::DefaultReason as R;
    let engine = [
        R::Deadline,
        R::QueueFull,
        R::SlotsFull,
        R::ShuttingDown,
        R::EvaluationFailed,
    ];
    let names: Vec<&str> = engine.iter().map(|r| r.name()).collect();
    let ours: Vec<&str> = ENGINE_DEFAULT_REASONS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ours);
    assert_eq!(
        default_reason_text("deadline"),
        Some("no decision before the deadline")
    );
    assert_eq!(
        default_reason_text("stat_failed"),
        Some("the file could not be stat'ed")
    );
    assert_eq!(default_reason_text("something_new"), None);
}
